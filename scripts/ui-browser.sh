#!/usr/bin/env bash
# The web UI in a real browser: Debian's chromium driven by playwright-core (npm), with
# axe-core (@axe-core/playwright) checking every page in light and dark mode, against the
# release binary ($BERTH_BIN, scripts/lib.sh) with htpasswd auth, seeded over the registry API
# (scripts/ui-browser/seed.mjs). Two servers on the same storage: one at the root and one under
# http.prefix /reg/. The tests are scripts/ui-browser/ui.test.mjs (node:test); they save
# screenshots of each page, light and dark, to docs/ui/ (UI_SHOTS=0 leaves them alone).
# Installs chromium (apt) and the npm packages (npm ci into scripts/ui-browser/node_modules)
# when missing. Loopback only. Under CI=true a missing tool is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

missing() {
  echo "ui-browser: $1 missing" >&2
  [ "${CI:-}" = true ] && exit 1
  echo "ui-browser: SKIPPED (not under CI)" >&2
  exit 0
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -x /usr/bin/chromium ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null || true
fi
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null || true
fi
[ -x /usr/bin/chromium ] || missing "chromium (/usr/bin/chromium)"
command -v node >/dev/null 2>&1 || missing "node"
command -v npm >/dev/null 2>&1 || missing "npm"
[ -x "$BERTH_BIN" ] || missing "the berth binary ($BERTH_BIN)"
dir=scripts/ui-browser
# npm ci when the packages are missing or the lock file changed since they were installed.
if [ ! -f "$dir/node_modules/playwright-core/package.json" ] ||
  [ ! -f "$dir/node_modules/@axe-core/playwright/package.json" ] ||
  [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || missing "npm packages (npm ci in $dir)"
fi

work=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT

user=ui-tester password='correct horse & battery'
printf '%s\n' "$password" | "$BERTH_BIN" htpasswd -f "$work/htpasswd" --password-stdin "$user" >/dev/null
auth_yaml() {
  printf 'auth:\n  htpasswd:\n    realm: ui-browser\n    path: %s\n' "$work/htpasswd"
}
write_config "$work/root.yml" "$work/data"
auth_yaml >>"$work/root.yml"
start_berth "$work/root.yml" "$work/root.log"
PIDS+=("$BERTH_PID")
root_url="http://$BERTH_ADDR/"
# The same storage under a prefix: a second server (sessions are per server).
write_config "$work/prefix.yml" "$work/data"
printf '  prefix: /reg/\n' >>"$work/prefix.yml"
auth_yaml >>"$work/prefix.yml"
start_berth "$work/prefix.yml" "$work/prefix.log"
PIDS+=("$BERTH_PID")
prefix_url="http://$BERTH_ADDR/reg/"
echo "ui-browser: berth at $root_url and $prefix_url"

node "$dir/seed.mjs" "$root_url" "$user" "$password" "$work/seed.json"

export UI_TARGETS="[{\"name\":\"root\",\"url\":\"$root_url\",\"shots\":${UI_SHOTS:-1}},{\"name\":\"prefix /reg/\",\"url\":\"$prefix_url\",\"shots\":0}]"
export UI_USER=$user UI_PASSWORD=$password UI_SEED=$work/seed.json UI_SHOT_DIR=$PWD/docs/ui
export UI_PROFILE_DIR=$work/chromium-profile
node --test --test-reporter=spec --test-concurrency=1 "$dir/ui.test.mjs"
