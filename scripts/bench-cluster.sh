#!/usr/bin/env bash
# Cluster benchmark: push and pull throughput through Debian's haproxy (round robin, the
# configuration of scripts/cluster.sh) in front of 1, 2 and 3 Berth nodes on one single-node
# Garage, plus one node without haproxy as the reference, and each node's peak RSS (VmHWM from
# /proc/PID/status after its run). The load is the shared kit's regbench scenarios that move
# data (the ones compare.sh and bench-s3.sh run: pushes of small, large and chunked blobs,
# pulls, the manifest GET rate; plus the small push and pull with 32 clients), one
# configuration after the other, each under its own rootdirectory of the bucket. Prints one
# table, with each node's peak RSS and CPU time and haproxy's CPU time. Everything listens on
# 127.0.0.1 and every process is stopped by PID. About 3 minutes on 2 cores.
# Usage: scripts/bench-cluster.sh [--quick] [--out DIR]
# BERTH_BIN names the binary to measure; without it target/release/berth is built first.
set -euo pipefail
build_berth=1
[ -n "${BERTH_BIN:-}" ] && build_berth=0
source "$(dirname "$0")/lib.sh"

quick=0 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench-cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v haproxy >/dev/null || { echo "bench-cluster: missing haproxy (apt-get install haproxy)" >&2; exit 1; }

kit=${BENCH_KIT_DIR:-/tmp/berth-bench-kit}
if [ ! -x "$kit/compare.sh" ] || [ "$SHARED/bench/compare.sh" -nt "$kit/compare.sh" ]; then
  rm -rf "$kit"; cp -r "$SHARED/bench" "$kit"; chmod -R u+w "$kit"
fi
cargo build --release --quiet --manifest-path "$kit/Cargo.toml"
REGBENCH=$kit/target/release/regbench
[ "$build_berth" = 1 ] && (cd "$REPO_ROOT" && cargo build --release --locked -p berth)

work=$(mktemp -d /tmp/berth-bench-cluster.XXXXXX)
[ -z "$out" ] && out=$work/results
mkdir -p "$out"
HAPROXY_PID=0 CLUSTER_PIDS=()
trap 'stop_pid "$HAPROXY_PID"; stop_cluster; stop_s3 "$work"; rm -rf "$work/s3"' EXIT
start_s3 garage "$work"

if [ "$quick" = 1 ]; then
  SMALL_N=20 LARGE_N=2 LARGE_SIZE=16M CHUNKED_N=4 CHUNKED_SIZE=4M CHUNK=1M
  PULL_SMALL_ROUNDS=1 PULL_LARGE_ROUNDS=1 RATE_SECONDS=2
else
  SMALL_N=200 LARGE_N=4 LARGE_SIZE=256M CHUNKED_N=16 CHUNKED_SIZE=16M CHUNK=4M
  PULL_SMALL_ROUNDS=3 PULL_LARGE_ROUNDS=2 RATE_SECONDS=10
fi
secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')

