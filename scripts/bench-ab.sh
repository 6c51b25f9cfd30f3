#!/usr/bin/env bash
# A/B of one regbench scenario: per repetition a fresh Berth from BIN_A and a fresh one from
# BIN_B (or docker-registry 2.8.2 when BIN_B is "docker-registry"), each on a new data
# directory, alternating which goes first; prints regbench's summary line per run, the
# server's CPU time and context switches over the run, and the load average. For changes
# too small to read off a compare.sh table on a shared machine.
# Usage: scripts/bench-ab.sh BIN_A BIN_B REPS SCENARIO [ARGS...]
#   e.g. scripts/bench-ab.sh /tmp/berth-old target/release/berth 5 push --repo bench/chunked \
#        --blobs 16 --size 16M --chunk 4M --concurrency 4 --seed 3
# AB_PREPARE="push ARGS..." runs that regbench scenario first, unmeasured (data for a pull):
#   AB_PREPARE="push --repo bench/large --blobs 4 --size 256M --concurrency 2 --seed 1" \
#     scripts/bench-ab.sh /tmp/berth-old target/release/berth 3 pull --repo bench/large \
#     --concurrency 2 --rounds 2
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ $# -ge 4 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
a=$1 b=$2 reps=$3; shift 3
regbench=${BENCH_KIT_DIR:-/tmp/berth-bench-kit}/target/release/regbench
[ -x "$regbench" ] || { echo "bench-ab: run scripts/bench.sh --quick once to build $regbench" >&2; exit 2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tck=$(getconf CLK_TCK)

run() { # run BIN SCENARIO ARGS...
  local bin=$1 w port pid cpu0 cs0 out; shift
  w=$(mktemp -d /tmp/berth-ab.XXXXXX) port=$(free_port)
  local extra=""; [ "$bin" = docker-registry ] && extra="  cache: {blobdescriptor: inmemory}"
  printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s/data}\n  delete: {enabled: true}\n%s\nhttp: {addr: 127.0.0.1:%s}\n' \
    "$w" "$extra" "$port" >"$w/config.yml"
  if [ "$bin" = docker-registry ]; then
    docker-registry serve "$w/config.yml" >"$w/log" 2>&1 &
  else
    "$bin" serve "$w/config.yml" >"$w/log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
  if [ -n "${AB_PREPARE:-}" ]; then
    # shellcheck disable=SC2086 # the scenario's words
    "$regbench" $AB_PREPARE --url "http://127.0.0.1:$port" >/dev/null 2>&1
  fi
  sync
  cpu0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  cs0=$(cat /proc/"$pid"/task/*/status | awk '/ctxt_switches/ {s+=$2} END {print s}')
  out=$("$regbench" "$@" --url "http://127.0.0.1:$port" 2>&1 >/dev/null | tail -1)
  local cpu1 cs1
  cpu1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  cs1=$(cat /proc/"$pid"/task/*/status | awk '/ctxt_switches/ {s+=$2} END {print s}')
  echo "$(basename "$bin"): $out; server CPU $(python3 -c "print(round(($cpu1-$cpu0)/$tck, 2))") s, context switches $((cs1 - cs0)), $(grep VmHWM "/proc/$pid/status" | tr -s ' \t' ' '), load $(cut -d' ' -f1 /proc/loadavg)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$w"
}
for i in $(seq 1 "$reps"); do
  if [ $((i % 2)) = 1 ]; then run "$a" "$@"; run "$b" "$@"; else run "$b" "$@"; run "$a" "$@"; fi
done
