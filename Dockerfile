# Multi-stage build: cargo-chef caches the dependency layer; the runtime image holds only
# the binary and the shipped config, runs as a non-root user, and checks /healthz.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin kairos

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /app kairos
WORKDIR /app
COPY --from=builder /app/target/release/kairos /usr/local/bin/kairos
COPY config ./config
RUN mkdir -p /app/data && chown -R kairos /app/data
USER kairos
# Bound to 0.0.0.0 the service refuses to start with the development key: mount a config
# file with [[auth.keys]] (e.g. /app/config/production.toml with KAIROS_ENV=production).
ENV KAIROS__SERVER__HOST=0.0.0.0 \
    KAIROS__TELEMETRY__LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["kairos"]
CMD ["serve"]