# run_config KEY NODES HAPROXY(yes|no): starts the nodes (and haproxy), runs the scenarios,
# records each node's VmHWM in OUT/KEY.rss, stops everything.
run_config() {
  local key=$1 nodes=$2 lb=$3 url i servers=()
  write_config "$work/$key.yml" "$work/unused"
  sed -i "s/level: info/level: error/; s/^  addr: 127.0.0.1:0\$/&\n  secret: $secret/" "$work/$key.yml"
  use_s3_storage "$work/$key.yml" garage "/$key"
  mkdir -p "$work/$key"
  start_cluster "$nodes" "$work/$key.yml" "$work/$key" node-a # Garage: no lease, node-a runs the jobs
  if [ "$lb" = yes ]; then
    for ((i = 0; i < nodes; i++)); do servers+=("${CLUSTER_NODES[$i]}=${CLUSTER_ADDRS[$i]}"); done
    HAPROXY_REQUEST_LOG=0 start_haproxy "$work/$key" "${servers[@]}" # quiet, like the nodes
    url=http://$HAPROXY_ADDR
  else
    url=http://${CLUSTER_ADDRS[0]}
  fi
  echo "== $key: $nodes node(s)$([ "$lb" = yes ] && echo " behind haproxy") on $url" >&2
  local jsonl=$out/$key.jsonl
  : >"$jsonl"
  sync
  "$REGBENCH" --label "push ${SMALL_N}x1M c=8" push --url "$url" --repo bench/small --blobs "$SMALL_N" --size 1M --concurrency 8 --seed 1 >>"$jsonl"
  sync
  "$REGBENCH" --label "push ${LARGE_N}x$LARGE_SIZE c=2" push --url "$url" --repo bench/large --blobs "$LARGE_N" --size "$LARGE_SIZE" --concurrency 2 --seed 2 >>"$jsonl"
  sync
  "$REGBENCH" --label "push ${CHUNKED_N}x$CHUNKED_SIZE chunk=$CHUNK c=4" push --url "$url" --repo bench/chunked --blobs "$CHUNKED_N" --size "$CHUNKED_SIZE" --chunk "$CHUNK" --concurrency 4 --seed 3 >>"$jsonl"
  sync
  "$REGBENCH" --label "push ${SMALL_N}x1M c=32" push --url "$url" --repo bench/small32 --blobs "$SMALL_N" --size 1M --concurrency 32 --seed 4 >>"$jsonl"
  "$REGBENCH" --label "pull 1M x$PULL_SMALL_ROUNDS c=8" pull --url "$url" --repo bench/small --concurrency 8 --rounds "$PULL_SMALL_ROUNDS" >>"$jsonl"
  "$REGBENCH" --label "pull 1M x$PULL_SMALL_ROUNDS c=32" pull --url "$url" --repo bench/small32 --concurrency 32 --rounds "$PULL_SMALL_ROUNDS" >>"$jsonl"
  "$REGBENCH" --label "pull $LARGE_SIZE x$PULL_LARGE_ROUNDS c=2" pull --url "$url" --repo bench/large --concurrency 2 --rounds "$PULL_LARGE_ROUNDS" >>"$jsonl"
  "$REGBENCH" --label "manifest GET ${RATE_SECONDS}s c=32" manifest-rate --url "$url" --repo bench/small --concurrency 32 --seconds "$RATE_SECONDS" >>"$jsonl"
  # Each node's peak RSS and CPU time (user + system) over the whole run, and haproxy's CPU time.
  local tick
  tick=$(getconf CLK_TCK)
  : >"$out/$key.rss"
  : >"$out/$key.cpu"
  for ((i = 0; i < nodes; i++)); do
    awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/${CLUSTER_PIDS[$i]}/status" >>"$out/$key.rss"
    awk -v t="$tick" '{ printf "%.1f\n", ($14 + $15) / t }' "/proc/${CLUSTER_PIDS[$i]}/stat" >>"$out/$key.cpu"
  done
  if [ "$lb" = yes ]; then
    awk -v t="$tick" '{ printf "%.1f\n", ($14 + $15) / t }' "/proc/$HAPROXY_PID/stat" >"$out/$key.haproxy-cpu"
  fi
  stop_pid "$HAPROXY_PID"; HAPROXY_PID=0
  stop_cluster
}

echo "bench-cluster on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg); $(haproxy -v | head -n1 | cut -d' ' -f1-3); Garage at $BERTH_TEST_GARAGE_ENDPOINT; results in $out" | tee "$out/header.txt" >&2
run_config direct-1 1 no
run_config haproxy-1 1 yes
run_config haproxy-2 2 yes
run_config haproxy-3 3 yes

# One table: a column per configuration, the kit's metrics per scenario, then each node's VmHWM.
python3 - "$out" <<'PY' | tee "$out/table.md"
import json, sys
out = sys.argv[1]
configs = [("direct-1", "1 node, no haproxy"), ("haproxy-1", "1 node + haproxy"),
           ("haproxy-2", "2 nodes + haproxy"), ("haproxy-3", "3 nodes + haproxy")]
metrics = {"push": [("mib_per_s", "MiB/s"), ("blob_p50_ms", "blob p50 ms"), ("blob_p99_ms", "blob p99 ms")],
           "pull": [("mib_per_s", "MiB/s"), ("blob_p50_ms", "blob p50 ms"), ("blob_p99_ms", "blob p99 ms")],
           "manifest-rate": [("req_per_s", "req/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")]}
runs = {key: [json.loads(l) for l in open(f"{out}/{key}.jsonl") if l.strip()] for key, _ in configs}
def fmt(v):
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.3g}")
rows = [["scenario", "metric"] + [title for _, title in configs]]
for record in runs[configs[0][0]]:
    label = record["label"]
    for key, title in metrics.get(record["scenario"], []):
        cells = []
        for config, _ in configs:
            match = [r for r in runs[config] if r["label"] == label]
            cells.append(fmt(match[0].get(key)) if match else "-")
        rows.append([label, title] + cells)
def per_node(suffix):
    return [[float(x) for x in open(f"{out}/{key}.{suffix}").read().split()] for key, _ in configs]
rows.append(["(whole run)", "VmHWM MiB per node"] + [" / ".join(f"{x:.0f}" for x in h) for h in per_node("rss")])
rows.append(["(whole run)", "CPU s per node"] + [" / ".join(f"{x:.1f}" for x in h) for h in per_node("cpu")])
haproxy = []
for key, _ in configs:
    try:
        haproxy.append(f"{float(open(f'{out}/{key}.haproxy-cpu').read()):.1f}")
    except FileNotFoundError:
        haproxy.append("-")
rows.append(["(whole run)", "haproxy CPU s"] + haproxy)
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
def line(row):
    return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |"
print(line(rows[0]))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for row in rows[1:]:
    print(line(row))
PY
