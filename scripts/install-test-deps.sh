#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12: the real clients (skopeo, containerd/ctr,
# umoci, the Docker daemon) and the reference registry (docker-registry 2.8.2) for the compatibility checks.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need=()
for pair in skopeo:skopeo ctr:containerd containerd:containerd umoci:umoci jq:jq curl:curl \
            openssl:openssl docker-registry:docker-registry htpasswd:apache2-utils dockerd:docker.io; do
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
