#!/usr/bin/env bash
# Pull-through cache benchmark, in one run on 127.0.0.1: an upstream (Debian's docker-registry
# 2.8.2) holds an image set; docker-registry in proxy mode and Berth in proxy mode mirror it.
#   direct  : regbench pull straight from the upstream (what a cold mirror adds overhead to);
#   cold    : the first pull through each mirror (empty caches), one round;
#   warm    : pulls through each mirror once cached, ROUNDS rounds;
#   manifest: manifest GETs by tag through each warm mirror, C in flight for S seconds.
# A cache is cold only once, so each figure is a single measurement: run it on a quiet machine
# and more than once before trusting a difference of a few percent.
# The upstream sits behind scripts/throttle.py, a relay that limits what it sends to UPSTREAM_MIBS
# MiB/s in all (default 100): Docker Hub or ghcr.io are behind a WAN link, not on loopback at
# memory speed, and the cold-pull overhead is measured against that (UPSTREAM_MIBS=0: no relay).
# Usage: scripts/bench-proxy.sh [--blobs N] [--size 10M]
# Env: ROUNDS (3), SECONDS_RATE (10), UPSTREAM_MIBS (100)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

blobs=20 size=10M
while [ $# -gt 0 ]; do
  case $1 in
    --blobs) blobs=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    *) echo "usage: $0 [--blobs N] [--size SIZE]" >&2; exit 2 ;;
  esac
done
rounds=${ROUNDS:-3} rate_seconds=${SECONDS_RATE:-10}
command -v docker-registry >/dev/null || { echo "bench-proxy: docker-registry is not installed" >&2; exit 1; }

kit=${BENCH_KIT_DIR:-/tmp/berth-bench-kit}
if [ ! -x "$kit/compare.sh" ] || [ "$SHARED/bench/compare.sh" -nt "$kit/compare.sh" ]; then
  rm -rf "$kit"; cp -r "$SHARED/bench" "$kit"; chmod -R u+w "$kit"
fi
(cd "$kit" && cargo build --release >&2)
regbench=$kit/target/release/regbench
(cd "$REPO_ROOT" && cargo build --release --locked -p berth >&2)
BERTH_BIN=$REPO_ROOT/target/release/berth

work=$(mktemp -d /tmp/berth-bench-proxy.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do stop_pid "$p"; done; rm -rf "$work"; }
trap cleanup EXIT
# Quiet logs for every server (registry:2 logs each request at info): so each gets a fixed free
# port, since the "listening on" line is an info line.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
quiet() { # quiet CONFIG: error-level logs and a free port; prints the address
  local addr="127.0.0.1:$(free_port)"
  sed -i -e 's/level: info/level: error/' -e "s/addr: 127.0.0.1:0/addr: $addr/" "$1"
  echo "$addr"
}
serve() { # serve NAME ADDR COMMAND...: starts it, waits until ADDR answers /v2/
  local name=$1 addr=$2; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://$addr/v2/" && return 0
    sleep 0.1
  done
  echo "bench-proxy: $name did not start" >&2; cat "$work/$name.log" >&2; exit 1
}

write_config "$work/up.yml" "$work/up"; up=$(quiet "$work/up.yml")
serve upstream "$up" docker-registry serve "$work/up.yml"
echo "bench-proxy: upstream docker-registry on $up; pushing $blobs x $size" >&2
"$regbench" push --url "http://$up" --repo bench/proxy --blobs "$blobs" --size "$size" --concurrency 4 >/dev/null

write_config "$work/registry2.yml" "$work/registry2"; r2=$(quiet "$work/registry2.yml")
write_config "$work/berth.yml" "$work/berth"; berth=$(quiet "$work/berth.yml")
mibs_limit=${UPSTREAM_MIBS:-100}
if [ "$mibs_limit" != 0 ]; then
  relay="127.0.0.1:$(free_port)"
  python3 "$REPO_ROOT/scripts/throttle.py" "${relay#*:}" "$up" "$mibs_limit" >"$work/throttle.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://$relay/v2/" && break; sleep 0.1; done
  echo "bench-proxy: upstream reached through a $mibs_limit MiB/s relay on $relay" >&2
  up=$relay
fi
for who in registry2 berth; do
  printf 'proxy:\n  remoteurl: http://%s\n' "$up" >>"$work/$who.yml"
done
serve registry2 "$r2" docker-registry serve "$work/registry2.yml"
serve berth "$berth" "$BERTH_BIN" serve "$work/berth.yml"

run() { # run NAME ARGS...: one regbench JSON line into $work/NAME.json
  local name=$1; shift
  "$regbench" "$@" >"$work/$name.json" 2>"$work/$name.err" \
    || { echo "bench-proxy: $name failed" >&2; cat "$work/$name.err" >&2; exit 1; }
}
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/$1.json" "$2"; }

run direct pull --url "http://$up" --repo bench/proxy --concurrency 4 --rounds 1
run cold-registry2 pull --url "http://$r2" --repo bench/proxy --concurrency 4 --rounds 1
run cold-berth pull --url "http://$berth" --repo bench/proxy --concurrency 4 --rounds 1
for who in registry2 berth; do
  addr=$r2; [ "$who" = berth ] && addr=$berth
  run "warm-$who" pull --url "http://$addr" --repo bench/proxy --concurrency 4 --rounds "$rounds"
  run "rate-$who" manifest-rate --url "http://$addr" --repo bench/proxy --concurrency 32 --seconds "$rate_seconds"
done

keys() { python3 -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1])).keys())))' "$work/$1.json"; }
echo "regbench fields: pull: $(keys direct); manifest-rate: $(keys rate-berth)" >&2
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mibs() { field "$1" mib_per_s; }
d=$(mibs direct) cr=$(mibs cold-registry2) cb=$(mibs cold-berth) wr=$(mibs warm-registry2) wb=$(mibs warm-berth)
rr=$(field rate-registry2 req_per_s) rb=$(field rate-berth req_per_s)
pr=$(field rate-registry2 p99_ms) pb=$(field rate-berth p99_ms)
echo
echo "upstream limited to: ${mibs_limit} MiB/s (0 = unlimited)"
echo
echo "| measurement | direct from upstream | through registry:2 proxy | through Berth | Berth / registry:2 |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| cold pull, MiB/s | $d | $cr | $cb | $(ratio "$cb" "$cr") |"
echo "| cold pull, share of the direct speed | 1.00 | $(ratio "$cr" "$d") | $(ratio "$cb" "$d") | |"
echo "| warm pull ($rounds rounds), MiB/s | | $wr | $wb | $(ratio "$wb" "$wr") |"
echo "| warm manifest GET, req/s (32 in flight) | | $rr | $rb | $(ratio "$rb" "$rr") |"
echo "| warm manifest GET, p99 ms | | $pr | $pb | $(ratio "$pb" "$pr") |"
