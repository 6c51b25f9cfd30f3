#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (github.com/opencontainers/distribution-spec,
# conformance/ at tag v1.1.1) against a freshly started Berth on a loopback port.
#
# Usage: scripts/oci-conformance.sh [CONFORMANCE_BIN] [EXTRA TEST-BINARY ARGS...]
#   CONFORMANCE_BIN  an already-built suite binary (`go test -c` in conformance/), or set
#                    $OCI_CONFORMANCE_BIN. Building it needs Go and the suite's Go modules,
#                    which CI cannot fetch: this script is not part of scripts/test.sh.
#   BERTH_BIN        the Berth binary (default target/release/berth)
#   OCI_REPORT_DIR   where junit.xml and report.html go (default: a temp dir, removed at exit)
#   OCI_AUTOMATIC_CROSSMOUNT  default 1: without auth, Berth mounts a blob found in any
#                    repository when `mount` comes without `from` (201). Set it to 0 to expect
#                    202 instead, or to "skip" to leave the variable unset (test not run).
# Any other OCI_* variable the suite reads (OCI_NAMESPACE, OCI_CROSSMOUNT_NAMESPACE,
# OCI_DELETE_MANIFEST_BEFORE_BLOBS, ...) is passed through; the four workflows are on.
#
# Prints the suite's output and its summary, stops Berth by PID, and exits non-zero when any
# spec fails (or the suite could not run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin=${1:-${OCI_CONFORMANCE_BIN:-}}
if [ $# -gt 0 ]; then shift; fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "usage: $0 CONFORMANCE_BIN (or OCI_CONFORMANCE_BIN=...); got '${bin}'" >&2
  exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -x "$BERTH_BIN" ] || { echo "no Berth binary at $BERTH_BIN (cargo build --release -p berth)" >&2; exit 2; }

work=$(mktemp -d /tmp/berth-oci-conformance.XXXXXX)
trap 'stop_pid "${BERTH_PID:-0}"; rm -rf "$work"' EXIT

write_config "$work/config.yml" "$work/data"
start_berth "$work/config.yml" "$work/berth.log"
echo "berth (pid $BERTH_PID) on http://$BERTH_ADDR"

report_dir=${OCI_REPORT_DIR:-$work/report}
[ "$report_dir" = none ] || mkdir -p "$report_dir"

crossmount=${OCI_AUTOMATIC_CROSSMOUNT-1}
env_args=(
  OCI_ROOT_URL="http://$BERTH_ADDR"
  OCI_NAMESPACE="${OCI_NAMESPACE:-myorg/myrepo}"
  OCI_CROSSMOUNT_NAMESPACE="${OCI_CROSSMOUNT_NAMESPACE:-myorg/other}"
  OCI_TEST_PULL=1
  OCI_TEST_PUSH=1
  OCI_TEST_CONTENT_DISCOVERY=1
  OCI_TEST_CONTENT_MANAGEMENT=1
  OCI_HIDE_SKIPPED_WORKFLOWS="${OCI_HIDE_SKIPPED_WORKFLOWS:-0}"
  OCI_DEBUG="${OCI_DEBUG:-0}"
  OCI_REPORT_DIR="$report_dir"
)
unset_args=()
if [ "$crossmount" = skip ]; then
  unset_args=(-u OCI_AUTOMATIC_CROSSMOUNT)
else
  env_args+=(OCI_AUTOMATIC_CROSSMOUNT="$crossmount")
fi

# Run in $work so that nothing the suite writes lands in the caller's directory.
# pipefail: the pipeline's status is the suite's (tee does not fail).
status=0
(cd "$work" && env "${unset_args[@]}" "${env_args[@]}" "$bin" "$@") 2>&1 | tee "$work/suite.log" ||
  status=$?

# Ginkgo colours its output; the summary is read from a copy without the escape codes.
sed -e 's/\x1b\[[0-9;]*m//g' "$work/suite.log" >"$work/suite.txt"
echo
echo "== OCI conformance summary (Berth on $BERTH_ADDR) =="
grep -aE '^Ran [0-9]+ of [0-9]+ Specs|^(SUCCESS|FAIL)! -- ' "$work/suite.txt" ||
  echo "(no ginkgo summary line found)"
if grep -aq '^Summarizing' "$work/suite.txt"; then
  sed -n '/^Summarizing/,/^Ran /p' "$work/suite.txt" | grep -aE '\[FAIL\]' || true
fi
if [ "$status" -ne 0 ]; then
  echo "conformance suite failed (status $status); last lines of Berth's log:"
  tail -n 40 "$work/berth.log"
  exit "$status"
fi
echo "conformance suite passed"
