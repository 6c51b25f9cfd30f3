#!/usr/bin/env bash
# Validates the deployment artifacts offline (docs/deployment.md says what each check proves):
#   1. the static musl binary: scripts/build-static.sh (statically linked, size printed);
#   2. YAML: yamllint and a parse of every document; Kubernetes manifests against the Kubernetes
#      OpenAPI schemas (kubernetes-validate --strict); kustomization.yaml complete;
#   3. Helm chart: helm lint (Helm's Go library via helm-sdkpy) with several value sets, plus two
#      that must fail; compose file: docker-compose config; Nomad job: HCL2 parse + structure;
#      Grafana dashboard: every metric and label it queries is one Berth exports;
#      systemd unit: systemd-analyze verify and security --offline;
#   4. the example configs (compose, image, Kubernetes ConfigMap, Nomad template) with the real
#      binary: `berth config check`, then `berth serve` on an ephemeral loopback port with
#      /healthz, /readyz, /v2/ and `berth healthcheck`; /readyz stays 200 under htpasswd auth;
#   5. the Dockerfile: a private dockerd builds the image FROM scratch and runs it with no
#      network, read-only: HEALTHCHECK turns healthy, a blob push lands in the volume, stop is clean.
# Exits non-zero on any failure. Under CI=true a missing tool is a failure, never a skip.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

CI=${CI:-false}
PY=${PYTHON:-python3}
work=$(mktemp -d /tmp/berth-validate-deploy.XXXXXX)
DOCKERD_PID=0
SERVE_PID=0
cleanup() {
  stop_pid "$SERVE_PID"
  if [ "$DOCKERD_PID" -gt 0 ]; then
    docker rm -f berth-validate >/dev/null 2>&1 || true
    stop_pid "$DOCKERD_PID"
  fi
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0 skipped=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
# missing WHAT HOW: a skip locally, a failure under CI.
missing() {
  if [ "$CI" = true ]; then
    fail "$1 is missing ($2)"
  else
    echo "SKIP $1 is missing ($2)"; skipped=$((skipped + 1))
  fi
}
# check NAME COMMAND...: PASS when the command exits 0, else FAIL with its output.
check() {
  local name=$1; shift
  if "$@" >"$work/out" 2>&1; then
    pass "$name"; sed 's/^/     /' "$work/out"
  else
    fail "$name"; sed 's/^/     /' "$work/out"
  fi
}
has_py() { "$PY" -c "import $1" >/dev/null 2>&1; }
# vdpy SUBCOMMAND ARGS...: the Python checks (scripts/validate_deploy.py --help).
vdpy() { "$PY" scripts/validate_deploy.py "$@"; }

echo "--- static binary"
BIN=""
# cargo does nothing when the binary is up to date.
if scripts/build-static.sh >"$work/build-static.log" 2>&1; then
  BIN=target/static/berth-x86_64-unknown-linux-musl
  pass "scripts/build-static.sh (x86_64-unknown-linux-musl)"
  grep '^build-static: \(file\|ldd\|target\)' "$work/build-static.log" | sed 's/^/     /'
else
  fail "scripts/build-static.sh"; tail -20 "$work/build-static.log" | sed 's/^/     /'
fi
if [ -z "$BIN" ]; then
  # Without the static binary the config checks below still run, with a glibc build.
  for candidate in target/release/berth target/debug/berth; do
    [ -x "$candidate" ] && { BIN=$candidate; break; }
  done
fi
[ -n "$BIN" ] && echo "     runtime checks use $BIN"

echo "--- YAML"
mapfile -t yaml_files < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) -not -path 'deploy/helm/*/templates/*' | sort)
if command -v yamllint >/dev/null 2>&1; then
  check "yamllint (${#yaml_files[@]} files)" yamllint --strict \
    -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}, comments-indentation: disable}}' \
    "${yaml_files[@]}"
else
  missing yamllint "apt-get install yamllint"
fi
if has_py yaml; then
  check "every YAML document parses" vdpy yaml "${yaml_files[@]}"
else
  missing "python3 yaml module" "apt-get install python3-yaml or pip install pyyaml"
