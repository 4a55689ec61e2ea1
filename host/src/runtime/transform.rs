//! A loaded transform: the compiled component, its pre-linked instance template, the
//! shapes it exports, and its instance pool (or a native baseline, for benchmarks).
//! Cheap to clone and shared by every request.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use wasmtime::component::InstancePre;

use super::epoch::Clock;
use super::error::ObjectError;
use super::host_io::{InputStream, OutputStream};
use super::instance::{ExportIndices, GuestCtx, Instance};
use super::native::NativeTransform;
use super::pool::{InstancePool, PoolStats};
use super::{Limits, ObjectRequest};

/// Objects at least this large go to the streaming export when a component offers
/// both shapes: buffering them would cost a copy of the whole object in each
/// direction and as much guest memory.
pub const STREAM_AT_OR_ABOVE: u64 = 1024 * 1024;

/// The transform shapes a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shapes {
    /// `aistore:etl/buffered` is exported.
    pub buffered: bool,
    /// `aistore:etl/streaming` is exported.
    pub streaming: bool,
}

impl Shapes {
    /// Whether an object of `size` bytes (unknown: `None`) should be streamed.
    pub fn prefers_streaming(self, size: Option<u64>) -> bool {
        self.streaming && (!self.buffered || size.is_none_or(|size| size >= STREAM_AT_OR_ABOVE))
    }
}

/// A turn to transform one object, held until the object is done: the bound on
/// how many run at once (`NUM_WORKERS`).
pub struct Turn(OwnedSemaphorePermit);

#[derive(Clone)]
pub struct Transform {
    inner: Arc<TransformInner>,
}

struct TransformInner {
    limits: Limits,
    shapes: Shapes,
    backend: Backend,
}

enum Backend {
    Wasm {
        pre: InstancePre<GuestCtx>,
        indices: ExportIndices,
        config: Vec<(String, String)>,
        pool: InstancePool,
        /// Kept going while this transform's guests run.
        clock: Arc<Clock>,
    },
    Native {
        transform: NativeTransform,
        /// The same concurrency bound a pool applies.
        permits: Arc<Semaphore>,
        concurrency: usize,
        stats: PoolStats,
    },
}

impl Transform {
    pub(crate) fn new(
        pre: InstancePre<GuestCtx>,
        indices: ExportIndices,
        limits: Limits,
        config: Vec<(String, String)>,
        pool: InstancePool,
        clock: Arc<Clock>,
    ) -> Self {
        let shapes = Shapes {
            buffered: indices.buffered.is_some(),
            streaming: indices.streaming.is_some(),
        };
        Transform {
            inner: Arc::new(TransformInner {
                limits,
                shapes,
                backend: Backend::Wasm {
                    pre,
                    indices,
                    config,
                    pool,
                    clock,
                },
            }),
        }
    }

    /// A native baseline behind the same interface, for benchmarks.
    pub fn native(transform: NativeTransform, limits: Limits, concurrency: usize) -> Self {
        Transform {
            inner: Arc::new(TransformInner {
                limits,
                shapes: transform.shapes(),
                backend: Backend::Native {
                    transform,
                    permits: Arc::new(Semaphore::new(concurrency)),
                    concurrency,
                    stats: PoolStats::default(),
                },
            }),
        }
    }

