//! One instance of a transform: a `Store` holding the per-instance state and limits,
//! and the export functions loaded from it. An instance serves one object at a time
//! and is discarded after anything that may have left it inconsistent.

use std::io;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use wasmtime::component::{InstancePre, Resource};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::bindings::{TransformError, buffered, lifecycle, streaming};
use super::error::{
    Abandoned, Abort, DeadlineExceeded, ExportMismatch, HostIoError, InputTimedOut,
    MemoryLimitExceeded, ObjectError,
};
use super::guest_log::GuestLog;
use super::host_io::{InputStream, OutputStream};
use super::{Limits, ObjectRequest};

/// Largest table a guest may grow to; tables are host memory too.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Per-instance state: what a `Store` holds for the guest.
pub struct GuestCtx {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limiter: MemoryLimiter,
    log: GuestLog,
    /// When the current call must end; checked on every epoch tick.
    deadline: Instant,
    /// The current call's [`ObjectRequest::abandoned`]; checked on every epoch tick.
    abandoned: CancellationToken,
    /// The guest waits in a read of its input: a deadline passing now is the
    /// input's, which did not arrive in time, not the transform's.
    pub(super) reading: bool,
}

impl WasiView for GuestCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the total linear memory of an instance. Growing past the cap traps at once
/// (rather than failing the grow) so every guest language reports it the same way.
struct MemoryLimiter {
    limit: u64,
    used: u64,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested = self.used - current as u64 + desired as u64;
        if requested > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limit,
                requested,
            }));
        }
        self.used = requested;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The export functions a component offers, located once per transform.
pub(crate) struct ExportIndices {
    pub(crate) lifecycle: Option<lifecycle::GuestIndices>,
    pub(crate) buffered: Option<buffered::GuestIndices>,
    pub(crate) streaming: Option<streaming::GuestIndices>,
}

const LIFECYCLE: &str = "aistore:etl/lifecycle@0.1.0";
pub(super) const BUFFERED: &str = "aistore:etl/buffered@0.1.0";
pub(super) const STREAMING: &str = "aistore:etl/streaming@0.1.0";

impl ExportIndices {
    /// An interface the component does not export is absent; one it exports without
    /// the functions this host calls is an error, not absent (its init would be
    /// skipped, or the component said to export no transform at all).
    pub(crate) fn new(pre: &InstancePre<GuestCtx>) -> Result<Self, ExportMismatch> {
        Ok(ExportIndices {
            lifecycle: exported(pre, LIFECYCLE, lifecycle::GuestIndices::new(pre))?,
            buffered: exported(pre, BUFFERED, buffered::GuestIndices::new(pre))?,
            streaming: exported(pre, STREAMING, streaming::GuestIndices::new(pre))?,
        })
    }
}

fn exported<T>(
    pre: &InstancePre<GuestCtx>,
    interface: &'static str,
    found: wasmtime::Result<T>,
) -> Result<Option<T>, ExportMismatch> {
    match found {
        Ok(indices) => Ok(Some(indices)),
        Err(_) if pre.component().get_export_index(None, interface).is_none() => Ok(None),
        Err(error) => Err(ExportMismatch { interface, error }),
    }
}

pub(crate) struct Instance {
    store: Store<GuestCtx>,
    buffered: Option<buffered::Guest>,
    streaming: Option<streaming::Guest>,
    limits: Limits,
    /// Set when a call was aborted: the guest may be in any state.
    poisoned: bool,
}