fi

echo "--- Kubernetes manifests"
mapfile -t k8s_files < <(find deploy/kubernetes -name '*.yaml' -not -name kustomization.yaml | sort)
if command -v kubernetes-validate >/dev/null 2>&1; then
  # It only warns (exit 0) for a kind it has no schema for: count that as a failure too.
  if kubernetes-validate --strict "${k8s_files[@]}" >"$work/kv" 2>&1 && ! grep -qE '^(WARN|ERROR)' "$work/kv"; then
    pass "kubernetes-validate --strict against the Kubernetes $(grep -o 'against version [0-9.]*' "$work/kv" | head -1 | cut -d' ' -f3) schemas (${#k8s_files[@]} manifests)"
  else
    fail "kubernetes-validate --strict"; sed 's/^/     /' "$work/kv"
  fi
else
  missing kubernetes-validate "pip install kubernetes-validate"
fi
has_py yaml && check "kustomization.yaml lists every manifest" vdpy kustomization deploy/kubernetes

echo "--- Helm chart"
if has_py helm_sdkpy; then
  check "helm lint deploy/helm/berth (Helm Go library via helm-sdkpy)" vdpy helm-lint deploy/helm/berth
else
  missing "helm-sdkpy (Python)" "pip install --ignore-requires-python helm-sdkpy"
fi

echo "--- Compose"
if command -v docker-compose >/dev/null 2>&1; then
  check "docker-compose config (compose.yaml against the Compose schema)" \
    docker-compose -f deploy/compose/compose.yaml config -q
elif docker compose version >/dev/null 2>&1; then
  check "docker compose config (compose.yaml against the Compose schema)" \
    docker compose -f deploy/compose/compose.yaml config -q
else
  missing docker-compose "apt-get install docker-compose"
fi

echo "--- Nomad job"
if has_py hcl2; then
  check "berth.nomad.hcl: HCL2 parse and job structure (not nomad job validate)" \
    vdpy nomad deploy/nomad/berth.nomad.hcl "$work/nomad-config.yml"
else
  missing "python-hcl2" "pip install python-hcl2"
fi

echo "--- Grafana dashboard"
check "berth-dashboard.json: metrics and labels" vdpy grafana deploy/grafana/berth-dashboard.json
# The checker must reject a dashboard that queries a metric or a label Berth does not export.
for mutation in 's/berth_disk_free_bytes/berth_disk_free/' 's/sum by (handler) (registry_http_in_flight/sum by (code) (registry_http_in_flight/'; do
  sed "$mutation" deploy/grafana/berth-dashboard.json >"$work/bad-dashboard.json"
  if vdpy grafana "$work/bad-dashboard.json" >"$work/out" 2>&1; then
    fail "the dashboard checker accepted a broken dashboard ($mutation)"
  else
    pass "the dashboard checker rejects a broken dashboard ($mutation): $(head -1 "$work/out" | cut -c1-140)"
  fi
done

echo "--- systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify needs ExecStart's binary to exist: check a copy that points at the one built here.
  unit_bin=$(readlink -f "${BIN:-/bin/true}")
  sed "s#^ExecStart=/usr/local/bin/berth#ExecStart=$unit_bin#" deploy/systemd/berth.service >"$work/berth.service"
  # It prints (and exits 0) for unknown keys and bad values: any output is a failure.
  if systemd-analyze verify "$work/berth.service" >"$work/out" 2>&1 && [ ! -s "$work/out" ]; then
    pass "systemd-analyze verify deploy/systemd/berth.service"
  else
    fail "systemd-analyze verify deploy/systemd/berth.service"; sed 's/^/     /' "$work/out"
  fi
  if systemd-analyze security --offline=true --threshold=20 "$work/berth.service" >"$work/out" 2>&1; then
    pass "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$work/out")"
  else
    fail "systemd-analyze security (exposure above 2.0)"; tail -25 "$work/out" | sed 's/^/     /'
  fi
else
  missing systemd-analyze "apt-get install systemd"
fi

