# syntax=docker/dockerfile:1
# Multi-stage build: dependencies are compiled in their own cached layer, then the binary is
# copied into a slim runtime image that runs as a non-root user.

FROM rust:1.95-slim-bookworm AS builder
# The bundled libpq's OpenSSL (TLS to PostgreSQL) is built from source with make and perl.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make perl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Build dependencies first (this layer is reused while Cargo.toml/Cargo.lock do not change).
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src examples && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > examples/embedded.rs \
    && cargo build --release --locked \
    && rm -rf src examples
COPY src ./src
COPY migrations ./migrations
COPY examples ./examples
# The dashboard, embedded into the binary at compile time.
COPY static ./static
# The code layout (build.rs: start-up and hot functions first).
COPY link ./link
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin perfgate-server

FROM debian:bookworm-slim
# Debian's security updates replace these versions; pinning them would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 perfgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin perfgate \
    && mkdir -p /data && chown perfgate /data
COPY --from=builder /src/target/release/perfgate-server /usr/local/bin/perfgate-server
WORKDIR /data
USER 10001:10001
ENV PERFGATE_BIND=0.0.0.0:8080 \
    PERFGATE_DATABASE_URL=/data/perfgate.db
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["/usr/local/bin/perfgate-server"]
