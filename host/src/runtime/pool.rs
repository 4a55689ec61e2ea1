//! Instances of one transform, kept initialised between objects. A semaphore bounds
//! how many objects run at once; callers beyond it wait their turn in order.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::InstanceMode;
use super::error::ObjectError;
use super::instance::Instance;

pub(crate) struct InstancePool {
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    mode: InstanceMode,
    stats: PoolStats,
}

/// Counters of an instance pool, for logs and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Instances created (instantiated and initialised).
    pub created: AtomicU64,
    /// Instances discarded: after a trap, a timeout, a limit or memory growth, and
    /// after every object in fresh-instance mode.
    pub discarded: AtomicU64,
}

/// An instance lent to one object; the permit bounds concurrency.
pub(crate) struct Lease {
    pub(crate) instance: Instance,
    _permit: OwnedSemaphorePermit,
}

impl InstancePool {
    pub(crate) fn new(mode: InstanceMode, concurrency: usize, first: Instance) -> Self {
        InstancePool {
            idle: Mutex::new(match mode {
                InstanceMode::Pooled => vec![first],
                InstanceMode::Fresh => Vec::new(),
            }),
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            mode,
            stats: PoolStats {
                created: AtomicU64::new(1),
                discarded: AtomicU64::new(0),
            },
        }
    }

    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Instances idle in the pool, and objects holding a turn (in a guest, or waiting
    /// for their instance to be created).
    pub(crate) fn gauges(&self) -> (usize, usize) {
        let idle = self.idle.lock().unwrap().len();
        (idle, self.concurrency - self.permits.available_permits())
    }

    /// The permits that bound how many objects run at once.
    pub(crate) fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// Lend an idle instance, or create one with `create`, for the turn `permit`.
    pub(crate) async fn lend<F>(
        &self,
        permit: OwnedSemaphorePermit,
        create: impl FnOnce() -> F,
    ) -> Result<Lease, ObjectError>
    where
        F: Future<Output = Result<Instance, ObjectError>>,
    {
        let idle = match self.mode {
            InstanceMode::Pooled => self.idle.lock().unwrap().pop(),
            InstanceMode::Fresh => None,
        };
        let instance = match idle {
            Some(instance) => instance,
            None => {
                let instance = create().await?;
                self.stats.created.fetch_add(1, Ordering::Relaxed);
                instance
            }
        };
        Ok(Lease {
            instance,
            _permit: permit,
        })
    }

    /// Take the instance back, keeping it if it can serve again.
    pub(crate) fn release(&self, lease: Lease) {
        let Lease { instance, _permit } = lease;
        if self.mode == InstanceMode::Pooled && instance.reusable() {
            self.idle.lock().unwrap().push(instance);
        } else {
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}