echo "--- example configs with the real binary"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# main_addr LOG PID: the registry's own address from "berth VERSION listening on URL" (the debug
# server prints "berth debug server listening on" first when http.debug is set).
main_addr() {
  local log=$1 pid=$2 addr=""
  for _ in $(seq 1 200); do
    addr=$(grep -o '^berth [0-9][^ ]* listening on [^ ]*' "$log" 2>/dev/null | head -n1 | sed -e 's/.* listening on //' -e 's#^https\?://##')
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log"
  return 1
}
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" || true; }
# serve_check NAME CONFIG [EXPECT_V2]: berth serve CONFIG on loopback port 0 with its data in
# $work (REGISTRY_* overrides, as a deployment would use them), then probe it.
serve_check() {
  local name=$1 config=$2 expect_v2=${3:-200} n=$((passed + failed)) addr metrics_port
  # Only its warnings are shown: the effective configuration goes to /dev/null.
  if "$BIN" config check "$config" 2>"$work/out" >/dev/null; then
    pass "berth config check: $name"
  else
    fail "berth config check: $name"
  fi
  sed 's/^/     /' "$work/out"
  metrics_port=$(free_port)
  REGISTRY_HTTP_ADDR=127.0.0.1:0 REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$work/data-$n" \
    REGISTRY_HTTP_DEBUG_ADDR=127.0.0.1:$metrics_port \
    "$BIN" serve "$config" >"$work/serve-$n.log" 2>&1 &
  SERVE_PID=$!
  if ! addr=$(main_addr "$work/serve-$n.log" "$SERVE_PID" 2>&1); then
    fail "berth serve: $name did not start"; echo "$addr" | tail -5 | sed 's/^/     /'
    stop_pid "$SERVE_PID"; SERVE_PID=0
    return
  fi
  local healthz readyz v2
  healthz=$(http_code "http://$addr/healthz") readyz=$(http_code "http://$addr/readyz") v2=$(http_code "http://$addr/v2/")
  if [ "$healthz" = 200 ] && [ "$readyz" = 200 ] && [ "$v2" = "$expect_v2" ]; then
    pass "berth serve: $name: /healthz 200, /readyz 200, /v2/ $v2"
  else
    fail "berth serve: $name: /healthz $healthz, /readyz $readyz, /v2/ $v2 (wanted 200, 200, $expect_v2)"
    tail -5 "$work/serve-$n.log" | sed 's/^/     /'
  fi
  check "berth healthcheck http://$addr/readyz ($name)" "$BIN" healthcheck "http://$addr/readyz"
  # Metrics (http.debug) are informational: the dashboard check above is the contract.
  if curl -sf --max-time 5 "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt" 2>/dev/null; then
    vdpy grafana-crosscheck deploy/grafana/berth-dashboard.json "$work/metrics.txt" | sed 's/^/     /'
  else
    echo "     info no /metrics on http.debug.addr 127.0.0.1:$metrics_port (not served by this binary)"
  fi
  stop_pid "$SERVE_PID"; SERVE_PID=0
}
if [ -n "$BIN" ]; then
  serve_check "deploy/compose/config.yml" deploy/compose/config.yml
  serve_check "deploy/docker/config.yml (baked into the image)" deploy/docker/config.yml
  if has_py yaml; then
    vdpy configmap-config deploy/kubernetes/configmap.yaml "$work/k8s-config.yml" >/dev/null
    serve_check "deploy/kubernetes/configmap.yaml config.yml" "$work/k8s-config.yml"
  fi
  [ -s "$work/nomad-config.yml" ] && serve_check "deploy/nomad/berth.nomad.hcl template" "$work/nomad-config.yml"
  # With htpasswd, /v2/ answers 401 (why the Nomad job also checks /readyz), /readyz stays 200.
  echo 'check-password' | "$BIN" htpasswd -f "$work/htpasswd" --password-stdin --cost 4 ci >/dev/null 2>&1
  { cat deploy/compose/config.yml; printf 'auth:\n  htpasswd:\n    realm: Registry\n    path: %s\n' "$work/htpasswd"; } >"$work/auth-config.yml"
  serve_check "compose config + auth.htpasswd" "$work/auth-config.yml" 401
