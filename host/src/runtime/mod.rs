//! The WebAssembly runtime. It compiles, links, instantiates and calls transforms,
//! and knows nothing of HTTP: callers hand it bytes or streams and an
//! [`ObjectRequest`], and get bytes, a stream, or a typed [`ObjectError`] back.
//!
//! Lifetimes:
//! - per process, [`Runtime`]: the wasmtime `Engine` (Cranelift, async, epoch
//!   interruption, pooling allocator), the `Linker` with WASI and host-io, the epoch
//!   ticker thread and the compile cache;
//! - per transform, [`Transform`]: the `Component`, its `InstancePre`, the shapes it
//!   exports and a pool of initialised instances;
//! - per object: one instance leased from the pool for one call, under the limits.

mod bindings;
mod cache;
mod epoch;
mod error;
mod guest_log;
mod host_io;
mod instance;
mod native;
mod pool;
mod transform;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

pub use cache::CacheStatus;
pub use error::{Abort, ExportMismatch, Fault, LoadError, ObjectError};
pub use guest_log::{LOG_BUDGET_PER_OBJECT, LOG_LINES_PER_OBJECT};
pub use host_io::InputStream;
pub use native::NativeTransform;
pub use pool::PoolStats;
pub use transform::{STREAM_AT_OR_ABOVE, Shapes, Transform, Turn};

use epoch::EpochTicker;
use instance::{ExportIndices, GuestCtx, Instance};
use pool::InstancePool;

/// How much of a discarded instance's linear memory (and of each table) its slot
/// keeps mapped, reset in place for the next instance. Fresh-instance mode discards
/// one per object: releasing the pages with `madvise` cost a TLB shootdown across
/// the server's threads, and the next object a page fault per page it touched (fresh
/// echo at 64 KiB: half the objects/s). Where the kernel lists the pages an instance
/// dirtied (PAGEMAP_SCAN, Linux 6.7) only those are reset; older kernels have the
/// whole kept part zeroed. A Rust or C guest's memory fits; Python's is released
/// beyond it.
const KEEP_RESIDENT: usize = 8 << 20;
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// Limits applied to every instance and every object. Each has a flag and an
/// environment variable (see `config.rs`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory per instance, all memories together, in bytes.
    pub max_memory: u64,
    /// Wall-clock time one object may take, I/O included (`init` gets the same).
    pub timeout: Duration,
    /// Largest buffered result, and largest single streamed write, in bytes.
    pub max_output: u64,
}

/// Whether instances are reused across objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstanceMode {
    /// Keep initialised instances and reuse them; an instance is replaced after a
    /// trap, a timeout or an exceeded limit.
    Pooled,
    /// A new instance (instantiate and init) for every object: strict isolation
    /// between objects, at the cost of instantiation per object.
    Fresh,
}

/// Everything the runtime needs, validated by `config.rs`.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub limits: Limits,
    pub instance_mode: InstanceMode,
    /// Objects transformed at once; callers beyond it wait.
    pub concurrency: usize,
    /// Where compiled code is cached; `None` compiles at every start.
    pub cache_dir: Option<PathBuf>,
}

/// What one object is: the guest sees both strings as given.
#[derive(Debug, Clone, Default)]
pub struct ObjectRequest {
    /// The object's name (see `buffered.transform` in the WIT).
    pub path: String,
    /// The request's `etl_args`; empty when none.
    pub args: String,
    /// Names the object's log lines, the guest's own included.
    pub log: LogScope,
    /// When the object's time is up, its I/O included (set from `--timeout` when it
    /// arrived); `None`: `--timeout` from when a call starts.
    pub deadline: Option<std::time::Instant>,
    /// Cancelled when nobody waits for the result any more (the client went away):
    /// a running guest is stopped at its next epoch tick, its instance replaced, and
    /// a call not yet begun never begins. The server gives each run of an object a
    /// child of its job's token (a WebSocket connection's, for all its objects), so
    /// that a retry does not inherit the abandonment of the attempt before it.
    pub abandoned: CancellationToken,
}

