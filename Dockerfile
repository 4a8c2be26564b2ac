# syntax=docker/dockerfile:1.7
# The operator image: the `blocksight` binary and CA certificates on distroless, non-root.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t ghcr.io/OWNER/blocksight-operator:VERSION .
#
# The same binary also runs inside the PostgreSQL image of the backup, drill and restore Jobs
# (`blocksight copy-self`), so it is built on Debian bookworm: it needs no glibc newer than
# 2.36, the C library of the default `postgres` image (bookworm) and of the distroless base
# below. scripts/check-glibc.py checks that rule on a built binary (tests and release.yml).
#
# Cross-compiled: the build stage runs on the builder's own platform and targets
# TARGETARCH with Debian's cross toolchain, instead of emulating the compiler under QEMU.

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The cross linker and C compiler (ring) for arm64; bookworm's cross glibc is 2.36 as well.
# hadolint ignore=DL3008
RUN if [ "$TARGETARCH" = arm64 ] && [ "$(dpkg --print-architecture)" != arm64 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
      && rm -rf /var/lib/apt/lists/*; \
    fi
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-gnu ;; \
      arm64) echo aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)"
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_NET_GIT_FETCH_WITH_CLI=true
# The workspace's manifests and sources (see .dockerignore): the test crates are workspace
# members, so their manifests are needed to resolve the lock file, never their code at runtime.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
COPY monitoring ./monitoring
COPY tests/fake-apiserver/Cargo.toml ./tests/fake-apiserver/Cargo.toml
COPY tests/fake-apiserver/src ./tests/fake-apiserver/src
COPY tests/testkit/Cargo.toml ./tests/testkit/Cargo.toml
COPY tests/testkit/src ./tests/testkit/src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=blocksight-target-${TARGETARCH},sharing=locked \
    cargo build --release --locked --bin blocksight --target "$(cat /rust-target)" \
    && install -D -m 0755 "target/$(cat /rust-target)/release/blocksight" /out/blocksight

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="blocksight-operator" \
      org.opencontainers.image.description="Kubernetes operator for the BlockSight.live Bitcoin analytics platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/blocksight-live/blocksight-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/blocksight /usr/local/bin/blocksight
# distroless' nonroot user, by number so that runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/blocksight"]
CMD ["run"]
