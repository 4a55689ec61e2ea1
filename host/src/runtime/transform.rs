//! A loaded transform: the compiled component, its pre-linked instance template, the
//! shapes it exports, and its instance pool. Cheap to clone and shared by every
//! request.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use wasmtime::component::InstancePre;

use super::error::ObjectError;
use super::host_io::{InputStream, OutputStream};
use super::instance::{ExportIndices, GuestCtx, Instance};
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

#[derive(Clone)]
pub struct Transform {
    inner: Arc<TransformInner>,
}

struct TransformInner {
    pre: InstancePre<GuestCtx>,
    indices: ExportIndices,
    limits: Limits,
    config: Vec<(String, String)>,
    shapes: Shapes,
    pool: InstancePool,
}

impl Transform {
    pub(crate) fn new(
        pre: InstancePre<GuestCtx>,
        indices: ExportIndices,
        limits: Limits,
        config: Vec<(String, String)>,
        pool: InstancePool,
    ) -> Self {
        let shapes = Shapes {
            buffered: indices.buffered.is_some(),
            streaming: indices.streaming.is_some(),
        };
        Transform {
            inner: Arc::new(TransformInner {
                pre,
                indices,
                limits,
                config,
                shapes,
                pool,
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
        self.inner.pool.stats()
    }

    /// Whether an object of `size` bytes (unknown: `None`) should be streamed.
    pub fn prefers_streaming(&self, size: Option<u64>) -> bool {
        let Shapes {
            buffered,
            streaming,
        } = self.inner.shapes;
        streaming && (!buffered || size.is_none_or(|size| size >= STREAM_AT_OR_ABOVE))
    }

    /// Transform a whole object in memory. The component must export `buffered`.
    pub async fn buffered(
        &self,
        data: &[u8],
        object: &ObjectRequest,
    ) -> Result<Vec<u8>, ObjectError> {
        let mut lease = self.inner.pool.acquire(|| self.new_instance()).await?;
        let result = lease.instance.buffered(data, object).await;
        self.inner.pool.release(lease);
        result
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
        let mut lease = self.inner.pool.acquire(|| self.new_instance()).await?;
        let result = lease
            .instance
            .streaming(input, OutputStream::new(output), object)
            .await;
        self.inner.pool.release(lease);
        result
    }

    async fn new_instance(&self) -> Result<Instance, ObjectError> {
        let inner = &self.inner;
        Instance::new(&inner.pre, &inner.indices, &inner.limits, &inner.config).await
    }
}
