# adiuva-local, the whole API in one process, for self-hosting (compose.yaml runs it with
# PostgreSQL, MinIO and Qdrant). Build: docker build -t adiuva-api .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The release profile of the workspace (opt-level "s", fat LTO): small, and fast enough.
RUN cargo build --release --locked -p local \
    && install -m 0755 target/release/adiuva-local /usr/local/bin/adiuva-local

FROM debian:bookworm-slim
# curl for the health check; CA certificates for Stripe, the LLM endpoint and TLS databases.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/adiuva --create-home adiuva
COPY --from=build /usr/local/bin/adiuva-local /usr/local/bin/adiuva-local
USER adiuva
WORKDIR /var/lib/adiuva
# Everything else comes from the environment (README, "Self-hosting"); ENV=prod refuses to start
# without a JWT_SECRET of at least 32 bytes.
ENV BIND_ADDR=0.0.0.0:8000 \
    ADIUVA_DATA_DIR=/var/lib/adiuva \
    ENV=prod \
    LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/api/v1/health/ready || exit 1
ENTRYPOINT ["adiuva-local"]
CMD ["serve"]
