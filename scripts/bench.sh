#!/usr/bin/env bash
# Runs ../shared/bench/compare.sh: the same load against docker-registry 2.8.2 and Berth in one
# run, ratios per row. The kit is copied to a writable place first (shared/ is read-only and
# compare.sh builds regbench next to itself). Extra arguments go to compare.sh (e.g. --quick).
# Then the machine's ceiling on the data that run left: nginx (sendfile) serving Berth's own
# manifest and blob files to the same pulls and manifest GETs, beside Berth again
# (scripts/bench-ceiling.sh --data), so the output says how far each read is from the limit.
# Last the ceiling of pushes: the disk work of a durable registry:2-layout push and the SHA-256,
# nothing else (scripts/bench-push-ceiling.py), for the three push rows, with and without syncs.
# Usage: scripts/bench.sh [--quick] [--out DIR]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kit=${BENCH_KIT_DIR:-/tmp/berth-bench-kit}
if [ ! -x "$kit/compare.sh" ] || [ "$SHARED/bench/compare.sh" -nt "$kit/compare.sh" ]; then
  rm -rf "$kit"; cp -r "$SHARED/bench" "$kit"; chmod -R u+w "$kit"
fi
# The baseline: Debian's docker-registry 2.8.2, installed here when missing (compare.sh would
# stop; scripts/bench-ceiling.sh installs its nginx itself).
if ! command -v docker-registry >/dev/null; then
  apt_install docker-registry
  # Debian starts it as a service on port 5000; the benchmark starts its own on a free port.
  as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
(cd "$REPO_ROOT" && cargo build --release --locked -p berth)

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) baseline_port=$(free_port)
# Configured like the baseline: filesystem storage, delete enabled, quiet logs, no access log.
cat >"$work/berth.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: $work/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$port
YAML
echo "bench: berth data in $work/data, config $work/berth.yml" >&2
echo "bench: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$kit/compare.sh" --markdown --baseline-port "$baseline_port" --other-url "http://127.0.0.1:$port" --other-name berth "$@" -- "$BERTH_BIN" serve "$work/berth.yml"
echo "bench: load average after compare.sh: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
quick=()
for arg in "$@"; do [ "$arg" = --quick ] && quick=(--quick); done
echo
BENCH_KIT_DIR=$kit "$REPO_ROOT/scripts/bench-ceiling.sh" "${quick[@]}" --data "$work/data"
rm -rf "$work"
echo
echo "push ceiling: the disk work and SHA-256 of each push alone (scripts/bench-push-ceiling.py, in $(df --output=source,fstype /tmp | tail -1 | tr -s ' ')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| scenario | MiB/s, fsync'd (2 runs) | MiB/s, no syncs (2 runs) |"
echo "|---|---:|---:|"
ceiling() { python3 "$REPO_ROOT/scripts/bench-push-ceiling.py" "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mib_per_s"])'; }
for row in "push 200x1M c=8|--images 200 --size 1048576 --concurrency 8" \
           "push 4x256M c=2|--images 4 --size 268435456 --concurrency 2" \
           "push 16x16M chunk=4M c=4|--images 16 --size 16777216 --concurrency 4"; do
  name=${row%%|*} args=${row#*|}
  # shellcheck disable=SC2086
  echo "| $name | $(ceiling $args), $(ceiling $args) | $(ceiling $args --no-sync), $(ceiling $args --no-sync) |"
done
