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
# Single sign-on: npm oidc-provider (scripts/oidc/idp.mjs: alice in team-a, bob in team-b) and
# a server with auth.oidc beside the built-in token server, whose rules grant by group.
if [ ! -f scripts/oidc/node_modules/oidc-provider/package.json ] ||
  [ scripts/oidc/package-lock.json -nt scripts/oidc/node_modules/.package-lock.json ]; then
  (cd scripts/oidc && npm ci --no-audit --no-fund --loglevel=error) || missing "npm packages (npm ci in scripts/oidc)"
fi
node scripts/oidc/idp.mjs >"$work/idp.out" 2>"$work/idp.log" &
PIDS+=("$!")
for _ in $(seq 100); do grep -q issuer "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
issuer=$(sed -n 's/.*"issuer":"\([^"]*\)".*/\1/p' "$work/idp.out")
[ -n "$issuer" ] || { cat "$work/idp.log" >&2; echo "ui-browser: the identity provider did not start" >&2; exit 1; }
# Its own htpasswd, without alice or bob: a provider user named like a local account is refused.
printf '%s\n' 'root-pw' | "$BERTH_BIN" htpasswd -f "$work/oidc-htpasswd" --password-stdin root >/dev/null
write_config "$work/oidc.yml" "$work/data"
cat >>"$work/oidc.yml" <<YAML
auth:
  token:
    realm: http://127.0.0.1:9/auth/token
    autoredirect: true
    service: ui-browser-oidc
    issuer: ui-browser-oidc
    builtin:
      htpasswd: $work/oidc-htpasswd
      signingkey: $work/oidc-key.pem
      rules:
        - {repositories: [team/app], groups: [team-a], actions: [pull, push]}
  oidc:
    realm: $issuer
    service: Test IdP
    client_id: berth
    client_secret: berth-test-secret
YAML
start_berth "$work/oidc.yml" "$work/oidc.log"
PIDS+=("$BERTH_PID")
oidc_url="http://$BERTH_ADDR/"
echo "ui-browser: no auth at $open_url, token server at $token_url, pull-through cache at $mirror_url, OIDC at $oidc_url (provider $issuer)"

started=$(date +%s)
node "$dir/seed.mjs" "$root_url" "$user" "$password" "$work/seed.json" "$mirror_url"
echo "ui-browser: seeded in $(( $(date +%s) - started )) s"

export UI_TARGETS="[{\"name\":\"root\",\"url\":\"$root_url\",\"shots\":${UI_SHOTS:-1}},{\"name\":\"prefix /reg/\",\"url\":\"$prefix_url\",\"shots\":0}]"
export UI_MODES="{\"open\":\"$open_url\",\"token\":\"$token_url\",\"mirror\":\"$mirror_url\",\"oidc\":\"$oidc_url\"}"
export UI_TOKEN_FILE=$work/access-token
export UI_USER=$user UI_PASSWORD=$password UI_SEED=$work/seed.json UI_SHOT_DIR=$PWD/docs/ui
export UI_PROFILE_DIR=$work/chromium-profile
status=0
node --test --test-reporter=spec --test-concurrency=1 "$dir/ui.test.mjs" || status=$?

# The access token alice created in the browser, with skopeo as docker login would use it:
# what her group may do (pull and push team/app), nothing else.
command -v skopeo >/dev/null 2>&1 || missing "skopeo"
checks=0 failed=0
check() { # check WHAT EXPECTED(ok|refused) COMMAND...
  local what=$1 expected=$2; shift 2
  checks=$((checks + 1))
  if "$@" >"$work/skopeo.out" 2>&1; then got=ok; else got=refused; fi
  local why=""
  [ "$got" = refused ] && why=": $(tail -n1 "$work/skopeo.out" | cut -c1-200)"
  if [ "$got" = "$expected" ]; then echo "ok   $what ($got$why)"; else
    failed=$((failed + 1)); echo "FAIL $what: expected $expected, got $got"; sed 's/^/     /' "$work/skopeo.out"; fi
}
if [ -s "$UI_TOKEN_FILE" ]; then
  token=$(cat "$UI_TOKEN_FILE") host=${oidc_url#http://} host=${host%/}
  sk=(skopeo --override-os linux --override-arch amd64)
  check "pull team/app with the token" ok "${sk[@]}" inspect --tls-verify=false --creds "alice:$token" "docker://$host/team/app:v1"
  check "pull team/many (another team's) with the token" refused "${sk[@]}" inspect --tls-verify=false --creds "alice:$token" "docker://$host/team/many:t-0001"
  check "push team/app:by-token with the token" ok "${sk[@]}" copy --src-tls-verify=false --dest-tls-verify=false \
    --src-creds "alice:$token" --dest-creds "alice:$token" "docker://$host/team/app:v1" "docker://$host/team/app:by-token"
  check "push team/many:by-token with the token" refused "${sk[@]}" copy --src-tls-verify=false --dest-tls-verify=false \
    --src-creds "alice:$token" --dest-creds "alice:$token" "docker://$host/team/app:v1" "docker://$host/team/many:by-token"
  check "pull team/app with a wrong token" refused "${sk[@]}" inspect --tls-verify=false --creds "alice:${token}x" "docker://$host/team/app:v1"
  check "pull team/app with the token as bob" refused "${sk[@]}" inspect --tls-verify=false --creds "bob:$token" "docker://$host/team/app:v1"
else
  failed=$((failed + 1)); echo "FAIL no access token was created in the browser"
fi
echo "ui-browser: access token with skopeo: $((checks - failed)) of $checks checks passed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
