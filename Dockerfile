# ais-wasm container: `ais-wasm serve` on port 8000, the compile cache on a volume.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p ais-wasm && strip target/release/ais-wasm

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent ais-wasm \
    && mkdir -p /var/cache/ais-wasm && chown ais-wasm /var/cache/ais-wasm && chmod 700 /var/cache/ais-wasm
COPY --from=build /src/target/release/ais-wasm /usr/local/bin/ais-wasm
USER ais-wasm
ENV ETL_WASM_CACHE_DIR=/var/cache/ais-wasm
VOLUME /var/cache/ais-wasm
EXPOSE 8000
ENTRYPOINT ["ais-wasm", "serve"]
