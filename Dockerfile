# syntax=docker/dockerfile:1
# One build, three images (one per binary), selected with --target:
#
#   docker build --target parley-operator -t ghcr.io/parley-chat/parley-operator:0.1.0 .
#   docker build --target parley-gateway  -t ghcr.io/parley-chat/parley-gateway:0.1.0  .
#   docker build --target parley-consumer -t ghcr.io/parley-chat/parley-consumer:0.1.0 .
#
# The tags must match what the chart and the operator expect: the chart's
# appVersion for the operator, the operator's version for gateway/consumer.
#
# Build arguments (BuildKit skips the stages a target does not use):
#   BASE_IMAGE  the runtime base; scripts/env/images.sh passes one made from
#               Debian packages, since no image registry is reachable there
#   BINARIES    builder (compile here, the default) or prebuilt (take
#               prebuilt/parley-* from the build context: binaries built on
#               the host, as scripts/env/images.sh does)

ARG RUST_VERSION=1.95
ARG BASE_IMAGE=debian:bookworm-slim
ARG BINARIES=builder

# ---- build: the whole workspace once ----
FROM rust:${RUST_VERSION}-bookworm AS builder
# rdkafka builds librdkafka from source: cmake, a C/C++ toolchain, make
# (gcc, g++, make, zlib headers come with the rust image). OpenSSL is built
# from source too and linked in (perl, make: also in the rust image), so the
# runtime images need no libssl. For brokers with a public CA, a ChatCluster's
# Secret can set ssl.ca.location=probe (the images carry ca-certificates).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# sqlx query macros must not need a live database at image build time.
ENV SQLX_OFFLINE=true
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/parley-operator target/release/parley-gateway target/release/parley-consumer /out/

# ---- or: binaries built outside, from the build context ----
FROM scratch AS prebuilt
COPY prebuilt/ /out/

FROM ${BINARIES} AS binaries

# ---- runtime: glibc, zlib (librdkafka links it), CA certificates; no shell tools needed ----
FROM ${BASE_IMAGE} AS runtime
# A base that already has the CA bundle (the one images.sh makes) needs no
# package download.
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
# The chart runs pods as 65532 with a read-only root filesystem; nothing here
# writes to disk.
USER 65532:65532

FROM runtime AS parley-operator
COPY --from=binaries /out/parley-operator /usr/local/bin/parley-operator
ENTRYPOINT ["/usr/local/bin/parley-operator"]
CMD ["run"]

FROM runtime AS parley-gateway
COPY --from=binaries /out/parley-gateway /usr/local/bin/parley-gateway
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/parley-gateway"]

FROM runtime AS parley-consumer
COPY --from=binaries /out/parley-consumer /usr/local/bin/parley-consumer
ENTRYPOINT ["/usr/local/bin/parley-consumer"]
