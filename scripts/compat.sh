#!/usr/bin/env bash
# Runs the shared real-client kit (skopeo + containerd) against a freshly started Berth and
# requires every check to pass. Usage: scripts/compat.sh [plain|tls-htpasswd|tls-token]
#   plain         HTTP, no auth
#   tls-htpasswd  TLS with a self-signed certificate (verified with --cacert) and htpasswd
#                 users made with `berth htpasswd`
#   tls-token     TLS and Berth's built-in token server (bearer tokens, per-repository rules)
#   s3-garage     HTTP, storage.s3 on a single-node Garage started for the run (loopback)
#   s3-moto       HTTP, storage.s3 on moto server (strict part sizes, conditional writes)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mode=${1:-plain}
work=$(mktemp -d /tmp/berth-compat.XXXXXX)
trap 'stop_pid "${BERTH_PID:-0}"; stop_s3 "$work"; rm -rf "$work"' EXIT

# A self-signed certificate for 127.0.0.1, the kit's CA file.
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
}

client_args=(--tls-verify=false)
write_config "$work/config.yml" "$work/data"
case "$mode" in
  plain) ;;
  s3-garage | s3-moto)
    kind=${mode#s3-}
    start_s3 "$kind" "$work" || { echo "compat ($mode): could not start $kind" >&2; exit 1; }
    use_s3_storage "$work/config.yml" "$kind" /compat
    ;;
  tls-htpasswd)
    make_cert
    printf '%s\n' 'compat-pass' | "$BERTH_BIN" htpasswd -f "$work/htpasswd" --password-stdin compat
    printf '%s\n' 'other-pass' | "$BERTH_BIN" htpasswd -f "$work/htpasswd" --password-stdin other
    cat >>"$work/config.yml" <<YAML
  tls: {certificate: $work/cert.pem, key: $work/key.pem}
auth:
  htpasswd: {realm: berth-compat, path: $work/htpasswd}
YAML
    client_args=(--cacert "$work/cert.pem" --creds compat:compat-pass)
    ;;
  tls-token)
    make_cert
    printf '%s\n' 'compat-pass' | "$BERTH_BIN" htpasswd -f "$work/htpasswd" --password-stdin compat
    cat >>"$work/config.yml" <<YAML
  tls: {certificate: $work/cert.pem, key: $work/key.pem}
auth:
  token:
    realm: https://unused.invalid/auth/token
    autoredirect: true
    service: berth-compat
    issuer: berth-compat
    builtin:
      htpasswd: $work/htpasswd
      signingkey: $work/token-key.pem
      rules:
        - {repositories: ["compat/**", "library/**"], users: [compat], actions: [pull, push, delete]}
YAML
    client_args=(--cacert "$work/cert.pem" --creds compat:compat-pass)
    ;;
  *) echo "compat.sh: unknown mode $mode" >&2; exit 2 ;;
esac
start_berth "$work/config.yml" "$work/berth.log"
echo "compat ($mode): berth at $BERTH_ADDR"
out=$(compat_kit "$BERTH_ADDR" "${client_args[@]}")
echo "$out"
if ! tail -n1 <<<"$out" | grep -qE 'compat: [0-9]+ passed, 0 failed'; then
  echo "compat ($mode): FAILED; berth log tail:" >&2
  tail -n 50 "$work/berth.log" >&2
  exit 1
fi
if grep -q '^SKIP' <<<"$out"; then
  if [ "${CI:-}" = "true" ]; then
    echo "compat ($mode): checks were skipped, which CI does not allow (containerd needs root)" >&2
    exit 1
  fi
  echo "compat ($mode): WARNING: some checks were skipped"
fi
