#!/usr/bin/env bash
# Validates the deployment artifacts offline (docs/deployment.md says what each check proves):
#   1. the static musl binary: scripts/build-static.sh (statically linked, size printed);
#   2. YAML: yamllint and a parse of every document; Kubernetes manifests against the Kubernetes
#      OpenAPI schemas (kubernetes-validate --strict); kustomization.yaml complete;
#   3. Helm chart: helm lint (Helm's Go library via helm-sdkpy) with several value sets, plus two
#      that must fail; helm template offline (Helm's engine via helm-python-sdk): one pod on a
#      claim, three on S3 (Deployment and StatefulSet) checked object by object (PDB, env and
#      Secret references, probes, volumes, config.yml), the rendered manifests against the
#      Kubernetes schemas, and values that must be refused (replicaCount > 1 on a claim...);
#      compose files: docker-compose config, the cluster file's nodes against its HAProxy
#      backend, haproxy -c; Nomad job: HCL2 parse + structure;
#      Grafana dashboard: every metric and label it queries is one Berth exports;
#      systemd unit: systemd-analyze verify and security --offline;
#   4. the example configs (compose, image, Kubernetes ConfigMap, Nomad template) with the real
#      binary: `berth config check`, then `berth serve` on an ephemeral loopback port with
#      /healthz, /readyz, /v2/ and `berth healthcheck`; /readyz stays 200 under htpasswd auth;
#      the S3 cluster configs (Helm-rendered, compose) with `berth config check` in each node's
#      environment (its cluster.node, the shared bucket and http.secret);
#   5. the Dockerfile: a private dockerd builds the image FROM scratch and runs it with no
#      network, read-only: HEALTHCHECK turns healthy, a blob push lands in the volume, stop is clean;
#   6. the Ansible role (deploy/ansible): ansible-lint's production profile (and a mutation it
#      must reject); the real role run by ansible-playbook against localhost (connection local,
#      every path in a temp dir, berth_manage_service=false): check mode first, then twice for
#      real (the second run must change nothing), with systemd and compose and a TLS + htpasswd
#      + odd sizes variant; each rendered config.yml through `berth config check`, every mirror
#      an upstream with its cache limit in bytes, the example's served like the configs of 4;
#      the unit with systemd-analyze and, rendered with the defaults, directive for directive
#      deploy/systemd/berth.service; the compose file with docker-compose config.
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
# helm template: another library (helm-python-sdk), in its own process (one Go runtime each).
render=$work/helm-render
if has_py helm_python; then
  check "helm template deploy/helm/berth offline (Helm's engine via helm-python-sdk)" \
    vdpy helm-render deploy/helm/berth "$render"
  # The checker must reject a chart whose pods do not get their own cluster.node.
  cp -r deploy/helm/berth "$work/chart-bad"
  sed -i '/"REGISTRY_CLUSTER_NODE"/d' "$work/chart-bad/templates/deployment.yaml"
  if vdpy helm-render "$work/chart-bad" "$work/render-bad" >"$work/out" 2>&1; then
    fail "the render checker accepted a chart without REGISTRY_CLUSTER_NODE"
  else
    pass "the render checker rejects a chart without REGISTRY_CLUSTER_NODE: $(grep -m1 -o 'REGISTRY_CLUSTER_NODE is not[^;]*' "$work/out")"
  fi
  mapfile -t rendered < <(find "$render" -name manifests.yaml 2>/dev/null | sort)
  if [ ${#rendered[@]} -eq 0 ]; then
    fail "no rendered manifests to validate"
  elif command -v kubernetes-validate >/dev/null 2>&1; then
    if kubernetes-validate --strict "${rendered[@]}" >"$work/kv" 2>&1 && ! grep -qE '^(WARN|ERROR)' "$work/kv"; then
      pass "kubernetes-validate --strict: $(grep -c 'passed for resource' "$work/kv") rendered objects of ${#rendered[@]} value sets ($(grep -o 'passed for resource [a-z]*' "$work/kv" | cut -d' ' -f4 | sort -u | tr '\n' ' '| sed 's/ $//'))"
    else
      fail "kubernetes-validate --strict: rendered chart"; sed 's/^/     /' "$work/kv"
    fi
  else
    missing kubernetes-validate "pip install kubernetes-validate"
  fi
else
  missing "helm-python-sdk (Python)" "pip install helm-python-sdk"
fi

echo "--- Compose"
compose=()
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
fi
cluster_env=$work/compose-cluster
if [ ${#compose[@]} -gt 0 ]; then
  check "${compose[*]} config (compose.yaml against the Compose schema)" \
    "${compose[@]}" -f deploy/compose/compose.yaml config -q
  # The cluster file with the example's values, then as for Garage (endpoint, keys, jobs node).
  printf '%s\n' BERTH_S3_BUCKET=registry BERTH_S3_REGION=garage BERTH_S3_ENDPOINT=http://garage.lan:3900 \
    BERTH_S3_ACCESS_KEY=GK0123456789abcdef01234567 BERTH_S3_SECRET_KEY=check-secret \
    BERTH_HTTP_SECRET=0123456789abcdef BERTH_JOBS_NODE=berth-1 >"$work/garage.env"
  for envfile in deploy/compose/cluster.env.example "$work/garage.env"; do
    label=$(basename "$envfile" .env)
    if "${compose[@]}" --env-file "$envfile" -f deploy/compose/cluster.yaml config >"$work/cluster-$label.yml" 2>"$work/out"; then
      pass "${compose[*]} config (cluster.yaml with $(basename "$envfile"), against the Compose schema)"
      check "cluster.yaml ($label): nodes, environment, ports and the HAProxy backend agree" \
        vdpy compose-cluster "$work/cluster-$label.yml" deploy/compose/haproxy.cfg "$cluster_env/$label"
    else
      fail "${compose[*]} config (cluster.yaml with $envfile)"; sed 's/^/     /' "$work/out"
    fi
  done
  # Without the bucket and the shared secret the file must not resolve.
  : >"$work/empty.env"
  if env -u BERTH_S3_BUCKET -u BERTH_HTTP_SECRET "${compose[@]}" --env-file "$work/empty.env" \
       -f deploy/compose/cluster.yaml config -q >"$work/out" 2>&1; then
    fail "cluster.yaml resolved without BERTH_S3_BUCKET and BERTH_HTTP_SECRET"
  elif reason=$(grep -m1 -o 'set BERTH_[A-Z0-9_]*, [^}]*$' "$work/out"); then
    pass "cluster.yaml refuses to resolve without BERTH_S3_BUCKET and BERTH_HTTP_SECRET: \"$reason\""
  else
    fail "cluster.yaml failed to resolve without its variables, but not for them"; sed 's/^/     /' "$work/out"
  fi
  # The checker must reject an HAProxy backend that misses a node.
  if [ -s "$work/cluster-cluster.env.example.yml" ]; then
    sed '/^ *server berth-3 /d' deploy/compose/haproxy.cfg >"$work/haproxy-bad.cfg"
    if vdpy compose-cluster "$work/cluster-cluster.env.example.yml" "$work/haproxy-bad.cfg" "$work/cc-bad" >"$work/out" 2>&1; then
      fail "the cluster checker accepted a backend without berth-3"
    else
      pass "the cluster checker rejects a backend without berth-3"
    fi
  fi
else
  missing docker-compose "apt-get install docker-compose"
fi

echo "--- HAProxy (deploy/compose/haproxy.cfg)"
if command -v haproxy >/dev/null 2>&1; then
  # Offline the node names do not resolve: those warnings are expected (init-addr none keeps
  # such a server down until it does); any other warning or alert is a failure.
  if haproxy -c -f deploy/compose/haproxy.cfg >"$work/out" 2>&1 &&
     ! grep -v "could not resolve address 'berth-[0-9]*'" "$work/out" | grep -qE '\[(WARNING|ALERT)\]'; then
    pass "haproxy -c -f deploy/compose/haproxy.cfg (HAProxy $(haproxy -v | head -1 | awk '{print $3}'); $(grep -c 'could not resolve' "$work/out") node names unresolvable offline, as expected)"
  else
    fail "haproxy -c -f deploy/compose/haproxy.cfg"; sed 's/^/     /' "$work/out"
  fi
  # It must reject a configuration with an unknown balance algorithm.
  sed 's/balance roundrobin/balance roundrobbin/' deploy/compose/haproxy.cfg >"$work/haproxy-bad.cfg"
  if haproxy -c -f "$work/haproxy-bad.cfg" >"$work/out" 2>&1; then
    fail "haproxy -c accepted 'balance roundrobbin'"
  else
    pass "haproxy -c rejects 'balance roundrobbin': $(grep -m1 -o 'ALERT.*' "$work/out" | cut -c1-120)"
  fi
else
  missing haproxy "apt-get install haproxy"
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
# config_env_check NAME CONFIG ENV_FILE EXPECT_JSON: berth config check CONFIG in the environment
# a node gets (ENV_FILE: KEY=VALUE lines, @WORK@ = this run's temp dir), then the effective keys
# EXPECT_JSON names (vdpy effective). A key Berth does not know is a failure here.
config_env_check() {
  local name=$1 config=$2 envfile=$3 expect=$4 vars=()
  mapfile -t vars < <(sed "s#@WORK@#$work#g" "$envfile")
  if env "${vars[@]}" "$BIN" config check "$config" >"$work/effective.yml" 2>"$work/warnings"; then
    if grep -q 'unknown config key' "$work/warnings"; then
      fail "berth config check: $name: a key this binary does not know"
    else
      check "berth config check: $name" vdpy effective "$work/effective.yml" "$expect"
    fi
  else
    fail "berth config check: $name"
  fi
  sed 's/^/     /' "$work/warnings"
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
  # The S3 cluster configs: not served (no bucket here), checked in each node's environment.
  # The built-in token server's files (@WORK@/signing.pem, @WORK@/htpasswd from above).
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/signing.pem" 2>/dev/null
  for dir in "$render"/*/; do
    [ -s "$dir/config.yml" ] || continue
    config_env_check "helm template: $(cat "$dir/name")" "$dir/config.yml" "$dir/env" "$dir/expect.json"
  done
  for envfile in "$cluster_env"/*/berth-*.env; do
    [ -s "$envfile" ] || continue
    node=$(basename "$envfile" .env) label=$(basename "$(dirname "$envfile")")
    config_env_check "deploy/compose/cluster-config.yml as $node ($label)" deploy/compose/cluster-config.yml \
      "$envfile" "${envfile%.env}.expect.json"
  done
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

echo "--- Ansible role (deploy/ansible)"
ans=$work/ansible
mkdir -p "$ans"
# ans_env COMMAND...: Ansible's state and temp files in $ans, not in ~/.ansible or the tree.
ans_env() {
  ANSIBLE_HOME="$ans/home" ANSIBLE_LOCAL_TEMP="$ans/tmp" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 "$@"
}
# play NAME ROOT CHECK_MODE EXTRA_VARS_JSON: site.yml with the example inventory against this
# machine, every path under ROOT; output in $ans/NAME.log. Prints the PLAY RECAP counts.
play() {
  local name=$1 root=$2 check_mode=$3 vars=$4 args=()
  [ "$check_mode" = check ] && args+=(--check --diff)
  mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system"
  # Extra variables as JSON: typed (false stays a boolean), and they win over the inventory.
  "$PY" - "$root" "$ans_bin" "$vars" >"$ans/$name.json" <<'PYVARS'
import json, sys
root, binary, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] or "{}")
v = {"ansible_connection": "local", "ansible_become": False, "berth_manage_service": False,
     "berth_binary_src": binary, "berth_binary_path": root + "/usr/local/bin/berth",
     "berth_config_dir": root + "/etc/berth", "berth_systemd_unit_dir": root + "/etc/systemd/system",
     "berth_compose_dir": root + "/opt/berth"}
v.update({k: x.replace("@ROOT@", root) if isinstance(x, str) else x for k, x in extra.items()})
print(json.dumps(v))
PYVARS
  (cd deploy/ansible && ans_env ansible-playbook -i inventory.example.yml site.yml "${args[@]}" \
    -e ansible_python_interpreter="$(command -v "$PY")" -e @"$ans/$name.json") >"$ans/$name.log" 2>&1
  local rc=$?
  grep -A1 '^PLAY RECAP' "$ans/$name.log" | tail -1 | sed -e 's/^[^:]*: *//' -e 's/  */ /g'
  return $rc
}
# played NAME ROOT MODE VARS WHAT: play, PASS when it succeeds (and, for MODE=again, changes nothing).
played() {
  local name=$1 root=$2 mode=$3 vars=$4 what=$5 recap
  if recap=$(play "$name" "$root" "$mode" "$vars"); then
    if [ "$mode" = again ] && ! grep -q ' changed=0 ' <<<"$recap "; then
      fail "ansible-playbook: $what: not idempotent ($recap)"
      grep -B2 '^changed:' "$ans/$name.log" | sed 's/^/     /'
    else
      pass "ansible-playbook: $what ($recap)"
    fi
  else
    fail "ansible-playbook: $what"; tail -25 "$ans/$name.log" | sed 's/^/     /'
  fi
}
# config_upstreams NAME CONFIG [VARS_JSON] [ENV...]: berth config check, then every mirror an upstream.
config_upstreams() {
  local name=$1 config=$2 vars=${3:-}; shift 3 || shift $#
  if env "$@" "$BIN" config check "$config" >"$ans/effective.yml" 2>"$work/out"; then
    check "berth config check + mirrors as upstreams: $name" \
      vdpy ansible-upstreams deploy/ansible/inventory.example.yml "$ans/effective.yml" ${vars:+"$vars"}
  else
    fail "berth config check: $name"; sed 's/^/     /' "$work/out"
  fi
}
if ! command -v ansible-lint >/dev/null 2>&1; then
  missing ansible-lint "pip install ansible-lint (scripts/install-test-deps.sh)"
else
  # In a copy: ansible-lint may write its caches (.ansible/) into the project it lints.
  cp -r deploy/ansible "$ans/lint"
  check "ansible-lint, production profile (deploy/ansible/.ansible-lint)" \
    env -C "$ans/lint" ANSIBLE_HOME="$ans/home" ansible-lint --offline --nocolor --profile production
  # It must reject a role that uses a short module name (fqcn, a production-profile rule).
  cp -r deploy/ansible "$ans/lint-bad"
  sed -i '0,/ansible\.builtin\.copy:/s//copy:/' "$ans/lint-bad/roles/berth/tasks/systemd.yml"
  if env -C "$ans/lint-bad" ANSIBLE_HOME="$ans/home" ansible-lint --offline --nocolor --profile production >"$work/out" 2>&1; then
    fail "ansible-lint accepted tasks/systemd.yml with a short module name (copy:)"
  else
    pass "ansible-lint rejects a short module name: $(grep -m1 -E '^ *[0-9]+ fqcn' "$work/out" | sed 's/^ *//')"
  fi
fi
if ! command -v ansible-playbook >/dev/null 2>&1; then
  missing ansible-playbook "pip install ansible-core (scripts/install-test-deps.sh)"
elif [ -z "$BIN" ]; then
  missing "a berth binary for the role" "scripts/build-static.sh or cargo build --release -p berth"
else
  ans_bin=$(readlink -f "$BIN")
  # systemd (the example inventory as it is): check mode writes nothing, then two real runs.
  sysroot=$ans/systemd
  played check "$ans/check" check '{}' "systemd, --check --diff on an empty root"
  if [ -z "$(find "$ans/check" -type f)" ]; then
    pass "check mode wrote nothing"
  else
    fail "check mode wrote files: $(find "$ans/check" -type f | tr '\n' ' ')"
  fi
  played systemd-1 "$sysroot" run '{}' "systemd, example inventory"
  # role_checked NAME: the role's own `berth config check` task ran (and passed) in that run.
  role_checked() {
    if grep -A1 'TASK \[berth : Check config.yml with berth config check\]' "$ans/$1.log" | grep -q '^ok:'; then
      pass "the role's own task ran berth config check on the host ($1)"
    else
      fail "the role's berth config check task did not run ($1)"
    fi
  }
  role_checked systemd-1
  played systemd-2 "$sysroot" again '{}' "systemd, second run"
  # The role refuses a mirror it cannot serve before it changes anything.
  bad='{"container_image_mirrors": [{"url": "https://registry-1.docker.io", "registry": "docker.io:443", "size": "20Xi"}]}'
  if play bad "$ans/bad" run "$bad" >/dev/null; then
    fail "the role accepted a mirror with registry docker.io:443 and size 20Xi"
  elif grep -q 'container_image_mirrors entry' "$ans/bad.log" && [ -z "$(find "$ans/bad" -type f)" ]; then
    pass "the role refuses registry docker.io:443 / size 20Xi at its first check, nothing written"
  else
    fail "the role failed on a bad mirror, but not at its check"; tail -10 "$ans/bad.log" | sed 's/^/     /'
  fi
  config_upstreams "role, systemd, example inventory" "$sysroot/etc/berth/config.yml"
  # compose: data in a host directory owned by the image's user.
  croot=$ans/compose
  cvars='{"berth_install_method": "compose", "berth_storage_root": "@ROOT@/srv/berth/data", "berth_mem_limit": "512m"}'
  played compose-1 "$croot" run "$cvars" "compose, example inventory"
  played compose-2 "$croot" again "$cvars" "compose, second run"
  config_upstreams "role, compose, example inventory" "$croot/opt/berth/config.yml"
  owner=$(stat -c %u:%g "$croot/srv/berth/data" 2>/dev/null || true)
  if [ "$owner" = 65532:65532 ]; then pass "compose: data directory owned by 65532:65532"; else fail "compose: data directory owner '$owner'"; fi
  # TLS, htpasswd, port 443 (CAP_NET_BIND_SERVICE), a total limit and sizes of every shape.
  vroot=$ans/variant
  mkdir -p "$vroot"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -days 2 \
    -keyout "$vroot/key.pem" -out "$vroot/cert.pem" >/dev/null 2>&1
  hash=$(echo 'check-password' | "$BIN" htpasswd --password-stdin --cost 4 ci 2>/dev/null | cut -d: -f2-)
  vvars=$("$PY" -c 'import json, sys; print(json.dumps({
    "berth_listen_address": ":443", "berth_http_host": "https://registry.example.com",
    "berth_tls_certificate": "@ROOT@/cert.pem", "berth_tls_key": "@ROOT@/key.pem",
    "berth_htpasswd_users": [{"name": "ci", "hash": sys.argv[1]}], "berth_proxy_cache_maxsize": "30Gi",
    "berth_proxy_default": "", "berth_proxy_private": [],
    "container_image_mirrors": [
      {"url": "https://registry-1.docker.io", "registry": "docker.io", "size": "1.5Gi"},
      {"url": "https://ghcr.io/", "registry": "ghcr.io", "size": "500Mi"},
      {"url": "https://registry.k8s.io", "registry": "registry.k8s.io", "size": "20G"},
      {"url": "https://quay.io", "registry": "quay.io", "size": 750000000},
      {"url": "https://gcr.io", "registry": "gcr.io"}]}))' "$hash")
  played variant-1 "$vroot" run "$vvars" "systemd, TLS + htpasswd + :443 + 5 mirrors with sizes 1.5Gi/500Mi/20G/bytes/none"
  role_checked variant-1
  played variant-2 "$vroot" again "$vvars" "variant, second run"
  sed "s#@ROOT@#$vroot#g" <<<"$vvars" >"$ans/variant-vars.json"
  # The service reads its secrets from /run/credentials/berth.service/; here, from the host files.
  config_upstreams "role, TLS + htpasswd variant" "$vroot/etc/berth/config.yml" "$ans/variant-vars.json" \
    REGISTRY_AUTH_HTPASSWD_PATH="$vroot/etc/berth/htpasswd" \
    REGISTRY_HTTP_TLS_CERTIFICATE="$vroot/cert.pem" REGISTRY_HTTP_TLS_KEY="$vroot/key.pem"
  if grep -qx "LoadCredential=htpasswd:$vroot/etc/berth/htpasswd" "$vroot/etc/systemd/system/berth.service" &&
     grep -qx "LoadCredential=tls.key:$vroot/key.pem" "$vroot/etc/systemd/system/berth.service" &&
     grep -qx "AmbientCapabilities=CAP_NET_BIND_SERVICE" "$vroot/etc/systemd/system/berth.service" &&
     grep -q '/run/credentials/berth.service/htpasswd' "$vroot/etc/berth/config.yml"; then
    pass "variant unit: LoadCredential= for htpasswd and TLS, CAP_NET_BIND_SERVICE for :443; config.yml reads /run/credentials"
  else
    fail "variant unit or config: LoadCredential=/CAP_NET_BIND_SERVICE//run/credentials missing"
  fi
  # The unit rendered with nothing but the role's defaults is deploy/systemd/berth.service.
  if (cd deploy/ansible && ans_env ansible localhost -i localhost, -c local \
        -e ansible_python_interpreter="$(command -v "$PY")" \
        -e @roles/berth/defaults/main.yml -e @roles/berth/vars/main.yml -m ansible.builtin.template \
        -a "src=$PWD/roles/berth/templates/berth.service.j2 dest=$ans/defaults.service mode=0644") >"$work/out" 2>&1; then
    check "role unit with its defaults vs deploy/systemd/berth.service" \
      vdpy unit-drift "$ans/defaults.service" deploy/systemd/berth.service
  else
    fail "rendering berth.service.j2 with the role's defaults"; tail -10 "$work/out" | sed 's/^/     /'
  fi
  if command -v systemd-analyze >/dev/null 2>&1; then
    # ExecStart points at the binary the role installed under the temp root.
    for unit in "$sysroot/etc/systemd/system/berth.service" "$vroot/etc/systemd/system/berth.service"; do
      if systemd-analyze verify "$unit" >"$work/out" 2>&1 && [ ! -s "$work/out" ]; then
        pass "systemd-analyze verify: role unit (${unit#"$ans/"})"
      else
        fail "systemd-analyze verify: role unit (${unit#"$ans/"})"; sed 's/^/     /' "$work/out"
      fi
    done
    if systemd-analyze security --offline=true --threshold=20 "$sysroot/etc/systemd/system/berth.service" >"$work/out" 2>&1; then
      pass "systemd-analyze security: role unit: $(grep -o 'Overall exposure level.*' "$work/out")"
    else
      fail "systemd-analyze security: role unit (exposure above 2.0)"; tail -25 "$work/out" | sed 's/^/     /'
    fi
  else
    missing systemd-analyze "apt-get install systemd"
  fi
  if command -v docker-compose >/dev/null 2>&1; then
    check "docker-compose config: role compose.yml" docker-compose -f "$croot/opt/berth/compose.yml" config -q
  elif docker compose version >/dev/null 2>&1; then
    check "docker compose config: role compose.yml" docker compose -f "$croot/opt/berth/compose.yml" config -q
  else
    missing docker-compose "apt-get install docker-compose"
  fi
  # The example inventory's config, served (REGISTRY_* overrides for address and data).
  [ -s "$sysroot/etc/berth/config.yml" ] && serve_check "deploy/ansible role config.yml (example inventory)" "$sysroot/etc/berth/config.yml"
fi

echo "validate-deploy: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