impl ObjectRequest {
    /// The span its log lines name as their parent ([`LogScope`]).
    pub fn span(&self) -> Option<tracing::Id> {
        self.log.span(&self.path)
    }
}

/// The `object` span of one object's log lines: its ETL, transport and name. It is
/// made at the object's first line, which most objects never log; lines name it as
/// their parent. A span made and entered for every object cost 4-5% of the server's
/// CPU per 64 KiB WebSocket echo (ten paired runs). Clones share the span. The
/// default names none.
#[derive(Debug, Clone, Default)]
pub struct LogScope(Option<Arc<Scope>>);

#[derive(Debug)]
struct Scope {
    etl: Arc<str>,
    transport: &'static str,
    span: std::sync::OnceLock<tracing::Span>,
}

impl LogScope {
    pub fn new(etl: &Arc<str>, transport: &'static str) -> LogScope {
        LogScope(Some(Arc::new(Scope {
            etl: etl.clone(),
            transport,
            span: std::sync::OnceLock::new(),
        })))
    }

    /// The span of `object`'s lines, made now if it was not yet: a line's `parent:`.
    pub(crate) fn span(&self, object: &str) -> Option<tracing::Id> {
        let scope = self.0.as_ref()?;
        let span = scope.span.get_or_init(|| {
            tracing::info_span!(
                "object",
                etl = %scope.etl,
                transport = scope.transport,
                object = %object,
            )
        });
        span.id()
    }
}

/// What loading a component did, for logs, tests and the benchmark.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Lowercase hex sha256 of the component.
    pub sha256: String,
    pub cache: CacheStatus,
    /// Compiling, or loading from the cache.
    pub compile_time: Duration,
    /// Instantiating and initialising the first instance.
    pub first_instance_time: Duration,
    pub shapes: Shapes,
}

pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<GuestCtx>>,
    cache: Arc<cache::CompileCache>,
    config: RuntimeConfig,
    ticker: EpochTicker,
    /// The turns of `config.concurrency` objects at once, shared by every transform
    /// loaded: those still running on one hot-swapped out count too.
    permits: Arc<Semaphore>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let mut engine_config = wasmtime::Config::new();
        engine_config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(&config)));
        let engine = Engine::new(&engine_config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        bindings::Full::add_to_linker::<_, HasSelf<GuestCtx>>(&mut linker, |ctx| ctx)
            .map_err(anyhow::Error::from)
            .context("linking aistore:etl/host-io")?;

        Ok(Runtime {
            ticker: EpochTicker::start(engine.clone()),
            cache: Arc::new(cache::CompileCache::new(config.cache_dir.clone())),
            linker: Arc::new(linker),
            engine,
            permits: Arc::new(Semaphore::new(config.concurrency)),
            config,
        })
    }

    /// Compile (or load from the cache), link, and create and initialise a first
    /// instance with `init_config`, so that a component that cannot serve fails here
    /// rather than on its first object.
    pub async fn load(
        &self,
        wasm: Vec<u8>,
        init_config: Vec<(String, String)>,
    ) -> Result<(Transform, LoadReport), LoadError> {
        check_shape(&wasm)?;
        let sha256 = hex::encode(Sha256::digest(&wasm));

        let started = Instant::now();
        let (engine, cache, digest) = (self.engine.clone(), self.cache.clone(), sha256.clone());
        // Compiling a large component takes seconds of CPU: keep it off the executor.
        let (component, cache_status) =
            tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &wasm, &digest))
                .await
                .map_err(|stopped| {
                    LoadError::Compile(wasmtime::Error::msg(stopped.to_string()))
                })??;
        let compile_time = started.elapsed();

        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(LoadError::Link)?;
        // `check_shape` found a transform shape among the exports.
        let indices = ExportIndices::new(&pre)?;

        let started = Instant::now();
        let limits = self.config.limits.clone();
        let clock = self.ticker.clock().clone();
        let first = {
            let _running = clock.running();
            Instance::new(&pre, &indices, &limits, &init_config)
                .await
                .map_err(|error| match error {
                    ObjectError::Mismatch(mismatch) => LoadError::Mismatch(mismatch),
                    error => LoadError::FirstInstance(error),
                })?
        };
        let first_instance_time = started.elapsed();

        let pool = InstancePool::new(
            self.config.instance_mode,
            self.permits.clone(),
            self.config.concurrency,
            first,
        );
        let transform = Transform::new(pre, indices, limits, init_config, pool, clock);
        let report = LoadReport {
            sha256,
            cache: cache_status,
            compile_time,
            first_instance_time,
            shapes: transform.shapes(),
        };
        tracing::info!(
            sha256 = %report.sha256,
            cache = ?report.cache,
            compile_ms = report.compile_time.as_secs_f64() * 1e3,
            first_instance_ms = report.first_instance_time.as_secs_f64() * 1e3,
            buffered = report.shapes.buffered,
            streaming = report.shapes.streaming,
            "component loaded"
        );
        Ok((transform, report))
    }
}

