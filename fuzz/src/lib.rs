//! The host's parsers of untrusted input, compiled from the host's own source files
//! rather than through the `ais-wasm` crate: that would build wasmtime and the whole
//! server with coverage instrumentation (minutes) for code the targets never reach.
//! The files included here are self-contained for that reason (no `crate::` paths);
//! each says so at its top.

#[path = "../../host/src/protocol/control.rs"]
pub mod control;
#[path = "../../host/src/source/fqn.rs"]
pub mod fqn;
#[path = "../../host/src/protocol/ws/frames.rs"]
pub mod frames;
#[path = "../../host/src/pipeline.rs"]
pub mod pipeline;
/// The target's encodings, to build wire values from arbitrary bytes.
#[path = "../../host/src/load/wire.rs"]
pub mod wire;