else
  missing "a berth binary" "scripts/build-static.sh or cargo build --release -p berth"
fi

echo "--- Dockerfile (private dockerd, no network)"
static=target/static/berth-x86_64-unknown-linux-musl
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  missing "dockerd and docker" "apt-get install docker.io"
elif [ ! -x "$static" ]; then
  fail "no $static to put in the image (scripts/build-static.sh failed above?)"
else
  if ! start_dockerd "$work"; then
    fail "dockerd did not start"; tail -10 "$work/dockerd.log" | sed 's/^/     /'
  else
    image=berth:validate
    # The legacy builder: FROM scratch needs nothing from a registry.
    check "docker build (FROM scratch + $static)" env DOCKER_BUILDKIT=0 docker build -q -t "$image" .
    size=$(docker image inspect -f '{{.Size}}' "$image" 2>/dev/null || echo 0)
    user=$(docker image inspect -f '{{.Config.User}}' "$image" 2>/dev/null || true)
    hc=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$image" 2>/dev/null || true)
    if [ "$user" = "65532:65532" ] && [ "$hc" = '["CMD","/berth","healthcheck"]' ]; then
      pass "image: $size bytes, USER $user, HEALTHCHECK $hc"
    else
      fail "image: USER '$user' (want 65532:65532), HEALTHCHECK '$hc'"
    fi
    if docker run --rm --network none "$image" config check /etc/docker/registry/config.yml >/dev/null 2>"$work/out"; then
      pass "docker run $image config check /etc/docker/registry/config.yml (the baked-in config)"
    else
      fail "docker run $image config check /etc/docker/registry/config.yml"
    fi
    sed 's/^/     /' "$work/out"
    docker volume create berth-validate-data >/dev/null
    # --health-interval only shortens the wait: the test command is the image's HEALTHCHECK.
    if docker run -d --name berth-validate --network none --read-only --cap-drop ALL \
         --security-opt no-new-privileges --health-interval 2s \
         -v berth-validate-data:/var/lib/registry "$image" >/dev/null 2>"$work/out"; then
      status=""
      for _ in $(seq 1 60); do
        status=$(docker inspect -f '{{.State.Health.Status}}' berth-validate 2>/dev/null || true)
        [ "$status" = healthy ] || [ "$status" = unhealthy ] && break
        sleep 1
      done
      if [ "$status" = healthy ]; then
        pass "container (read-only, no network, all caps dropped) turns healthy by its HEALTHCHECK"
      else
        fail "container health: '$status'"; docker logs berth-validate 2>&1 | tail -5 | sed 's/^/     /'
      fi
      if [ "$status" = healthy ]; then
        check "docker exec berth-validate /berth healthcheck" docker exec berth-validate /berth healthcheck
        # Inside the container's own network namespace (its loopback), as its user 65532.
        pid=$(docker inspect -f '{{.State.Pid}}' berth-validate)
        printf 'layer' >"$work/blob"
        digest=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)
        code=$(nsenter -t "$pid" -n curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
          -H 'Content-Type: application/octet-stream' --data-binary @"$work/blob" \
          "http://127.0.0.1:5000/v2/validate/blob/blobs/uploads/?digest=$digest" || true)
        back=$(nsenter -t "$pid" -n curl -s --max-time 5 "http://127.0.0.1:5000/v2/validate/blob/blobs/$digest" || true)
        if [ "$code" = 201 ] && [ "$back" = layer ]; then
          pass "blob push into the volume as user 65532 (201) and read back"
        else
          fail "blob push in the container: POST $code, GET '$back'"
        fi
        docker stop -t 40 berth-validate >/dev/null
        exit_code=$(docker inspect -f '{{.State.ExitCode}}' berth-validate)
        if [ "$exit_code" = 0 ]; then pass "docker stop: SIGTERM, drained, exit 0"; else fail "docker stop: exit code $exit_code"; fi
      fi
    else
      fail "docker run"; sed 's/^/     /' "$work/out"
    fi
  fi
fi

echo "validate-deploy: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