    pub fn shapes(&self) -> Shapes {
        self.inner.shapes
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn pool_stats(&self) -> &PoolStats {
        match &self.inner.backend {
            Backend::Wasm { pool, .. } => pool.stats(),
            Backend::Native { stats, .. } => stats,
        }
    }

    /// Instances idle in the pool, and objects being transformed (or waiting for their
    /// instance to be created).
    pub fn pool_gauges(&self) -> (usize, usize) {
        match &self.inner.backend {
            Backend::Wasm { pool, .. } => pool.gauges(),
            Backend::Native {
                permits,
                concurrency,
                ..
            } => (0, concurrency - permits.available_permits()),
        }
    }

    /// Swapped out for another: keep no instance past the object it serves.
    pub fn retire(&self) {
        if let Backend::Wasm { pool, .. } = &self.inner.backend {
            pool.retire();
        }
    }

    /// Wait for a turn to transform an object: one of the `concurrency` slots.
    pub async fn turn(&self) -> Turn {
        let permit = self.permits().clone().acquire_owned().await;
        Turn(permit.expect("the concurrency semaphore is never closed"))
    }

    /// A turn if one is free now.
    pub fn turn_now(&self) -> Option<Turn> {
        self.permits().clone().try_acquire_owned().ok().map(Turn)
    }

    fn permits(&self) -> &Arc<Semaphore> {
        match &self.inner.backend {
            Backend::Wasm { pool, .. } => pool.permits(),
            Backend::Native { permits, .. } => permits,
        }
    }

    /// Transform a whole object in memory. The component must export `buffered`.
    pub async fn buffered(
        &self,
        data: &[u8],
        object: &ObjectRequest,
    ) -> Result<Vec<u8>, ObjectError> {
        self.buffered_in(self.turn().await, data, object).await
    }

    /// [`Transform::buffered`] in a turn taken beforehand: the server waits for its
    /// turn on the request's task and may run the guest elsewhere.
    pub async fn buffered_in(
        &self,
        turn: Turn,
        data: &[u8],
        object: &ObjectRequest,
    ) -> Result<Vec<u8>, ObjectError> {
        may_begin(
            self.inner.shapes.buffered,
            super::instance::BUFFERED,
            object,
        )?;
        match &self.inner.backend {
            Backend::Wasm { pool, clock, .. } => {
                let call = async |instance: &mut Instance| instance.buffered(data, object).await;
                self.in_instance(pool, clock, turn, call).await
            }
            Backend::Native { transform, .. } => Ok(transform.buffered(data)),
        }
    }

    /// Stream an object through the transform into `output`; returns the bytes
    /// written. The component must export `streaming`. When this returns an error,
    /// whatever reached `output` is partial and must not be delivered as a result.
    pub async fn streaming(
        &self,
        input: InputStream,
        output: mpsc::Sender<Bytes>,
        object: &ObjectRequest,
    ) -> Result<u64, ObjectError> {
        self.streaming_in(self.turn().await, input, output, object)
            .await
    }

    /// [`Transform::streaming`] in a turn taken beforehand.
    pub async fn streaming_in(
        &self,
        turn: Turn,
        input: InputStream,
        output: mpsc::Sender<Bytes>,
        object: &ObjectRequest,
    ) -> Result<u64, ObjectError> {
        may_begin(
            self.inner.shapes.streaming,
            super::instance::STREAMING,
            object,
        )?;
        match &self.inner.backend {
            Backend::Wasm { pool, clock, .. } => {
                let output = OutputStream::new(output);
                let call =
                    async |instance: &mut Instance| instance.streaming(input, output, object).await;
                self.in_instance(pool, clock, turn, call).await
            }
            Backend::Native { transform, .. } => transform.streaming(input, output).await,
        }
    }

    /// Run `call` on an instance lent for `turn`, given back to the pool after.
    async fn in_instance<T>(
        &self,
        pool: &InstancePool,
        clock: &Clock,
        turn: Turn,
        call: impl AsyncFnOnce(&mut Instance) -> Result<T, ObjectError>,
    ) -> Result<T, ObjectError> {
        let _running = clock.running();
        let mut lease = pool.lend(turn.0, || self.new_instance()).await?;
        let result = call(&mut lease.instance).await;
        pool.release(lease);
        result
    }

    async fn new_instance(&self) -> Result<Instance, ObjectError> {
        let Backend::Wasm {
            pre,
            indices,
            config,
            ..
        } = &self.inner.backend
        else {
            unreachable!("only WebAssembly transforms have instances")
        };
        Instance::new(pre, indices, &self.inner.limits, config).await
    }
}

/// Whether a call of an export (`exported`, named `interface`) may begin for
/// `object`: not if its caller went away while it waited for its turn (a streaming
/// call waits in a task of its own, which outlives its caller).
fn may_begin(
    exported: bool,
    interface: &'static str,
    object: &ObjectRequest,
) -> Result<(), ObjectError> {
    if !exported {
        return Err(ObjectError::NotExported(interface));
    }
    if object.abandoned.is_cancelled() {
        return Err(ObjectError::Abandoned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_turn_now_is_one_no_object_waits_for() {
        let limits = Limits {
            max_memory: 1 << 20,
            timeout: Duration::from_secs(1),
            max_output: 1 << 20,
        };
        let transform = Transform::native(NativeTransform::Echo, limits, 2);
        let first = transform.turn_now().expect("a free turn");
        let second = transform.turn().await;
        assert!(transform.turn_now().is_none(), "both turns taken");
        drop(first);
        let third = transform.turn_now().expect("a turn given back");
        drop((second, third));
    }
}
