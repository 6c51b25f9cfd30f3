#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs them all:
#   1. cargo test for the whole workspace (unit, conformance, in-process and integration tests
#      that start the real binary on port 0; --no-fail-fast, so one failing test binary does
#      not hide the others), then the network-parser property tests with a larger time budget,
#      printing how many cases ran; clippy (warnings are errors) and rustfmt --check;
#   2. real clients against the release binary (the static musl one the image ships): the shared compat kit (skopeo + containerd);
#   3. the in-place round trip with Debian's docker-registry 2.8.2;
#   4. garbage collection compared with docker-registry's own on the same data;
#   5. the Docker CLI (Debian's dockerd): push, pull, pull by digest, registry-mirrors;
#   6. S3 storage: the compat kit on Garage and on moto, the round trip with docker-registry
#      on one Garage bucket (both directions), the pull-through cache and the Docker CLI with
#      Berth on Garage (the cargo tests run the driver suite on Garage and moto too);
#   7. the deployment files (docs/deployment.md): static binary, image, compose, Kubernetes,
#      Helm, Nomad, systemd and the Grafana dashboard, validated offline;
#   8. the web UI in Debian's chromium (playwright-core): what a person sees, axe-core checks.
# Under CI=true a missing tool is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
# A clean checkout builds once: incremental state would only double target/'s size on disk.
[ "${CI:-}" = true ] && export CARGO_INCREMENTAL=0

scripts/install-test-deps.sh

suites_passed=0 suites_failed=0
run_suite() { # run_suite NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then
    suites_passed=$((suites_passed + 1)); echo "=== $name: ok"
  else
    suites_failed=$((suites_failed + 1)); echo "=== $name: FAILED"
  fi
}

run_suite "cargo test" cargo test --workspace --locked --no-fail-fast -- --test-threads=4
# Network parsers and pagination get a fixed time budget each; the output lists the cases
# that ran (parser_fuzz and pagination_fuzz).
run_suite "parser and pagination property tests (bounded time, case counts)" \
  env BERTH_FUZZ_SECONDS="${BERTH_FUZZ_SECONDS:-5}" \
  cargo test -p berth-api --locked --lib _fuzz:: -- --nocapture
run_suite "clippy (warnings are errors)" \
  cargo clippy --workspace --all-targets --locked -- -D warnings
run_suite "rustfmt" cargo fmt --all --check
# The one release build: the static musl binary that the image ships. The real-client suites
# below run it, so they test what users run (and CI builds one release binary, not two).
run_suite "release build (static musl binary)" scripts/build-static.sh
export BERTH_BIN=$PWD/target/static/berth-x86_64-unknown-linux-musl
# Reuses that static binary (cargo does nothing when it is up to date).
run_suite "deployment artifacts (static musl binary, image, compose, k8s, helm, nomad, systemd, grafana)" \
  scripts/validate-deploy.sh
if [ -x "$BERTH_BIN" ]; then
  run_suite "compat kit (plain HTTP)" scripts/compat.sh plain
  run_suite "compat kit (TLS + htpasswd)" scripts/compat.sh tls-htpasswd
  run_suite "compat kit (TLS + built-in token server)" scripts/compat.sh tls-token
  run_suite "round trip with docker-registry 2.8.2" scripts/roundtrip-registry2.sh
  run_suite "pull-through cache: compat kit as docker.io mirror, ctr hosts.toml, dockerd registry-mirrors" scripts/mirror.sh
  run_suite "garbage collection against docker-registry 2.8.2" scripts/gc-registry2.sh
  run_suite "docs/copy-sync.md recipes run as written (docker-registry upstream, Berth target)" scripts/copy-recipes.sh
  run_suite "Docker CLI push/pull and registry-mirrors" scripts/docker-cli.sh
  run_suite "compat kit (S3 storage on Garage)" scripts/compat.sh s3-garage
  run_suite "compat kit (S3 storage on moto)" scripts/compat.sh s3-moto
  run_suite "round trip with docker-registry 2.8.2 on one Garage bucket" scripts/roundtrip-registry2.sh garage
  run_suite "pull-through cache with Berth on Garage" env BERTH_TEST_STORAGE=garage scripts/mirror.sh
  run_suite "Docker CLI with Berth on Garage" env BERTH_TEST_STORAGE=garage scripts/docker-cli.sh
  run_suite "cluster of three nodes behind haproxy on Garage" scripts/cluster.sh garage
  run_suite "cluster of three nodes behind haproxy on moto" scripts/cluster.sh moto
  run_suite "web UI in Debian chromium (playwright-core, axe)" env UI_SHOTS=0 scripts/ui-browser.sh
else
  suites_failed=$((suites_failed + 16))
fi

echo "test.sh: $suites_passed passed, $suites_failed failed"
[ "$suites_failed" -eq 0 ]
