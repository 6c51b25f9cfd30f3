# A minimal Berth image: one static musl binary in an empty (`scratch`) image, no shell, no libc.
#
# The binary is built on the host first (no Rust toolchain or network is needed inside the build):
#   scripts/build-static.sh                       # -> target/static/berth-x86_64-unknown-linux-musl
#   docker build -t berth:0.1.0 .
# For 64-bit ARM (after scripts/build-static.sh aarch64-unknown-linux-musl):
#   docker build --platform linux/arm64 \
#     --build-arg BINARY=target/static/berth-aarch64-unknown-linux-musl -t berth:0.1.0-arm64 .
#
# Run (registry:2's ports, volume and config path):
#   docker run -d -p 5000:5000 -v registry:/var/lib/registry --read-only berth:0.1.0
#   docker run ... -v ./config.yml:/etc/docker/registry/config.yml:ro berth:0.1.0
# See docs/deployment.md.
FROM scratch

ARG BINARY=target/static/berth-x86_64-unknown-linux-musl

LABEL org.opencontainers.image.title="Berth" \
      org.opencontainers.image.description="OCI container registry, drop-in replacement for registry:2" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY ${BINARY} /berth
COPY deploy/docker/config.yml /etc/docker/registry/config.yml
# The data directory, owned by the unprivileged user so that a new named volume mounted here
# inherits that owner (an anonymous or named volume copies the image's directory).
COPY --chown=65532:65532 deploy/docker/rootfs/var/lib/registry/ /var/lib/registry/

# Used only when `serve` is run without a config file.
ENV BERTH_DATA_DIR=/var/lib/registry
# The image has no /tmp. The pull-through cache spools cold blobs in proxy.spooldir, else in
# storage.filesystem.rootdirectory, else (S3 storage) in the temp directory: this volume, which
# is writable under --read-only too. Checked at startup; proxy.spooldir in the config wins.
ENV TMPDIR=/var/lib/registry

USER 65532:65532
EXPOSE 5000 5001
VOLUME ["/var/lib/registry"]

# `berth healthcheck` GETs http://127.0.0.1:5000/readyz: no curl needed. With http.tls in the
# config, override it: HEALTHCHECK CMD ["/berth", "healthcheck", "-k", "https://127.0.0.1:5000/readyz"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/berth", "healthcheck"]

ENTRYPOINT ["/berth"]
CMD ["serve", "/etc/docker/registry/config.yml"]
