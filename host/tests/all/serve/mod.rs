//! `ais-wasm serve` on loopback, driven the way AIStore drives an ETL container
//! (../shared/protocol/ais-etl-protocol.md, cited as §N), with real components and a
//! fake AIStore target that records what it receives.
//!
//! - `http`: every endpoint and source mode (body, FQN, target GET, download), the
//!   escaping of names and FQNs.
//! - `direct_put`: `Ais-Node-Url`, the composed direct-put URL, every next-hop answer,
//!   retries and the 503 contract.
//! - `pipeline`: chains of servers (3-stage offline, 2-stage inline).
//! - `ws`: WebSocket framing, ordering, FQN and direct put.
//! - `fqn`: `etl_fqn` confinement: object shape, `ETL_FQN_ROOTS`, symbolic links.
//! - `endurance`: 10,000 mixed objects leave descriptors, memory and instances
//!   flat; SIGTERM under load never reports undelivered objects as delivered.
//! - `faults`: next hop and target GET down, resetting, failing or too slow; clients
//!   disconnecting mid-request: clear errors, nothing left behind.
//! - `sandbox`: hostile guests (sandbox, limits, output floods, ignored input,
//!   writing after the receiver went away): per-object errors, a healthy server.
//! - `stress`: concurrency, a 1 GiB stream in bounded memory, health under load,
//!   mid-body failures, graceful shutdown.
//! - `native`: the `--native` baselines used by benchmarks.
//! - `operate`: readiness, metrics, hot swap.

mod direct_put;
mod endurance;
pub(crate) mod fake_target;
mod faults;
mod fqn;
pub(crate) mod harness;
mod http;
mod native;
mod operate;
mod pipeline;
mod sandbox;
mod stress;
mod ws;
