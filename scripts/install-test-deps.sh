#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12: the real clients (skopeo, containerd/ctr,
# umoci, the Docker daemon) and the reference registry (docker-registry 2.8.2) for the compatibility checks,
# and the validators of the deployment files (musl-gcc for the static binary, yamllint,
# docker-compose, systemd-analyze, and PyPI's YAML/HCL/Kubernetes-schema/Helm checkers).
# Idempotent: does nothing when everything is already there.
set -euo pipefail

# PyPI tools for scripts/validate-deploy.sh (helm-sdkpy declares Python 3.12 but its lint runs
# on the machine's 3.11).
python3 -c 'import yaml, hcl2, kubernetes_validate, helm_sdkpy' 2>/dev/null || {
  python3 -m pip install -q pyyaml==6.0.3 kubernetes-validate==1.37.0 python-hcl2==8.1.4
  python3 -m pip install -q --ignore-requires-python helm-sdkpy==0.1.32
}

need=()
for pair in skopeo:skopeo ctr:containerd containerd:containerd umoci:umoci jq:jq curl:curl \
            openssl:openssl docker-registry:docker-registry htpasswd:apache2-utils dockerd:docker.io \
            musl-gcc:musl-tools yamllint:yamllint docker-compose:docker-compose \
            systemd-analyze:systemd nsenter:util-linux; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "install-test-deps: all present"
  exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "install-test-deps: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