impl Instance {
    /// Instantiate and run `init` once.
    pub(crate) async fn new(
        pre: &InstancePre<GuestCtx>,
        indices: &ExportIndices,
        limits: &Limits,
        config: &[(String, String)],
    ) -> Result<Self, ObjectError> {
        let log = GuestLog::default();
        let wasi = WasiCtx::builder()
            .stdout(log.stdout())
            .stderr(log.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let ctx = GuestCtx {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.max_memory,
                used: 0,
            },
            log,
            deadline: Instant::now() + limits.timeout,
            abandoned: CancellationToken::new(),
            reading: false,
        };
        let mut store = Store::new(pre.engine(), ctx);
        store.limiter(|ctx| &mut ctx.limiter);
        store.set_hostcall_fuel(usize::try_from(limits.max_output).unwrap_or(usize::MAX));
        store.epoch_deadline_callback(|ctx| {
            let ctx = ctx.data();
            if Instant::now() >= ctx.deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else if ctx.abandoned.is_cancelled() {
                Err(wasmtime::Error::new(Abandoned))
            } else {
                // Yield on every tick so a busy guest never starves other tasks
                // (health checks, I/O) on the same executor thread: with tokio's
                // yield, which resumes the guest only after the thread has polled
                // for I/O (a plain one let it run 61 ticks, 0.6 s, between polls).
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store.set_epoch_deadline(1);

        let mut instance = Instance {
            store,
            buffered: None,
            streaming: None,
            limits: limits.clone(),
            poisoned: false,
        };
        let init = ObjectRequest {
            path: "<init>".into(),
            ..ObjectRequest::default()
        };
        instance.start_call(&init);
        let started =
            tokio::time::timeout(limits.timeout, pre.instantiate_async(&mut instance.store))
                .await
                .unwrap_or_else(|_| Err(wasmtime::Error::new(DeadlineExceeded)));
        let component = match started {
            Ok(component) => component,
            // A trap or limit during instantiation is the guest's doing (a start
            // function, an initial memory over the limit); anything else is the host's
            // (for example the instance pool is exhausted).
            Err(error) if find::<Trap>(&error).is_none() && !is_limit(&error) => {
                instance.store.data().log.finish();
                return Err(ObjectError::Instance(error.into()));
            }
            Err(error) => return Err(instance.end_call::<()>(Err(error)).unwrap_err()),
        };
        // Loading type-checks the functions: a mismatch is the component's.
        let mismatch = |interface| move |error| ExportMismatch { interface, error };
        let store = &mut instance.store;
        let lifecycle = (indices.lifecycle.as_ref())
            .map(|i| i.load(&mut *store, &component).map_err(mismatch(LIFECYCLE)))
            .transpose()?;
        let buffered = (indices.buffered.as_ref())
            .map(|i| i.load(&mut *store, &component).map_err(mismatch(BUFFERED)))
            .transpose()?;
        let streaming = (indices.streaming.as_ref())
            .map(|i| i.load(&mut *store, &component).map_err(mismatch(STREAMING)))
            .transpose()?;
        instance.buffered = buffered;
        instance.streaming = streaming;
        if let Some(lifecycle) = lifecycle {
            let config = config.to_vec();
            let call = lifecycle.call_init(&mut instance.store, &config);
            let outcome = tokio::time::timeout(limits.timeout, call).await;
            // Bad input from init is about the configuration, not the object whose
            // instance it was (an instance can be created while serving): a 5xx.
            instance
                .end_timed_call(outcome)
                .map_err(|error| match error {
                    ObjectError::BadInput(message) => {
                        ObjectError::Failed(format!("init refused the configuration: {message}"))
                    }
                    other => other,
                })?;
        } else {
            instance.store.data().log.finish();
        }
        Ok(instance)
    }

    /// Whether the instance can serve another object.
    pub(crate) fn reusable(&self) -> bool {
        // Linear memory never shrinks: an instance that grew large keeps the memory
        // until it is dropped, so recycle it rather than hold it in the pool.
        !self.poisoned && self.store.data().limiter.used <= self.limits.max_memory / 2
    }

    pub(crate) async fn buffered(
        &mut self,
        data: &[u8],
        object: &ObjectRequest,
    ) -> Result<Vec<u8>, ObjectError> {
        let deadline = self.start_call(object);
        let guest = self
            .buffered
            .as_ref()
            .expect("Transform checks the component's shapes");
        let call = guest.call_transform(&mut self.store, data, &object.path, &object.args);
        let outcome = tokio::time::timeout_at(deadline.into(), call).await;
        self.end_timed_call(outcome)
    }

    /// Stream `input` through the guest into `output`; returns the bytes written.
    pub(crate) async fn streaming(
        &mut self,
        input: InputStream,
        output: OutputStream,
        object: &ObjectRequest,
    ) -> Result<u64, ObjectError> {
        let deadline = self.start_call(object);
        let table = &mut self.store.data_mut().table;
        let (input, output) = match (table.push(input), table.push(output)) {
            (Ok(input), Ok(output)) => (input, output),
            (Err(e), _) | (_, Err(e)) => return Err(ObjectError::Instance(e.into())),
        };
        let guest = self
            .streaming
            .as_ref()
            .expect("Transform checks the component's shapes");
        let call = guest.call_transform_stream(
            &mut self.store,
            Resource::new_borrow(input.rep()),
            Resource::new_borrow(output.rep()),
            &object.path,
            &object.args,
        );
        let outcome = tokio::time::timeout_at(deadline.into(), call).await;
        // The guest only ever held borrows: the host still owns both resources.
        let table = &mut self.store.data_mut().table;
        let written = table.delete(output).map(|o| o.written()).unwrap_or(0);
        let _ = table.delete(input);
        self.end_timed_call(outcome).map(|()| written)
    }

    /// Begin a call for `object`; returns its deadline.
    fn start_call(&mut self, object: &ObjectRequest) -> Instant {
        self.store.data().log.begin(&object.path, &object.log);
        let deadline = (object.deadline).unwrap_or_else(|| Instant::now() + self.limits.timeout);
        let ctx = self.store.data_mut();
        ctx.deadline = deadline;
        ctx.abandoned = object.abandoned.clone();
        ctx.reading = false;
        self.store.set_epoch_deadline(1);
        deadline
    }

    fn end_timed_call<R>(
        &mut self,
        outcome: Result<wasmtime::Result<Result<R, TransformError>>, tokio::time::error::Elapsed>,
    ) -> Result<R, ObjectError> {
        let result = match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(TransformError::BadInput(message)))) => Err(ObjectError::BadInput(message)),
            Ok(Ok(Err(TransformError::Failed(message)))) => Err(ObjectError::Failed(message)),
            Ok(Err(error)) => return self.end_call(Err(error)),
            Err(_elapsed) if self.store.data().reading => {
                return self.end_call(Err(wasmtime::Error::new(InputTimedOut)));
            }
            Err(_elapsed) => return self.end_call(Err(wasmtime::Error::new(DeadlineExceeded))),
        };
        self.store.data().log.finish();
        result
    }

