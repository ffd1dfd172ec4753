# syntax=docker/dockerfile:1
# Multi-stage build: dependencies are compiled in their own cached layer, then the binary is
# copied into a slim runtime image that runs as a non-root user.

FROM rust:1.95-slim-bookworm AS builder
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
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin perfgate-server

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin perfgate \
    && mkdir -p /data && chown perfgate /data
COPY --from=builder /src/target/release/perfgate-server /usr/local/bin/perfgate-server
WORKDIR /data
USER perfgate
ENV PERFGATE_BIND=0.0.0.0:8080 \
    PERFGATE_DATABASE_URL=/data/perfgate.db
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/perfgate-server"]
