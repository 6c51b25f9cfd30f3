#!/usr/bin/env bash
# The web UI in a real browser: Debian's chromium driven by playwright-core (npm), with
# axe-core (@axe-core/playwright) checking every page in light and dark mode, against the
# release binary ($BERTH_BIN, scripts/lib.sh) with htpasswd auth, seeded over the registry API
# (scripts/ui-browser/seed.mjs: 2,000 repositories, one with 10,000 tags). Servers on the same
# storage in each login mode: htpasswd at the root and under http.prefix /reg/, no auth, and
# the built-in token server; plus a pull-through cache of the no-auth one, with an image
# pulled through it. The tests are scripts/ui-browser/ui.test.mjs (node:test); they save
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

# No auth, same storage.
write_config "$work/open.yml" "$work/data"
start_berth "$work/open.yml" "$work/open.log"
PIDS+=("$BERTH_PID")
open_url="http://$BERTH_ADDR/"
# The built-in token server, same storage: alice may pull team/app; root is an admin.
printf '%s\n' 'alice-pw' | "$BERTH_BIN" htpasswd -f "$work/token-htpasswd" --password-stdin alice >/dev/null
printf '%s\n' 'root-pw' | "$BERTH_BIN" htpasswd -f "$work/token-htpasswd" --password-stdin root >/dev/null
write_config "$work/token.yml" "$work/data"
cat >>"$work/token.yml" <<YAML
auth:
  token:
    realm: http://127.0.0.1:9/auth/token
    autoredirect: true
    service: ui-browser
    issuer: ui-browser
    builtin:
      htpasswd: $work/token-htpasswd
      signingkey: $work/token-key.pem
      admins: [root]
      rules:
        - {repositories: [team/app], users: [alice], actions: [pull]}
YAML
start_berth "$work/token.yml" "$work/token.log"
PIDS+=("$BERTH_PID")
token_url="http://$BERTH_ADDR/"
# A pull-through cache of the no-auth server, on its own storage.
write_config "$work/mirror.yml" "$work/mirror-data"
cat >>"$work/mirror.yml" <<YAML
proxy:
  upstreams:
    - {host: upstream.test, url: ${open_url%/}, timeout: 5s}
YAML
start_berth "$work/mirror.yml" "$work/mirror.log"
PIDS+=("$BERTH_PID")
mirror_url="http://$BERTH_ADDR/"
echo "ui-browser: no auth at $open_url, token server at $token_url, pull-through cache at $mirror_url"

started=$(date +%s)
node "$dir/seed.mjs" "$root_url" "$user" "$password" "$work/seed.json" "$mirror_url"
echo "ui-browser: seeded in $(( $(date +%s) - started )) s"

export UI_TARGETS="[{\"name\":\"root\",\"url\":\"$root_url\",\"shots\":${UI_SHOTS:-1}},{\"name\":\"prefix /reg/\",\"url\":\"$prefix_url\",\"shots\":0}]"
export UI_MODES="{\"open\":\"$open_url\",\"token\":\"$token_url\",\"mirror\":\"$mirror_url\"}"
export UI_USER=$user UI_PASSWORD=$password UI_SEED=$work/seed.json UI_SHOT_DIR=$PWD/docs/ui
export UI_PROFILE_DIR=$work/chromium-profile
node --test --test-reporter=spec --test-concurrency=1 "$dir/ui.test.mjs"
