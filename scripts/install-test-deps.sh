#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12: the real clients (skopeo, containerd/ctr,
# umoci, the Docker daemon) and the reference registry (docker-registry 2.8.2) for the compatibility checks,
# and the validators of the deployment files (musl-gcc for the static binary, yamllint,
# docker-compose, haproxy, systemd-analyze, and PyPI's YAML/HCL/Kubernetes-schema/Helm checkers,
# and ansible-core with ansible-lint for the Ansible role); chromium, node and npm for the web
# UI's browser suite (scripts/ui-browser.sh runs npm ci for its own npm packages) and the
# OIDC identity provider of crates/berth/tests/ui_oidc.rs (oidc-provider, npm ci in scripts/oidc).
# Also the Rust pieces a fresh rustup toolchain lacks: the x86_64-unknown-linux-musl target (the
# static binary) and the clippy and rustfmt components (the lint and format suites).
# The S3 test servers: moto_server (PyPI moto[server]) and, under CI, Garage (cargo install).
# Idempotent: does nothing when everything is already there.
set -euo pipefail

# Rust first: the apt step below exits early when its packages are all present.
if command -v rustup >/dev/null 2>&1; then
  installed_targets=$(rustup target list --installed)
  if ! grep -qx x86_64-unknown-linux-musl <<<"$installed_targets"; then
    echo "install-test-deps: adding the Rust target x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl
  fi
  installed_components=$(rustup component list --installed)
  for component in clippy rustfmt; do
    # Installed components are listed with their host triple (clippy-x86_64-unknown-linux-gnu).
    if ! grep -q "^$component" <<<"$installed_components"; then
      echo "install-test-deps: adding the Rust component $component"
      rustup component add "$component"
    fi
  done
else
  # A toolchain not managed by rustup (a distribution's rustc) cannot be extended here; the
  # suites that need the target or the components report what is missing.
  echo "install-test-deps: rustup not found; not checking the musl target, clippy and rustfmt" >&2
fi

# PyPI tools for scripts/validate-deploy.sh (helm-sdkpy declares Python 3.12 but its lint runs
# on the machine's 3.11; helm-python-sdk renders the chart offline, as `helm template`).
python3 -c 'import yaml, hcl2, kubernetes_validate, helm_sdkpy, helm_python' 2>/dev/null || {
  python3 -m pip install -q pyyaml==6.0.3 kubernetes-validate==1.37.0 python-hcl2==8.1.4 helm-python-sdk==0.2.2
  python3 -m pip install -q --ignore-requires-python helm-sdkpy==0.1.32
}
# The Ansible role (deploy/ansible): ansible-playbook runs it, ansible-lint checks it. ansible-core
# 2.19 needs Python 3.11+ on the controller (Debian 12's is 3.11); ansible-lint pulls in its own
# yamllint from PyPI, which comes before Debian's on a pip-managed PATH.
{ python3 -c 'import ansible, ansiblelint' 2>/dev/null && command -v ansible-playbook >/dev/null 2>&1 &&
  command -v ansible-lint >/dev/null 2>&1; } || python3 -m pip install -q ansible-core==2.19.14 ansible-lint==26.10.1

# The S3 servers of the S3 tests (scripts/s3-test-servers.sh): moto from PyPI, Garage built
# from crates.io once (10-18 min on 2 cores) and reused whenever a binary is already there
# (GARAGE_BIN, PATH or ~/.cargo/bin). The S3 suites of test.sh need it, so it is built outside
# CI too.
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]'
if [ -z "${GARAGE_BIN:-}" ] && ! command -v garage >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/garage" ]; then
  echo "install-test-deps: building garage once (cargo install garage --locked, 10-18 min)"
  cargo install garage --locked
fi

need=()
for pair in skopeo:skopeo ctr:containerd containerd:containerd umoci:umoci jq:jq curl:curl \
            openssl:openssl docker-registry:docker-registry htpasswd:apache2-utils dockerd:docker.io \
            musl-gcc:musl-tools yamllint:yamllint docker-compose:docker-compose \
            systemd-analyze:systemd nsenter:util-linux haproxy:haproxy \
            chromium:chromium node:nodejs npm:npm; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# The OIDC tests' identity provider (scripts/oidc: oidc-provider from npm, locked); the test
# also runs this itself when the packages are missing.
oidc_packages() {
  if command -v npm >/dev/null 2>&1 && [ ! -d "$(dirname "$0")/oidc/node_modules/oidc-provider" ]; then
    echo "install-test-deps: npm ci in scripts/oidc"
    (cd "$(dirname "$0")/oidc" && npm ci --no-audit --no-fund)
  fi
}
if [ ${#need[@]} -eq 0 ]; then
  oidc_packages
  echo "install-test-deps: all present"
  exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "install-test-deps: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
oidc_packages
