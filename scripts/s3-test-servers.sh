#!/usr/bin/env bash
# S3 servers for tests, on 127.0.0.1 only, each in its own state directory and stopped by PID:
#
#   s3-test-servers.sh garage-start DIR [BUCKET]   single-node Garage (replication 1, sqlite)
#   s3-test-servers.sh moto-start DIR [BUCKET]     moto_server (PyPI moto[server])
#   s3-test-servers.sh stop DIR                    stops what DIR's start launched
#   s3-test-servers.sh garage-resume DIR           restarts a stopped Garage: same ports, data
#
# A start prints shell-style lines for `eval` (or `source DIR/env`), e.g. for Garage:
#   BERTH_TEST_GARAGE_ENDPOINT=http://127.0.0.1:PORT
#   BERTH_TEST_GARAGE_REGION=garage
#   BERTH_TEST_GARAGE_KEY_ID=GK...
#   BERTH_TEST_GARAGE_SECRET_KEY=...
#   BERTH_TEST_GARAGE_BUCKET=berth-test
#   BERTH_TEST_GARAGE_PID=1234
# and the same with MOTO for moto. The bucket exists and the key may read and write it.
# Exit status 3 means the server's binary is missing (callers may skip outside CI). GARAGE_BIN
# names the garage binary (default: garage on PATH, else ~/.cargo/bin/garage).
# Used by crates/storage/tests (the Rust helper calls this script) and the shell suites.
set -euo pipefail

die() { echo "s3-test-servers: $*" >&2; exit 1; }

# A free TCP port on 127.0.0.1 (bound to port 0, then released).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 30 s for an HTTP answer (any status) on URL while PID lives.
wait_http() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 1 300); do
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "server exited during startup"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "no answer from $url after 30 s"
}

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

garage_bin() {
  if [ -n "${GARAGE_BIN:-}" ]; then [ -x "$GARAGE_BIN" ] && echo "$GARAGE_BIN"; return; fi
  command -v garage 2>/dev/null && return
  [ -x "$HOME/.cargo/bin/garage" ] && { echo "$HOME/.cargo/bin/garage"; return; }
  return 1
}

garage_start() {
  local dir=$1 bucket=${2:-berth-test}
  local bin
  bin=$(garage_bin) || { echo "s3-test-servers: garage not found (cargo install garage --locked)" >&2; exit 3; }
  mkdir -p "$dir/meta" "$dir/data"
  dir=$(cd "$dir" && pwd)
  local s3_port rpc_port
  s3_port=$(free_port)
  rpc_port=$(free_port)
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(random_hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
EOF
  local g=("$bin" -c "$dir/garage.toml")
  RUST_LOG=${GARAGE_LOG:-warn} "${g[@]}" server >"$dir/garage.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  for _ in $(seq 1 300); do
    "${g[@]}" status >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/garage.log" >&2; die "garage exited during startup"; }
    sleep 0.1
  done
  local node
  node=$("${g[@]}" node id -q 2>/dev/null || "${g[@]}" node id)
  node=${node%%@*}
  "${g[@]}" layout assign -z dc1 -c 1G "$node" >/dev/null
  "${g[@]}" layout apply --version 1 >/dev/null
  local key_id secret
  key_id="GK$(random_hex 12)"
  secret=$(random_hex 32)
  "${g[@]}" bucket create "$bucket" >/dev/null
  "${g[@]}" key import "$key_id" "$secret" -n "$bucket" --yes >/dev/null
  "${g[@]}" bucket allow --read --write --owner "$bucket" --key "$bucket" >/dev/null
  wait_http "http://127.0.0.1:$s3_port/" "$pid" "$dir/garage.log"
  cat >"$dir/env" <<EOF
BERTH_TEST_GARAGE_ENDPOINT=http://127.0.0.1:$s3_port
BERTH_TEST_GARAGE_REGION=garage
BERTH_TEST_GARAGE_KEY_ID=$key_id
BERTH_TEST_GARAGE_SECRET_KEY=$secret
BERTH_TEST_GARAGE_BUCKET=$bucket
BERTH_TEST_GARAGE_PID=$pid
EOF
  cat "$dir/env"
}

moto_start() {
  local dir=$1 bucket=${2:-berth-test}
  command -v moto_server >/dev/null 2>&1 || { echo "s3-test-servers: moto_server not found (pip install 'moto[server]')" >&2; exit 3; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local port
  port=$(free_port)
  moto_server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  wait_http "http://127.0.0.1:$port/" "$pid" "$dir/moto.log"
  # moto does not check signatures unless asked to: a plain PUT creates the bucket.
  curl -sf -o /dev/null -X PUT "http://127.0.0.1:$port/$bucket" || die "could not create bucket $bucket"
  cat >"$dir/env" <<EOF
BERTH_TEST_MOTO_ENDPOINT=http://127.0.0.1:$port
BERTH_TEST_MOTO_REGION=us-east-1
BERTH_TEST_MOTO_KEY_ID=berthtest
BERTH_TEST_MOTO_SECRET_KEY=berthtestsecret
BERTH_TEST_MOTO_BUCKET=$bucket
BERTH_TEST_MOTO_PID=$pid
EOF
  cat "$dir/env"
}

garage_resume() {
  local dir=$1 bin
  bin=$(garage_bin) || { echo "s3-test-servers: garage not found" >&2; exit 3; }
  [ -f "$dir/garage.toml" ] && [ -f "$dir/env" ] || die "$dir holds no Garage started by garage-start"
  [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && die "Garage in $dir is running"
  local endpoint
  endpoint=$(sed -n 's/^BERTH_TEST_GARAGE_ENDPOINT=//p' "$dir/env")
  RUST_LOG=${GARAGE_LOG:-warn} "$bin" -c "$dir/garage.toml" server >>"$dir/garage.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  wait_http "$endpoint/" "$pid" "$dir/garage.log"
  sed -i "s/^BERTH_TEST_GARAGE_PID=.*/BERTH_TEST_GARAGE_PID=$pid/" "$dir/env"
  cat "$dir/env"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  # Never 0 or negative: that would signal a whole process group.
  if [[ "$pid" =~ ^[1-9][0-9]*$ ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

case "${1:-}" in
  garage-start) [ $# -ge 2 ] || die "usage: $0 garage-start DIR [BUCKET]"; garage_start "$2" "${3:-}" ;;
  garage-resume) [ $# -ge 2 ] || die "usage: $0 garage-resume DIR"; garage_resume "$2" ;;
  moto-start) [ $# -ge 2 ] || die "usage: $0 moto-start DIR [BUCKET]"; moto_start "$2" "${3:-}" ;;
  stop) [ $# -ge 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 {garage-start|garage-resume|moto-start|stop} DIR [BUCKET]" ;;
esac
