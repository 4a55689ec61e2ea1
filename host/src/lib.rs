//! ais-wasm: a WebAssembly-hosting ETL runtime for AIStore.
//!
//! # Layout
//!
//! - [`runtime`]: wasmtime engine, compile cache, instances and their limits. Knows
//!   nothing of HTTP.
//! - [`delivery`]: how a component arrives (payload, file, URL) and is checked.
//! - [`outbound`]: the HTTP client for calls to AIStore (auth, TLS).
//! - [`config`]: command-line flags and environment variables, validated once.
//! - [`cmd`]: one module per subcommand.

pub mod cmd;
pub mod config;
pub mod delivery;
pub mod outbound;
pub mod runtime;
