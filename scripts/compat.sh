#!/usr/bin/env bash
# Runs the shared real-client kit (skopeo + containerd) against a freshly started Berth and
# requires every check to pass. Usage: scripts/compat.sh [plain]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mode=${1:-plain}
work=$(mktemp -d /tmp/berth-compat.XXXXXX)
trap 'stop_pid "${BERTH_PID:-0}"; rm -rf "$work"' EXIT

case "$mode" in
  plain) write_config "$work/config.yml" "$work/data" ;;
  *) echo "compat.sh: unknown mode $mode" >&2; exit 2 ;;
esac
start_berth "$work/config.yml" "$work/berth.log"
echo "compat ($mode): berth at $BERTH_ADDR"
out=$("$SHARED/compat/run.sh" "$BERTH_ADDR" --tls-verify=false 2>&1) || true
echo "$out"
if ! echo "$out" | tail -n1 | grep -qE 'compat: [0-9]+ passed, 0 failed'; then
  echo "compat ($mode): FAILED; berth log tail:" >&2
  tail -n 50 "$work/berth.log" >&2
  exit 1
fi
if echo "$out" | grep -q '^SKIP'; then
  if [ "${CI:-}" = "true" ]; then
    echo "compat ($mode): checks were skipped, which CI does not allow (containerd needs root)" >&2
    exit 1
  fi
  echo "compat ($mode): WARNING: some checks were skipped"
fi
