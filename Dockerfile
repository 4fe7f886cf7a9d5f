# syntax=docker/dockerfile:1
#
# cgm-hub container image: a Rust builder stage and a small Debian runtime stage.
#
#   docker build -t cgm-hub .
#   docker run --rm -p 5001:5001 -v cgm-hub-data:/data cgm-hub        # SQLite in /data
#
# Needs BuildKit (the default builder since Docker 23, and always used by
# `docker compose build`) for the cache mounts below.
#
# Not built or run in the repository's CI: no Docker engine runs there. What CI
# does check is that the files under deploy/ and docker-compose.yml parse and name
# only variables and metrics the service has.

# ---------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependency caching: BuildKit cache mounts rather than a dummy-main layer.
# - The cargo registry and git checkouts, and target/, live in build caches that
#   survive between builds, so a change to src/ recompiles only cgm-hub itself
#   (cargo's own incremental fingerprints decide what is stale, exactly as on a
#   developer machine), not the 500-odd crates of Cargo.lock.
# - A dummy-main layer would need stub files for every target Cargo.toml declares
#   (benches, the integration-test binary) just to let cargo read the manifest,
#   and it goes stale silently whenever a target is added; cache mounts need none.
# - A cache mount is not part of the image, so the binary is copied out of
#   target/ inside the same RUN.
# `--locked` builds exactly the versions in Cargo.lock, or fails.
COPY . .
RUN --mount=type=cache,id=cgm-hub-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=cgm-hub-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=cgm-hub-target,target=/build/target,sharing=locked \
    cargo build --release --locked --bin cgm-hub \
    && install -D -m 0755 target/release/cgm-hub /out/cgm-hub

# ---------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------
# Same Debian release as the builder, so the glibc the binary was linked against
# is there. Everything else is in the binary: TLS is rustls, SQLite is bundled.
FROM debian:bookworm-slim AS runtime

# ca-certificates only: the trust roots for HTTPS to Dexcom, AWS and TLS
# connections to PostgreSQL and RabbitMQ. No shell tools, no curl (the health
# check is the binary's own `healthcheck` subcommand).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid (10001), so that Kubernetes' runAsNonRoot can verify
# it and volume ownership is predictable. /data holds the SQLite file (and, in
# development only, the generated token-encryption.key): owned by the service's
# user, readable by nobody else.
RUN groupadd --system --gid 10001 cgm-hub \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/cgm-hub --create-home \
       --shell /usr/sbin/nologin cgm-hub \
    && install -d -o 10001 -g 10001 -m 0700 /data

COPY --from=builder /out/cgm-hub /usr/local/bin/cgm-hub

# SQLITE_PATH: the embedded store lives on the volume.
# BIND_ADDR: listen on every interface of the container.
# (HOME is /home/cgm-hub, set by the container runtime from /etc/passwd: the AWS
# SDK looks for ~/.aws there, where docker-compose.yml mounts dummy credentials
# for the DynamoDB emulator.)
ENV SQLITE_PATH=/data/cgm-hub.db \
    BIND_ADDR=0.0.0.0:5001

# The working directory is /, deliberately: with STORAGE_BACKEND=postgres or
# dynamodb in development (no TOKEN_ENCRYPTION_KEY), the generated key is written
# to ./data, which is then /data, the volume, and survives a new container.
WORKDIR /
VOLUME ["/data"]
USER 10001:10001
EXPOSE 5001

# cgm-hub drains on SIGTERM: stops accepting, finishes in-flight requests, sync
# jobs and token refreshes, writes queued audit entries, within
# SHUTDOWN_TIMEOUT_SECONDS (25 by default). Give it longer than that before the
# SIGKILL: `docker stop -t 35`, compose `stop_grace_period: 35s`, Kubernetes
# `terminationGracePeriodSeconds` (deploy/k8s/deployment.yaml).
STOPSIGNAL SIGTERM

# GET http://127.0.0.1:<port of BIND_ADDR>/health (https with TLS_CERT_PATH set);
# exit 0 on 200. /health answers 503 while storage is unreachable, so the
# container shows "unhealthy" then. `--url URL` checks another address. The
# command gives up after 5 s itself; Docker's timeout is longer so that its
# message, not Docker's, lands in `docker inspect`.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["cgm-hub", "healthcheck"]

ENTRYPOINT ["cgm-hub"]
CMD ["serve"]