    /// Conclude a call that may have trapped: classify the failure and poison the
    /// instance.
    fn end_call<R>(&mut self, result: wasmtime::Result<R>) -> Result<R, ObjectError> {
        let stderr = self.store.data().log.finish();
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        self.poisoned = true;
        let parent = self.store.data().log.span();
        tracing::debug!(parent: parent, error = ?error, "guest call aborted");
        let error = self.classify(error, stderr);
        // Said here, as nobody else hears of it.
        if let ObjectError::Abandoned = error {
            let log = &self.store.data().log;
            log.warn(format_args!(
                "transform stopped, instance replaced: {error}"
            ));
        }
        Err(error)
    }

    fn classify(&self, error: wasmtime::Error, stderr: String) -> ObjectError {
        if find::<DeadlineExceeded>(&error).is_some() {
            return ObjectError::Aborted(Abort::Timeout(self.limits.timeout));
        }
        if find::<Abandoned>(&error).is_some() {
            return ObjectError::Abandoned;
        }
        if find::<InputTimedOut>(&error).is_some() {
            let limit = self.limits.timeout;
            return ObjectError::Input(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "it did not all arrive within the per-object deadline of {limit:?}, the \
                     transform waiting for it (the client or the target sent it too slowly); \
                     if objects need longer, raise ETL_WASM_TIMEOUT (--timeout)"
                ),
            ));
        }
        if let Some(exceeded) = find::<MemoryLimitExceeded>(&error) {
            return ObjectError::Aborted(Abort::MemoryLimit {
                limit: exceeded.limit,
                requested: exceeded.requested,
            });
        }
        // Taken whole: what failed to read may say which source it was (its status).
        let error = match error.downcast::<HostIoError>() {
            Ok(HostIoError::Input(e)) => return ObjectError::Input(e),
            Ok(HostIoError::Output(e)) => return ObjectError::Output(e),
            Err(error) => error,
        };
        // What the host raised (an exit, a limit of its own) is wrapped in the wasm
        // backtrace, which would be all a message from the top said.
        let message = match find::<Trap>(&error) {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        if message.contains("fuel allocated for hostcalls has been exhausted") {
            return ObjectError::Aborted(Abort::OutputLimit {
                limit: self.limits.max_output,
            });
        }
        ObjectError::Aborted(Abort::Trap { message, stderr })
    }
}

fn is_limit(error: &wasmtime::Error) -> bool {
    find::<DeadlineExceeded>(error).is_some() || find::<MemoryLimitExceeded>(error).is_some()
}

/// `E` anywhere in the error's chain of causes.
fn find<E: std::error::Error + Send + Sync + 'static>(error: &wasmtime::Error) -> Option<&E> {
    error
        .downcast_ref::<E>()
        .or_else(|| error.chain().find_map(|cause| cause.downcast_ref::<E>()))
}
