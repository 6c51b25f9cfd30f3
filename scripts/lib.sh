# Shared helpers for the test scripts: start and stop registries on ephemeral loopback ports,
# always by PID. Source it; it defines functions only.

# The repository root and the shared kit beside it.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$REPO_ROOT/../shared}
BERTH_BIN=${BERTH_BIN:-$REPO_ROOT/target/release/berth}

# Waits up to 20 s for "listening on ADDR" in LOG; prints ADDR (host:port).
wait_listening() {
  local log=$1 pid=$2 addr=""
  for _ in $(seq 1 200); do
    # The debug server (http.debug.addr) announces itself on its own line: skip it.
    addr=$(grep -v 'debug server' "$log" 2>/dev/null | grep -o 'listening on [^ "]*' | head -n1 | sed -e 's/listening on //' -e 's#^https\?://##')
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start; log:" >&2
  cat "$log" >&2
  return 1
}

# start_berth CONFIG LOG: starts berth serve CONFIG; sets BERTH_PID and BERTH_ADDR.
start_berth() {
  local config=$1 log=$2
  "$BERTH_BIN" serve "$config" >"$log" 2>&1 &
  BERTH_PID=$!
  BERTH_ADDR=$(wait_listening "$log" "$BERTH_PID")
}

# start_registry2 CONFIG LOG: starts Debian's docker-registry; sets R2_PID and R2_ADDR.
# AWS_CA_BUNDLE is removed from its environment: with the s3 driver, docker-registry 2.8.2
# panics at startup when it is set ("LoadCustomCABundleError ... transport unsupported type");
# Berth honours it.
start_registry2() {
  local config=$1 log=$2
  env -u AWS_CA_BUNDLE docker-registry serve "$config" >"$log" 2>&1 &
  R2_PID=$!
  R2_ADDR=$(wait_listening "$log" "$R2_PID")
}

# start_dockerd WORK [DOCKERD ARGS...]: Debian's dockerd with everything under WORK (data root,
# exec root, socket, pidfile, an empty --config-file) and a dead loopback proxy, so that its
# fallback to docker.io fails at once instead of leaving the machine. Sets DOCKERD_PID and
# exports DOCKER_HOST/DOCKER_CONFIG; returns 1 (log in WORK/dockerd.log) if it does not answer.
start_dockerd() {
  local work=$1; shift
  echo '{}' >"$work/daemon.json"
  HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost \
    dockerd --iptables=false --bridge=none --storage-driver=vfs \
    --data-root "$work/docker" --exec-root "$work/exec" -H "unix://$work/docker.sock" \
    --pidfile "$work/docker.pid" --config-file "$work/daemon.json" "$@" >"$work/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST=unix://$work/docker.sock DOCKER_CONFIG=$work/client
  for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

# stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
  local pid=${1:-0}
  # Never signal 0 or a negative PID: that would hit the whole process group.
  [ "$pid" -gt 0 ] 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# write_config FILE ROOTDIR [EXTRA YAML]: a registry:2 config on 127.0.0.1:0, delete enabled.
write_config() {
  local file=$1 root=$2
  cat >"$file" <<YAML
version: 0.1
log:
  level: info
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: $root}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:0
YAML
}

# start_s3 KIND WORK: starts a loopback S3 server (KIND garage or moto) with its state under
# WORK/s3 (scripts/s3-test-servers.sh) and exports its BERTH_TEST_* variables; stop it with
# stop_s3 WORK. Exit status 3 from the script means the server binary is missing.
start_s3() {
  local kind=$1 work=$2
  "$REPO_ROOT/scripts/s3-test-servers.sh" "$kind-start" "$work/s3" >/dev/null || return $?
  set -a
  # shellcheck disable=SC1091
  source "$work/s3/env"
  set +a
}

stop_s3() {
  "$REPO_ROOT/scripts/s3-test-servers.sh" stop "$1/s3" || true
}

# use_s3_storage CONFIG KIND [ROOTDIRECTORY]: swaps write_config's filesystem storage for
# registry:2's storage.s3 on the server start_s3 started (KIND garage or moto). The keys are
# exactly registry:2's, so docker-registry reads the same file.
use_s3_storage() {
  local config=$1 kind=${2^^} root=${3:-/}
  local endpoint region key secret bucket
  endpoint=$(eval echo "\$BERTH_TEST_${kind}_ENDPOINT")
  region=$(eval echo "\$BERTH_TEST_${kind}_REGION")
  key=$(eval echo "\$BERTH_TEST_${kind}_KEY_ID")
  secret=$(eval echo "\$BERTH_TEST_${kind}_SECRET_KEY")
  bucket=$(eval echo "\$BERTH_TEST_${kind}_BUCKET")
  python3 - "$config" <<PY
import sys
p = sys.argv[1]
lines = open(p).read().splitlines()
out = []
for line in lines:
    if line.startswith("  filesystem:"):
        out += [
            "  s3:",
            "    accesskey: $key",
            "    secretkey: $secret",
            "    region: $region",
            "    regionendpoint: $endpoint",
            "    forcepathstyle: true",
            "    bucket: $bucket",
            "    secure: false",
            "    v4auth: true",
            "    rootdirectory: $root",
            "  redirect: {disable: true}",
        ]
    else:
        out.append(line)
open(p, "w").write("\n".join(out) + "\n")
PY
}

# berth_storage CONFIG WORK: Berth's storage as BERTH_TEST_STORAGE says: filesystem (the
# default, as write_config wrote it) or garage / moto (a server started under WORK, stopped
# by stop_s3 WORK). Lets a suite run unchanged on S3.
berth_storage() {
  local config=$1 work=$2 kind=${BERTH_TEST_STORAGE:-filesystem}
  case "$kind" in
    filesystem) ;;
    garage | moto)
      start_s3 "$kind" "$work" || { echo "could not start $kind" >&2; return 1; }
      use_s3_storage "$config" "$kind" /berth
      echo "storage: $kind at $(eval echo "\$BERTH_TEST_${kind^^}_ENDPOINT")"
      ;;
    *) echo "unknown BERTH_TEST_STORAGE $kind" >&2; return 2 ;;
  esac
}
