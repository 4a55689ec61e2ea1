//! What can go wrong in the runtime, typed so callers can tell apart the three
//! outcomes that matter: the transform said no, the guest was aborted (trap, deadline,
//! limit), or the host failed.

use std::io;
use std::time::Duration;

/// A component could not be made ready to serve. Every variant ends up as one line
/// at start-up, so each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component.
    #[error("{0}")]
    NotAComponent(String),
    /// Cranelift refused the component (invalid or unsupported WebAssembly).
    #[error("the component does not compile: {0:#}")]
    Compile(wasmtime::Error),
    /// The component exports neither transform shape.
    #[error(
        "the component exports neither aistore:etl/buffered@0.1.0 nor aistore:etl/streaming@0.1.0 \
         (it exports: {exports}); build it against the world `buffered-transform`, \
         `streaming-transform` or `full` of the aistore:etl WIT package"
    )]
    WrongWorld {
        /// The names the component does export.
        exports: String,
    },
    /// The component exports an aistore:etl interface, but not as this host knows it.
    #[error(transparent)]
    Mismatch(#[from] ExportMismatch),
    /// The component imports something the host does not provide (another world).
    #[error(
        "the component needs imports the host does not provide: {0:#}; transforms may import \
         WASI 0.2 and aistore:etl/host-io only"
    )]
    Link(wasmtime::Error),
    /// A first instance could not be created and initialised.
    #[error("the component's first instance failed: {}", first_instance(.0))]
    FirstInstance(ObjectError),
}

/// Only `init` returns the transform's own errors while an instance is made.
fn first_instance(error: &ObjectError) -> String {
    match error {
        ObjectError::Failed(message) | ObjectError::BadInput(message) => {
            format!("its init returned an error: {message}")
        }
        other => other.to_string(),
    }
}

/// Why one object was not transformed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The transform returned `bad-input`: the object cannot be transformed.
    #[error("the transform rejected the object: {0}")]
    BadInput(String),
    /// The transform returned `failed`.
    #[error("the transform failed: {0}")]
    Failed(String),
    /// The guest was stopped by the host or by a trap; its instance is discarded.
    #[error("{0}")]
    Aborted(Abort),
    /// The host could not read the object (client gone, file unreadable).
    #[error("reading the object failed: {0}")]
    Input(io::Error),
    /// The host could not deliver the output (receiver gone).
    #[error("writing the result failed: {0}")]
    Output(io::Error),
    /// The call needs a shape the component does not export: the caller's mistake,
    /// which the server never makes (it asks [`Shapes`](super::Shapes) first).
    #[error("the component does not export {0}, which this call needs")]
    NotExported(&'static str),
    /// The component's exports are not what their names promise: found when its
    /// first instance is made, so only ever at load.
    #[error(transparent)]
    Mismatch(#[from] ExportMismatch),
    /// Nobody waited for the result any more: the guest was stopped, or never
    /// started ([`ObjectRequest::abandoned`](super::ObjectRequest::abandoned)).
    #[error(
        "nobody waits for the result any more (the client disconnected or timed out, or the \
         upload of the result failed)"
    )]
    Abandoned,
    /// The host failed to create an instance for the call.
    #[error("the host could not create an instance: {0:#}")]
    Instance(anyhow::Error),
}

/// Which of the three outcomes an [`ObjectError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The transform reported the object as bad input.
    BadInput,
    /// The transform reported failure, or the guest was aborted.
    Guest,
    /// The host failed (I/O or instance creation).
    Host,
}

impl ObjectError {
    /// Who is at fault, which decides the status an AIStore target gets.
    pub fn fault(&self) -> Fault {
        match self {
            ObjectError::BadInput(_) => Fault::BadInput,
            ObjectError::Failed(_) | ObjectError::Aborted(_) | ObjectError::Mismatch(_) => {
                Fault::Guest
            }
            ObjectError::Input(_)
            | ObjectError::Output(_)
            | ObjectError::Abandoned
            | ObjectError::NotExported(_)
            | ObjectError::Instance(_) => Fault::Host,
        }
    }
}

/// An aistore:etl interface the component exports without the functions, or the
/// types, this host calls: built against another revision of the WIT package.
#[derive(Debug, thiserror::Error)]
#[error(
    "the component exports {interface}, but not as this host defines it: {error:#}; build it \
     against the aistore:etl WIT package that ships with this ais-wasm (wit/etl.wit)"
)]
pub struct ExportMismatch {
    pub(crate) interface: &'static str,
    pub(crate) error: wasmtime::Error,
}

/// Why the host stopped a guest in the middle of a call.
#[derive(Debug, thiserror::Error)]
pub enum Abort {
    /// The object took longer than the per-object deadline.
    #[error(
        "the transform exceeded its deadline of {0:?}; if objects need longer, raise \
         ETL_WASM_TIMEOUT (--timeout; `ais-wasm spec` makes it two thirds of the ETL's \
         obj_timeout)"
    )]
    Timeout(Duration),
    /// The instance tried to grow its memory past the limit.
    #[error(
        "the transform exceeded its memory limit of {limit} bytes (it asked for {requested}); \
         raise ETL_WASM_MAX_MEMORY (--max-memory), or have it keep less: a buffered transform holds the whole object \
         and its result (export aistore:etl/streaming for large objects), and a Python one \
         keeps every byte it outputs (componentize-py 0.25.1; README, \"Python\")"
    )]
    MemoryLimit {
        /// The configured limit.
        limit: u64,
        /// What the guest asked for in total.
        requested: u64,
    },
    /// A buffered result, or one streamed write, was larger than allowed.
    #[error(
        "the transform returned more than {limit} bytes at once; raise ETL_WASM_MAX_OUTPUT \
         (--max-output) or export aistore:etl/streaming"
    )]
    OutputLimit {
        /// The configured limit.
        limit: u64,
    },
    /// The guest trapped: a panic, `unreachable`, stack overflow, or invalid access.
    #[error("the transform crashed: {message}{}", stderr_suffix(.stderr))]
    Trap {
        /// What wasmtime reported.
        message: String,
        /// The guest's last stderr output for this object (a panic message, usually).
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (guest stderr: {stderr})")
    }
}

/// Raised from the epoch callback when the deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub(crate) struct DeadlineExceeded;

/// The deadline passed while the guest waited for its input.
#[derive(Debug, thiserror::Error)]
#[error("the input did not arrive by the deadline")]
pub(crate) struct InputTimedOut;

/// Raised from the epoch callback when the call's result is no longer awaited.
#[derive(Debug, thiserror::Error)]
#[error("abandoned by its caller")]
pub(crate) struct Abandoned;

/// Raised from the resource limiter when a memory grows past the limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (requested {requested})")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) limit: u64,
    pub(crate) requested: u64,
}

/// Raised from a host-io call when the host side of a stream failed. The guest never
/// sees it: the call is aborted and the cause reported as the host's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostIoError {
    #[error("input: {0}")]
    Input(io::Error),
    #[error("output: {0}")]
    Output(io::Error),
}
