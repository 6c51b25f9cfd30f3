# Shared helpers for the test scripts: start and stop registries on ephemeral loopback ports,
# always by PID. Source it; it defines functions only.

# The repository root and the shared kit beside it.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$REPO_ROOT/../shared}
BERTH_BIN=${BERTH_BIN:-$REPO_ROOT/target/release/berth}

# Waits up to 20 s for "listening on ADDR" in LOG; prints ADDR (host:port).
# as_root CMD...: runs CMD as root (directly when already root, else through sudo).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: installs Debian packages for a script that needs them.
apt_install() {
  echo "$(basename "$0"): installing $*" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

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

# free_port: a free TCP port on 127.0.0.1 (bound to port 0, then released), for servers that
# cannot announce a port they chose themselves (haproxy).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_cluster N CONFIG WORK [JOBSNODE]: N `berth serve` nodes named node-a, node-b, ... from
# one config (shared storage and http.secret; it must have no cluster section). Node NAME runs
# WORK/NAME.yml, CONFIG plus `cluster: {node: NAME}` (and `jobsnode: JOBSNODE` when given: the
# one node that runs the background jobs, needed on a store without create-only writes such as
# Garage), on its own ephemeral port, logging to WORK/NAME.log. Sets the index-aligned arrays
# CLUSTER_NODES, CLUSTER_PIDS, CLUSTER_ADDRS; stop them with stop_cluster. Returns 1 (that
# node's log on stderr) if a node does not start.
start_cluster() {
  local n=$1 config=$2 work=$3 jobs=${4:-} i name addr
  CLUSTER_NODES=() CLUSTER_PIDS=() CLUSTER_ADDRS=()
  for ((i = 0; i < n; i++)); do
    name=node-$(printf "\\$(printf '%03o' $((97 + i)))")
    {
      cat "$config"
      printf 'cluster:\n  node: %s\n' "$name"
      [ -z "$jobs" ] || printf '  jobsnode: %s\n' "$jobs"
    } >"$work/$name.yml"
    "$BERTH_BIN" serve "$work/$name.yml" >"$work/$name.log" 2>&1 &
    CLUSTER_NODES+=("$name") CLUSTER_PIDS+=("$!")
    addr=$(wait_listening "$work/$name.log" "$!") || return 1
    CLUSTER_ADDRS+=("$addr")
  done
}

# stop_cluster: stops every node start_cluster started (one already killed and waited for is
# fine).
stop_cluster() {
  local pid
  for pid in "${CLUSTER_PIDS[@]}"; do stop_pid "$pid"; done
  CLUSTER_PIDS=()
}

# start_haproxy WORK NAME=HOST:PORT...: Debian's haproxy in front of the given servers, on an
# ephemeral loopback port, in the foreground (-db) so that it is stopped by PID. HTTP mode,
# `balance roundrobin` with no stickiness (every request is balanced on its own, keep-alive or
# not), health check GET /readyz every second (down after 2 failures, up after 2 successes),
# timeouts for large blobs (15 minutes of silence on either side), and retries: a request that
# could not be sent, or that got no byte of answer because its server died, goes to another
# server (up to 3 times). A stats page (CSV) on a second port. Logs to WORK/haproxy.log: one
# line per request with the server that answered (httplog format), unless HAPROXY_REQUEST_LOG=0
# (benchmarks: only its notices). Waits until every server is UP. Sets HAPROXY_PID,
# HAPROXY_ADDR (host:port) and HAPROXY_STATS (the CSV URL).
start_haproxy() {
  local work=$1; shift
  local port stats_port cfg=$work/haproxy.cfg server request_log="option httplog"
  [ "${HAPROXY_REQUEST_LOG:-1}" = 0 ] && request_log="no log"
  port=$(free_port)
  stats_port=$(free_port)
  cat >"$cfg" <<CFG
global
  log stdout format raw local0
  maxconn 4000

defaults
  mode http
  log global
  option dontlognull
  option forwardfor
  timeout connect 5s
  timeout client 15m
  timeout server 15m
  timeout http-request 60s
  timeout http-keep-alive 60s
  timeout queue 60s
  timeout check 5s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response

frontend registry
  bind 127.0.0.1:$port
  $request_log
  default_backend berth

backend berth
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz
  http-check expect status 200
  default-server check inter 1s fall 2 rise 2
CFG
  for server in "$@"; do
    echo "  server ${server%%=*} ${server#*=}" >>"$cfg"
  done
  cat >>"$cfg" <<CFG

listen stats
  bind 127.0.0.1:$stats_port
  no log
  stats enable
  stats uri /stats
CFG
  haproxy -c -q -f "$cfg" || { echo "haproxy rejected $cfg" >&2; return 1; }
  haproxy -db -f "$cfg" >"$work/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  HAPROXY_ADDR=127.0.0.1:$port
  HAPROXY_STATS=http://127.0.0.1:$stats_port/stats\;csv
  for _ in $(seq 1 200); do
    if kill -0 "$HAPROXY_PID" 2>/dev/null; then
      [ "$(haproxy_servers_up)" = "$#" ] && return 0
    else
      break
    fi
    sleep 0.1
  done
  echo "haproxy did not bring its $# servers up; log:" >&2
  cat "$work/haproxy.log" >&2
  return 1
}

# haproxy_stat SERVER FIELD: one field (a column name of haproxy's CSV: status, stot, wredis,
# hrsp_2xx...) of one server of the berth backend.
haproxy_stat() {
  curl -fsS --max-time 5 "$HAPROXY_STATS" 2>/dev/null | awk -F, -v sv="$1" -v field="$2" '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "berth" && $2 == sv { print $col[field] }'
}

# haproxy_servers_up: how many servers of the berth backend haproxy has UP.
haproxy_servers_up() {
  curl -fsS --max-time 5 "$HAPROXY_STATS" 2>/dev/null | awk -F, '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "berth" && $2 != "BACKEND" && $col["status"] == "UP" { n++ }
    END { print n + 0 }'
}

# compat_kit ADDR [ARGS...]: the shared client kit (../shared/compat/run.sh) against ADDR,
# its output on stdout, ending with its summary line. One failure is taken for the test
# machine's and retried once, alone: `ctr-push` failing with containerd's own gRPC error
# "rpc error: code = Internal desc = unexpected EOF". ctr reads the image from its local
# containerd over gRPC while it pushes over HTTP, and that message is grpc-go's code for a
# gRPC stream cut short between ctr and containerd; a registry's failure reaches ctr as an
# HTTP error instead ("failed to do request", "unexpected status"), and Berth's log shows no
# error for it (seen twice in about thirty CI runs, 2026-12-06, plain and through haproxy).
# The retry is printed; any other failure, or a second one, stands.
compat_kit() {
  local addr=$1 out summary fails retry
  shift
  out=$("$SHARED/compat/run.sh" "$addr" "$@" 2>&1) || true
  summary=$(tail -n1 <<<"$out")
  fails=$(grep '^FAIL ' <<<"$out" || true)
  if grep -qE '^compat: [0-9]+ passed, 1 failed$' <<<"$summary" \
    && grep -qE '^FAIL ctr-push: .*rpc error: code = Internal desc = unexpected EOF' <<<"$fails"; then
    retry=$("$SHARED/compat/run.sh" "$addr" "$@" --only ctr-push 2>&1) || true
    if grep -qE '^compat: 1 passed, 0 failed$' <<<"$(tail -n1 <<<"$retry")"; then
      local passed
      passed=$(sed -E 's/^compat: ([0-9]+) passed.*/\1/' <<<"$summary")
      sed '$d' <<<"$out" | sed 's/^FAIL ctr-push: /RETRIED ctr-push (containerd gRPC read cut short, not a registry error): /'
      grep '^PASS ctr-push' <<<"$retry" | sed 's/^PASS ctr-push: /PASS ctr-push (retry): /'
      echo "compat: $((passed + 1)) passed, 0 failed"
      return
    fi
    out+=$'\n'"retry of ctr-push alone also failed:"$'\n'"$retry"$'\n'"$summary"
  fi
  echo "$out"
}
