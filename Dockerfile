# ais-wasm: `ais-wasm serve` on port 8000, as an AIStore ETL runtime image.
# Build from the repository root: docker build -t ais-wasm:0.1.0 .
# The build steps are scripts/build-image.sh, which CI also runs outside Docker.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-image.sh /out

# No compiler, no shell tools beyond Debian's base: the binary, CA certificates for
# outbound TLS, a non-root user, and the compile cache on a volume. Trixie, not the
# builder's bookworm: bookworm's glibc 2.36 copies 2 KiB and more with `rep movsb`,
# which an AMD Zen 3 ran about 20x slower (28 µs for 64 KiB against 1.5) when the
# destination lay 8-24 bytes past the source modulo 4 KiB; trixie's 2.41 keeps `rep movsb`
# for copies of 24 MiB and more on that CPU. The binary, built against 2.36, runs on 2.41.
FROM debian:trixie-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --gid 0 --home-dir /nonexistent --shell /usr/sbin/nologin ais-wasm
COPY --from=build /out/ /
RUN chown ais-wasm:0 /var/cache/ais-wasm
# Not root, but in group 0: AIStore writes objects with mode 0640 in directories of
# 0750, owned by the user aisnode runs as (root, by default), and an ETL pod's spec
# cannot set the user it runs as. Group 0 reads them as `etl_fqn` names them.
USER 10001:0
ENV ETL_WASM_CACHE_DIR=/var/cache/ais-wasm
VOLUME /var/cache/ais-wasm
EXPOSE 8000
ENTRYPOINT ["ais-wasm", "serve"]
