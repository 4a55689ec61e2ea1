//! The host's integration tests, one binary. Every test uses real components built
//! from this repository (examples/ and tests/components/) by their `build.sh`.
//!
//! - `bench`: `ais-wasm bench serve` on tiny settings.
//! - `cli`: `ais-wasm run` and `ais-wasm payload` as a user runs them.
//! - `engine`: the runtime library against hostile guests, limits and the cache.
//! - `sources`: bad component sources fail start-up with one clear line.
//! - `serve`: `ais-wasm serve` on loopback against a fake AIStore target.

mod bench;
mod cli;
mod engine;
mod languages;
mod serve;
mod sources;
mod support;
