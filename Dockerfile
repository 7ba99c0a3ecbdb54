# syntax=docker/dockerfile:1
#
# Ferrocast image: the `edge` server (entrypoint) and the `emitter` command, on a distroless base
# with no shell, no package manager and a non-root user.
#
#   docker build -t ferrocast:latest .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -e FERROCAST_JWT_SECRET="$(openssl rand -base64 48)" ferrocast:latest  # single-node edge
#   (without a secret the edge runs in development mode, on the container's loopback only)
#   docker run --rm --entrypoint /usr/local/bin/emitter ferrocast:latest send --help
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

# Builder: Debian 12 (bookworm), the same Debian release as the runtime image below, so the
# binaries link against the glibc they will run with.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds on the same builder; the binaries are
# copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin edge --bin emitter --bin loadtest \
 && mkdir -p /out \
 && cp target/release/edge target/release/emitter target/release/loadtest /out/

# Runtime: glibc, libgcc and CA certificates only (the binaries use pure-Rust crypto, no OpenSSL).
# `nonroot` runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/edge /out/emitter /out/loadtest /usr/local/bin/
USER 65532:65532
# 8080: WebSockets (public). 9090: /healthz, /readyz, /metrics (internal, never public).
EXPOSE 8080 9090
# Liveness and readiness are HTTP probes on :9090 (/healthz, /readyz) that Kubernetes runs; the
# image has no shell or curl to run a Docker HEALTHCHECK with, so it has none:
# checkov:skip=CKV_DOCKER_2: no shell or HTTP client in the image; Kubernetes probes /healthz and /readyz
ENTRYPOINT ["/usr/local/bin/edge"]
