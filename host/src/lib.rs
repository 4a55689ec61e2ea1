//! ais-wasm: a WebAssembly-hosting ETL runtime for AIStore.
//!
//! # Layout
//!
//! - [`protocol`]: the AIStore ETL wire protocol (axum routes, WebSocket, statuses).
//!   The only module that knows HTTP server types.
//! - [`etl`]: one object end to end: source, transform, result or direct put.
//! - [`held`]: a result held whole (a WebSocket reply): memory, then a temporary
//!   file within the disk space all of them share.
//! - [`source`]: where objects come from (body, FQN file, target GET, download).
//! - [`sink`]: direct puts to the next hop and what its answer means.
//! - [`metrics`]: Prometheus metrics served at `/metrics`.
//! - [`pipeline`]: `Ais-Node-Url` parsing and next-hop URLs.
//! - [`runtime`]: wasmtime engine, compile cache, instances and their limits. Knows
//!   nothing of HTTP.
//! - [`delivery`]: how a component arrives (payload, file, URL) and is checked.
//! - [`outbound`]: the HTTP client for calls to AIStore (auth, TLS).
//! - [`threads`]: the serving threads and how hard each works (where WebSocket
//!   sessions go).
//! - [`allocator`]: the heap's settings, made once at start-up.
//! - [`logs`]: text logs kept to one line per event, whatever a request put in them.
//! - [`config`]: command-line flags and environment variables, validated once.
//! - [`cmd`]: one module per subcommand.
//! - [`load`]: a load generator: an emulated target, a server under test as a
//!   process tree, every transport driven and every byte verified (`bench serve`).

pub mod allocator;
pub mod cmd;
pub mod config;
pub mod delivery;
pub mod etl;
pub mod held;
pub mod load;
pub mod logs;
pub mod metrics;
pub mod outbound;
pub mod pipeline;
pub mod protocol;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod threads;
