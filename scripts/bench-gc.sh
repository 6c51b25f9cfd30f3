#!/usr/bin/env bash
# Garbage-collection benchmark: `berth garbage-collect` against Debian's `docker-registry
# garbage-collect` (2.8.2) on the same generated registry:2 data directory, in one run.
#   1. dry runs, alternating berth / docker-registry, RUNS times each (the data is unchanged);
#   2. one real run of each on its own copy, then the surviving blob sets are compared.
# Wall time and peak memory come from /usr/bin/time; medians are printed, and the ratio
# docker-registry / berth (above 1 = Berth faster).
# Usage: scripts/bench-gc.sh [--manifests N] [--blobs N]   (defaults 10000 and 50000)
# Env: RUNS (default 3), KEEP=1 keeps the work directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

manifests=10000 blobs=50000
while [ $# -gt 0 ]; do
  case $1 in
    --manifests) manifests=$2; shift 2 ;;
    --blobs) blobs=$2; shift 2 ;;
    *) echo "usage: $0 [--manifests N] [--blobs N]" >&2; exit 2 ;;
  esac
done
runs=${RUNS:-3}
command -v docker-registry >/dev/null || { echo "bench-gc: docker-registry is not installed (scripts/install-test-deps.sh)" >&2; exit 1; }
(cd "$REPO_ROOT" && cargo build --release --locked -p berth >&2)
berth=$REPO_ROOT/target/release/berth

work=$(mktemp -d /tmp/berth-bench-gc.XXXXXX)
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$work"' EXIT
config() { # config ROOT FILE: the same registry:2 config for both tools
  cat >"$2" <<YAML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $1}
  delete: {enabled: true}
http: {addr: 127.0.0.1:0}
YAML
}
echo "bench-gc: generating $manifests manifests, $blobs blobs in $work/data" >&2
summary=$(python3 "$REPO_ROOT/scripts/gen-gc-data.py" "$work/data" --manifests "$manifests" --blobs "$blobs")
echo "data: $summary"
config "$work/data" "$work/config.yml"

# timed NAME COMMAND...: appends "wall_seconds peak_kib" to $work/NAME.times
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >"$work/$name.out" 2>"$work/$name.err" \
    || { echo "bench-gc: $name failed:" >&2; tail -5 "$work/$name.err" >&2; exit 1; }
  cat "$work/time.out" >>"$work/$name.times"
}
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
for _ in $(seq "$runs"); do
  timed berth-dry "$berth" garbage-collect --dry-run --quiet "$work/config.yml"
  timed registry2-dry docker-registry garbage-collect --dry-run "$work/config.yml"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$2" '{print $c}' "$work/$1.times" | median; }

# Real runs, each on its own copy of the same data.
cp -a "$work/data" "$work/data-berth"; cp -a "$work/data" "$work/data-registry2"
config "$work/data-berth" "$work/berth.yml"; config "$work/data-registry2" "$work/registry2.yml"
timed berth-real "$berth" garbage-collect --quiet "$work/berth.yml"
timed registry2-real docker-registry garbage-collect "$work/registry2.yml"
left() { (cd "$1/docker/registry/v2/blobs" && find . -name data | sort); }
if diff <(left "$work/data-berth") <(left "$work/data-registry2") >/dev/null; then
  same="yes ($(left "$work/data-berth" | wc -l) blobs left by each)"
else
  same="NO"
fi

bd=$(col berth-dry 1) rd=$(col registry2-dry 1) bm=$(col berth-dry 2) rm_=$(col registry2-dry 2)
br=$(col berth-real 1) rr=$(col registry2-real 1) bmr=$(col berth-real 2) rmr=$(col registry2-real 2)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; }
echo
echo "| run | berth | docker-registry 2.8.2 | ratio (registry:2 / berth) |"
echo "| --- | ---: | ---: | ---: |"
echo "| dry run, wall s (median of $runs) | $bd | $rd | $(ratio "$rd" "$bd") |"
echo "| dry run, peak RSS MiB | $((bm / 1024)) | $((rm_ / 1024)) | $(ratio "$rm_" "$bm") |"
echo "| real run, wall s | $br | $rr | $(ratio "$rr" "$br") |"
echo "| real run, peak RSS MiB | $((bmr / 1024)) | $((rmr / 1024)) | $(ratio "$rmr" "$bmr") |"
echo
echo "berth: $(tail -n1 "$work/berth-real.out")"
echo "docker-registry: $(grep -E 'blobs marked' "$work/registry2-real.out" | tail -n1)"
echo "same blobs left after the real runs: $same"
[ "$same" != NO ]
