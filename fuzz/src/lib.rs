//! The host's parsers of untrusted input, compiled from the host's own source files
//! rather than through the `ais-wasm` crate: that would build wasmtime and the whole
//! server with coverage instrumentation (minutes) for code the targets never reach.
//! The files included here are self-contained for that reason (no `crate::` paths);
//! each says so at its top.

#[path = "../../host/src/protocol/control.rs"]
pub mod control;
#[path = "../../host/src/source/fqn.rs"]
pub mod fqn;
#[path = "../../host/src/pipeline.rs"]
pub mod pipeline;

/// Go's `url.PathEscape` (what a target applies to an FQN, §5.3): keeps letters,
/// digits, `-._~` and `$&+:=@`.
pub fn go_path_escape(bytes: &[u8]) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
    const GO_PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b':')
        .remove(b'=')
        .remove(b'@');
    percent_encode(bytes, GO_PATH_SEGMENT).to_string()
}
