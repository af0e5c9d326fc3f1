# One image per service, all holding the same multi-call binary (`platform serve <service>`),
# so a release build links once; the images differ only in PLATFORM_SERVICE and PORT:
#
#   make docker-build            # every service, tagged $DOCKER_REGISTRY/<service>:<version>
#   docker build --build-arg SERVICE=user-service --build-arg PORT=8081 --build-arg GRPC_PORT=9081 \
#       -t user-service .
#
# With podman/buildah use `make docker-build` (scripts/docker-build.sh): buildah 1.28 neither
# resolves a stage named by an ARG's default nor keys its layer cache on build arguments.
#
# Where the binary comes from (BINARY_SOURCE):
#   build     (default) compiled in RUST_IMAGE from the sources in the context;
#   prebuilt  copied from build/docker/platform, a release binary built on the host against the
#             same Debian release as BASE_IMAGE (what `make docker-build` does, and CI: no
#             registry is reachable there, so BASE_IMAGE is built locally by
#             scripts/build-base-image.sh).
# The run-time image has no shell and no package manager: the binary, the C runtime it links,
# CA certificates and an unprivileged user. Run it with a read-only root filesystem.

ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG BINARY_SOURCE=build
ARG RUNTIME_IMAGE=runtime

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p platform \
    && install -D -m 0755 target/release/platform /out/platform

FROM ${BASE_IMAGE} AS prebuilt
COPY build/docker/platform /out/platform

# hadolint ignore=DL3006
FROM ${BINARY_SOURCE} AS binary

# The files the binary needs at run time, gathered into /rootfs on the Debian base.
FROM ${BASE_IMAGE} AS rootfs
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=binary /out/platform /rootfs/usr/local/bin/platform
# The shared libraries the binary links, by what the loader resolves (so a new dependency on
# a C library is picked up, not silently missing), plus the loader itself.
RUN set -eu; \
    ldd /rootfs/usr/local/bin/platform \
      | awk '/=> \// { print $3 } /^\t\/lib64\// { print $1 }' \
      | while read -r lib; do \
          mkdir -p "/rootfs$(dirname "$lib")"; \
          cp -L "$lib" "/rootfs$lib"; \
          real=$(readlink -f "$lib"); \
          mkdir -p "/rootfs$(dirname "$real")"; \
          cp -L "$lib" "/rootfs$real"; \
        done; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/data; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    echo 'nonroot:x:65532:65532:nonroot:/data:/sbin/nologin' > /rootfs/etc/passwd; \
    echo 'nonroot:x:65532:' > /rootfs/etc/group; \
    chown 65532:65532 /rootfs/data; \
    chmod 1777 /rootfs/tmp; \
    /rootfs/usr/local/bin/platform --version

FROM scratch AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
COPY --from=rootfs /rootfs /
USER 65532:65532
WORKDIR /data
# Logs are JSON for collectors; SQLite files (only without DATABASE_URL) go to the /data volume.
ENV LOG_FORMAT=json \
    DATA_DIR=/data \
    HOST=0.0.0.0 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="microservices-platform" \
      org.opencontainers.image.description="E-commerce microservices platform in Rust" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT"
ENTRYPOINT ["/usr/local/bin/platform"]

# One final stage for every service, named by the build arguments (scripts/docker-build.sh passes
# each service's name and default ports): `platform serve` and `platform probe` read
# PLATFORM_SERVICE and PORT from the image's environment.
# RUNTIME_IMAGE: the `runtime` stage, or that stage built and tagged once (scripts/docker-build.sh
# does, then builds each service without a layer cache: buildah's cache ignores build arguments
# in ENV and LABEL steps, and would give every image the first service's name).
FROM ${RUNTIME_IMAGE} AS service
ARG SERVICE
ARG PORT
ARG GRPC_PORT=""
ENV PLATFORM_SERVICE=${SERVICE} \
    PORT=${PORT}
LABEL org.opencontainers.image.title="${SERVICE}"
EXPOSE ${PORT} ${GRPC_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/platform", "probe"]
CMD ["serve"]
