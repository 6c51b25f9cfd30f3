#!/usr/bin/env bash
# S3 benchmark: the shared kit's regbench scenarios (the ones compare.sh runs) against
#   r2-garage     docker-registry 2.8.2 with its s3 driver on a single-node Garage
#   berth-garage  Berth with storage.s3 on the same Garage (its own bucket prefix)
#   berth-fs      Berth on the filesystem
#   r2-fs         docker-registry 2.8.2 on the filesystem
# in one run, one target after the other, then prints regbench's tables: Berth-on-Garage
# against registry:2-on-Garage, and each against registry:2 on its own filesystem.
# Everything listens on 127.0.0.1; every server is stopped by PID.
# Usage: scripts/bench-s3.sh [--quick] [--out DIR]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=0 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench-s3: unknown argument $1" >&2; exit 2 ;;
  esac
done

kit=${BENCH_KIT_DIR:-/tmp/berth-bench-kit}
if [ ! -x "$kit/compare.sh" ] || [ "$SHARED/bench/compare.sh" -nt "$kit/compare.sh" ]; then
  rm -rf "$kit"; cp -r "$SHARED/bench" "$kit"; chmod -R u+w "$kit"
fi
cargo build --release --quiet --manifest-path "$kit/Cargo.toml"
REGBENCH=$kit/target/release/regbench
(cd "$REPO_ROOT" && cargo build --release --locked -p berth)

work=$(mktemp -d /tmp/berth-bench-s3.XXXXXX)
[ -z "$out" ] && out=$work/results
mkdir -p "$out"
SERVER_PID=0
trap 'stop_pid "$SERVER_PID"; stop_s3 "$work"; rm -rf "$work/data-"*' EXIT
start_s3 garage "$work"

if [ "$quick" = 1 ]; then
  SMALL_N=20 LARGE_N=2 LARGE_SIZE=16M CHUNKED_N=4 CHUNKED_SIZE=4M CHUNK=1M
  PULL_SMALL_ROUNDS=1 PULL_LARGE_ROUNDS=1 RATE_SECONDS=2 CATALOG_REPOS=200
else
  SMALL_N=200 LARGE_N=4 LARGE_SIZE=${LARGE_SIZE:-256M} CHUNKED_N=16 CHUNKED_SIZE=16M CHUNK=4M
  PULL_SMALL_ROUNDS=3 PULL_LARGE_ROUNDS=2 RATE_SECONDS=10 CATALOG_REPOS=2000
fi

# config TARGET FILE: the same settings for every target (quiet logs, delete enabled), the
# registry:2 default blob descriptor cache for docker-registry, storage as the name says.
config() {
  local target=$1 file=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  write_config "$file" "$work/data-$target"
  sed -i "s/127.0.0.1:0/127.0.0.1:$port/; s/level: info/level: error/" "$file"
  case $target in
    *-garage) use_s3_storage "$file" garage "/$target" ;;
  esac
  case $target in
    r2-*) sed -i 's/^  delete: {enabled: true}$/  delete: {enabled: true}\n  cache: {blobdescriptor: inmemory}/' "$file" ;;
  esac
  echo "http://127.0.0.1:$port"
}

run_target() {
  local target=$1 url cfg=$work/$1.yml
  url=$(config "$target" "$cfg")
  case $target in
    r2-*) env -u AWS_CA_BUNDLE docker-registry serve "$cfg" >"$out/$target-server.log" 2>&1 & ;;
    *) "$BERTH_BIN" serve "$cfg" >"$out/$target-server.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 1 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/" || true)" != 000 ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$out/$target-server.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "== $target on $url" >&2
  local b=("$REGBENCH" --pid "$SERVER_PID")
  local jsonl=$out/$target.jsonl
  : >"$jsonl"
  sync
  "${b[@]}" --label "push ${SMALL_N}x1M c=8" push --url "$url" --repo bench/small --blobs "$SMALL_N" --size 1M --concurrency 8 --seed 1 >>"$jsonl"
  sync
  "${b[@]}" --label "push ${LARGE_N}x$LARGE_SIZE c=2" push --url "$url" --repo bench/large --blobs "$LARGE_N" --size "$LARGE_SIZE" --concurrency 2 --seed 2 >>"$jsonl"
  sync
  "${b[@]}" --label "push ${CHUNKED_N}x$CHUNKED_SIZE chunk=$CHUNK c=4" push --url "$url" --repo bench/chunked --blobs "$CHUNKED_N" --size "$CHUNKED_SIZE" --chunk "$CHUNK" --concurrency 4 --seed 3 >>"$jsonl"
  "${b[@]}" --label "pull 1M x$PULL_SMALL_ROUNDS c=8" pull --url "$url" --repo bench/small --concurrency 8 --rounds "$PULL_SMALL_ROUNDS" >>"$jsonl"
  "${b[@]}" --label "pull $LARGE_SIZE x$PULL_LARGE_ROUNDS c=2" pull --url "$url" --repo bench/large --concurrency 2 --rounds "$PULL_LARGE_ROUNDS" >>"$jsonl"
  "${b[@]}" --label "manifest GET ${RATE_SECONDS}s c=32" manifest-rate --url "$url" --repo bench/small --concurrency 32 --seconds "$RATE_SECONDS" >>"$jsonl"
  "${b[@]}" --label "manifest HEAD ${RATE_SECONDS}s c=32" manifest-rate --url "$url" --repo bench/small --concurrency 32 --seconds "$RATE_SECONDS" --head >>"$jsonl"
  "${b[@]}" --label "catalog $CATALOG_REPOS repos" catalog --url "$url" --repos "$CATALOG_REPOS" --concurrency 8 >>"$jsonl"
  stop_pid "$SERVER_PID"; SERVER_PID=0
  rm -rf "$work/data-$target"
}

echo "bench-s3 on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'); Garage at $BERTH_TEST_GARAGE_ENDPOINT; results in $out" | tee "$out/header.txt" >&2
for target in r2-garage berth-garage berth-fs r2-fs; do run_target "$target"; done

report() { "$REGBENCH" report "$out/$1.jsonl" --baseline-name "$1" "$out/$2.jsonl" --other-name "$2" --markdown; }
{
  echo "### Berth on Garage vs registry:2 on Garage"; report r2-garage berth-garage; echo
  echo "### Berth on Garage vs registry:2 on its filesystem"; report r2-fs berth-garage; echo
  echo "### registry:2: Garage vs its filesystem"; report r2-fs r2-garage; echo
  echo "### Berth: Garage vs filesystem"; report berth-fs berth-garage
} | tee "$out/table.md"
