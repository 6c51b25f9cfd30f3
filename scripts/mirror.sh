#!/usr/bin/env bash
# Berth as a pull-through cache in front of a local upstream (Debian's docker-registry 2.8.2,
# standing in for docker.io, ghcr.io, quay.io and registry.k8s.io), with real clients:
#   1. the shared compat kit, all 27 checks, against Berth configured as a docker.io mirror with
#      `default: docker.io` and the kit's compat/... repositories private: its pushes are stored
#      as usual and its ctr-mirror check pulls docker.io/compat/mirror/test:1 with ?ns=docker.io
#      from the upstream through Berth;
#   2. skopeo through the default upstream (plain names) and the host prefix: byte-identical;
#   3. ctr with containerd hosts.toml mirrors for ghcr.io, quay.io and registry.k8s.io (?ns=);
#   4. dockerd with registry-mirrors (plain names go to the default upstream, alpine -> library/alpine);
#   5. the upstream stopped: the same pulls still succeed from the cache.
# Every process is started on 127.0.0.1 with an OS-chosen port and stopped by PID.
# BERTH_TEST_STORAGE=garage runs it with Berth on S3 (a single-node Garage).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

work=$(mktemp -d /tmp/berth-mirror.XXXXXX)
CTRD_PID=0 DOCKERD_PID=0
cleanup() {
  stop_pid "$DOCKERD_PID"; stop_pid "$CTRD_PID"
  stop_pid "${BERTH_PID:-0}"; stop_pid "${R2_PID:-0}"; stop_s3 "$work"
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
skip_or_fail() { # a missing prerequisite: a failure under CI, else a skip
  if [ "${CI:-}" = "true" ]; then fail "$*"; else echo "SKIP $*"; fi
}

"$SHARED/compat/make-images.sh" "$work/images" >"$work/make-images.log" 2>&1
images=$work/images
expected() { jq -r --arg k "$1" '.[$k].digest' "$images/images.json"; }
small=$(expected small) multi=$(expected multiarch)

# The upstream, with the images the clients will pull through Berth.
write_config "$work/up.yml" "$work/up-data"
sed -i 's/accesslog: {disabled: true}/accesslog: {disabled: false}/' "$work/up.yml"
start_registry2 "$work/up.yml" "$work/up.log"
UP=$R2_ADDR
push() { # push IMAGE REPO:TAG
  skopeo copy --all --preserve-digests --retry-times 0 --dest-tls-verify=false \
    "oci:$images/$1:1" "docker://$UP/$2" >>"$work/skopeo.log" 2>&1
}
push small library/alpine:1
push small compat/mirror/test:1
push multiarch org/multi:1

# Berth: four upstream hosts (all served by the one local upstream), docker.io the default
# for plain names, compat/... private.
write_config "$work/berth.yml" "$work/data"
berth_storage "$work/berth.yml" "$work"
cat >>"$work/berth.yml" <<YAML
proxy:
  upstreams:
    - {host: docker.io, url: http://$UP, ttl: 1s, timeout: 2s}
    - {host: ghcr.io, url: http://$UP, ttl: 1s, timeout: 2s}
    - {host: quay.io, url: http://$UP, ttl: 1s, timeout: 2s}
    - {host: registry.k8s.io, url: http://$UP, ttl: 1s, timeout: 2s}
  default: docker.io
  private: [compat]
YAML
start_berth "$work/berth.yml" "$work/berth.log"
B=$BERTH_ADDR
echo "mirror: upstream docker-registry at $UP, berth at $B"

# 1. The compat kit, every check.
out=$(compat_kit "$B" --tls-verify=false --images "$images" --mirror-repo compat/mirror/test)
echo "$out" | sed 's/^/  kit: /'
summary=$(echo "$out" | tail -n1)
if grep -qE 'compat: 27 passed, 0 failed' <<<"$summary"; then
  pass "compat kit against berth as a docker.io mirror: $summary"
elif grep -qE 'compat: [0-9]+ passed, 0 failed' <<<"$summary" && grep -q '^SKIP' <<<"$out" && [ "${CI:-}" != "true" ]; then
  echo "SKIP some kit checks were skipped (containerd needs root): $summary"
else
  fail "compat kit: $summary"
fi
if grep -q '^PASS ctr-mirror' <<<"$out"; then
  if grep -q '"GET /v2/compat/mirror/test/manifests/' "$work/up.log" \
    && curl -fsS "http://$B/v2/_catalog" | jq -e '.repositories | index("docker.io/compat/mirror/test")' >/dev/null; then
    pass "ctr-mirror was served from the upstream through Berth (cached as docker.io/compat/mirror/test)"
  else
    fail "ctr-mirror passed, but not through the upstream"
  fi
fi

# 2. skopeo: plain name (default upstream, library/ added) and host prefix.
check_pull() { # check_pull REF WANT [--all]
  local ref=$1 want=$2 got; shift 2
  if ! got=$(skopeo inspect --raw --tls-verify=false "docker://$ref" 2>>"$work/skopeo.log" | sha256sum | cut -d' ' -f1); then
    fail "skopeo inspect $ref"; return
  fi
  [ "sha256:$got" = "$want" ] || { fail "$ref: manifest sha256:$got, want $want"; return; }
  rm -rf "$work/pull"
  if skopeo copy "$@" --retry-times 0 --src-tls-verify=false "docker://$ref" "oci:$work/pull:x" >>"$work/skopeo.log" 2>&1; then
    pass "skopeo pull $ref: byte-identical ($want), blobs verified"
  else
    fail "skopeo pull $ref (see skopeo log)"
  fi
}
check_pull "$B/alpine:1" "$small"
check_pull "$B/docker.io/library/alpine:1" "$small"
check_pull "$B/ghcr.io/org/multi:1" "$multi" --all

# 3. containerd hosts.toml mirrors with ?ns= for ghcr.io, quay.io, registry.k8s.io.
start_containerd() {
  local c=$work/ctrd; mkdir -p "$c/root" "$c/state" "$c/opt"
  SOCK=$c/containerd.sock
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
EOF
  timeout --kill-after=10 1800 containerd --config "$c/config.toml" >"$work/containerd.log" 2>&1 &
  CTRD_PID=$!
  for _ in $(seq 1 100); do
    [ -S "$SOCK" ] && timeout 5 ctr --address "$SOCK" version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}
hosts_toml() { # hosts_toml HOST: a hosts.toml sending HOST's pulls to Berth (dead fallback)
  mkdir -p "$work/hosts/$1"
  cat >"$work/hosts/$1/hosts.toml" <<EOF
server = "http://127.0.0.1:9"
[host."http://$B"]
  capabilities = ["pull", "resolve"]
EOF
}
ctr_pull() { # ctr_pull NAMESPACE REF WANT [flags]: pull through the hosts dir, check digest and ?ns=
  local ns=$1 ref=$2 want=$3 host got; shift 3
  host=${ref%%/*}
  if ! timeout 300 ctr --debug --address "$SOCK" -n "$ns" images pull --snapshotter native \
      --hosts-dir "$work/hosts" "$@" "$ref" >"$work/ctr-$ns.log" 2>&1; then
    fail "ctr pull $ref via hosts.toml: $(grep -iE 'error|fail' "$work/ctr-$ns.log" | tail -1 | cut -c1-200)"; return
  fi
  got=$(timeout 30 ctr --address "$SOCK" -n "$ns" images ls | awk -v r="$ref" '$1==r {print $3}')
  if [ "$got" != "$want" ]; then fail "ctr pull $ref: digest $got, want $want"; return; fi
  # One grep per question, never `grep | grep -q`: under pipefail, grep -q quitting at its
  # first match kills the writer with SIGPIPE, and a long log (an --all-platforms pull)
  # then fails the check at random.
  if ! grep -qE "msg=\"do request\".*url=\"http://$B/[^\"]*[?&]ns=$host" "$work/ctr-$ns.log"; then
    fail "ctr pull $ref: no request carried ?ns=$host"; return
  fi
  if grep -qE 'msg="do request".*url="http://127\.0\.0\.1:9/' "$work/ctr-$ns.log"; then
    fail "ctr pull $ref: containerd fell back to the upstream server"; return
  fi
  pass "ctr pull $ref through a hosts.toml mirror (?ns=$host): $got"
}
have_ctr=0
if [ "$(id -u)" -ne 0 ]; then
  skip_or_fail "containerd checks need root"
elif ! command -v containerd >/dev/null; then
  skip_or_fail "containerd is not installed"
elif ! start_containerd; then
  fail "containerd did not start: $(tail -3 "$work/containerd.log")"
else
  have_ctr=1
  for h in docker.io ghcr.io quay.io registry.k8s.io; do hosts_toml "$h"; done
  ctr_pull m-ghcr ghcr.io/org/multi:1 "$multi" --all-platforms
  ctr_pull m-quay quay.io/org/multi:1 "$multi"
  ctr_pull m-k8s registry.k8s.io/org/multi:1 "$multi"
  ctr_pull m-hub docker.io/library/alpine:1 "$small"
fi

# 4. dockerd registry-mirrors: `docker pull alpine:1` asks Berth for library/alpine.
have_docker=0
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
  skip_or_fail "dockerd is not installed (apt-get install docker.io)"
elif [ "$(id -u)" -ne 0 ]; then
  skip_or_fail "dockerd needs root"
else
  if start_dockerd "$work" --registry-mirror "http://$B"; then
    have_docker=1
    if docker pull alpine:1 >"$work/docker-pull.log" 2>&1 && grep -q "Digest: $small" "$work/docker-pull.log"; then
      pass "docker pull alpine:1 through registry-mirrors = Berth's default upstream ($small)"
    else
      fail "docker pull alpine:1 through registry-mirrors: $(tail -3 "$work/docker-pull.log")"
    fi
  else
    fail "dockerd did not start: $(tail -3 "$work/dockerd.log")"
  fi
fi

# 5. The upstream goes away: everything pulled above still comes from the cache.
stop_pid "$R2_PID"; R2_PID=0
sleep 1.2 # past the tags' TTL, so Berth asks the (dead) upstream first
check_pull "$B/alpine:1" "$small"
check_pull "$B/ghcr.io/org/multi:1" "$multi" --all
if [ "$have_ctr" = 1 ]; then
  ctr_pull s-quay quay.io/org/multi:1 "$multi"
  ctr_pull s-hub docker.io/library/alpine:1 "$small"
fi
if [ "$have_docker" = 1 ]; then
  docker rmi alpine:1 >/dev/null 2>&1 || true
  if docker pull alpine:1 >"$work/docker-pull2.log" 2>&1 && grep -q "Digest: $small" "$work/docker-pull2.log"; then
    pass "docker pull alpine:1 with the upstream stopped (served from Berth's cache)"
  else
    fail "docker pull alpine:1 with the upstream stopped: $(tail -3 "$work/docker-pull2.log")"
  fi
fi
if grep -q 'stale-if-error' "$work/berth.log"; then
  pass "berth logged the stale-if-error answers"
else
  fail "no stale-if-error warning in berth's log"
fi

if [ "$failed" -ne 0 ]; then
  echo "--- berth log tail"; tail -n 30 "$work/berth.log"
  echo "--- skopeo log tail"; tail -n 10 "$work/skopeo.log"
fi
echo "mirror: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