/// What [`Runtime::load`] refuses before compiling: bytes that are not a component,
/// and a component that exports neither transform shape. For `payload` and `spec`,
/// which package a component without running it.
pub fn check_shape(wasm: &[u8]) -> Result<(), LoadError> {
    check_component(wasm)?;
    let unparsable = |error: wasmparser::BinaryReaderError| {
        LoadError::NotAComponent(format!("the component cannot be parsed: {error}"))
    };
    // The component's own exports, not those of the modules and components within.
    let (mut depth, mut exports) = (0u32, Vec::new());
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.map_err(unparsable)? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.map_err(unparsable)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let shapes = [instance::BUFFERED, instance::STREAMING];
    if exports.iter().any(|name| shapes.contains(&name.as_str())) {
        return Ok(());
    }
    Err(LoadError::WrongWorld {
        exports: match exports.is_empty() {
            true => "nothing".into(),
            false => exports.join(", "),
        },
    })
}

/// Refuse anything but a component before handing bytes to Cranelift, with a message
/// that says what the bytes are instead.
fn check_component(wasm: &[u8]) -> Result<(), LoadError> {
    if Engine::detect_precompiled(wasm).is_some() {
        return Err(LoadError::NotAComponent(
            "this is wasmtime precompiled code (.cwasm); ais-wasm only runs precompiled code \
             from its own compile cache, so deploy the .wasm component instead"
                .into(),
        ));
    }
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(LoadError::NotAComponent(
            "this is a core WebAssembly module, not a component; build the transform for \
             wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
                .into(),
        )),
        _ => Err(LoadError::NotAComponent(format!(
            "this is not WebAssembly ({} bytes starting with {:02x?}); expected a WASI 0.2 \
             component (a .wasm file beginning with \\0asm)",
            wasm.len(),
            &wasm[..wasm.len().min(8)]
        ))),
    }
}

/// Size the pooling allocator: every live instance takes a slot. The pool in service
/// holds at most `concurrency` idle instances; all pools together at most
/// `concurrency` busy ones (the turns are the runtime's), which a pool swapped out
/// drops as their objects end. A hot swap's first instance comes beside them, and an
/// instance being dropped may hold its slot a moment longer.
fn pooling(config: &RuntimeConfig) -> PoolingAllocationConfig {
    let instances = u32::try_from(config.concurrency * 3 + 2).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        // Python and JavaScript components hold dozens of core instances and tables.
        .total_core_instances(instances.saturating_mul(32))
        .total_memories(instances.saturating_mul(4))
        .total_tables(instances.saturating_mul(16))
        .total_stacks(instances)
        .max_tables_per_module(4)
        .table_elements(100_000)
        .max_memory_size(usize::try_from(config.limits.max_memory).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto)
        // A new instance takes the slot its module used last, else the least recently
        // used one, before a never-used one: the slots in use, and the memory they
        // keep, stay as many as the instances alive at once, across hot swaps too.
        .max_unused_warm_slots(0);
    pool
}
