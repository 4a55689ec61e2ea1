//! Instances of one transform, kept initialised between objects. A semaphore bounds
//! how many objects run at once; callers beyond it wait their turn in order. It is
//! the runtime's, shared by every transform it loads, so that the objects still
//! running on a hot-swapped one count against the same bound.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::InstanceMode;
use super::error::ObjectError;
use super::instance::Instance;

pub(crate) struct InstancePool {
    /// `None` once the pool is retired (swapped out): no new object will come, so
    /// its instances are dropped as their objects end.
    idle: Mutex<Option<Vec<Instance>>>,
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
    /// `permits` holds `concurrency` turns.
    pub(crate) fn new(
        mode: InstanceMode,
        permits: Arc<Semaphore>,
        concurrency: usize,
        first: Instance,
    ) -> Self {
        InstancePool {
            idle: Mutex::new(Some(match mode {
                InstanceMode::Pooled => vec![first],
                InstanceMode::Fresh => Vec::new(),
            })),
            permits,
            concurrency,
            mode,
            stats: PoolStats {
                created: AtomicU64::new(1),
                discarded: AtomicU64::new(0),
            },
        }
    }

    /// Drop the idle instances, and those lent once they come back: the allocator's
    /// slots are sized for the instances of one pool, and swaps may come faster than
    /// the objects still running on the old ones end.
    pub(crate) fn retire(&self) {
        let idle = self.idle.lock().unwrap().take().unwrap_or_default();
        (self.stats.discarded).fetch_add(idle.len() as u64, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Instances idle in the pool, and objects holding a turn (in a guest, or waiting
    /// for their instance to be created).
    pub(crate) fn gauges(&self) -> (usize, usize) {
        let idle = self.idle.lock().unwrap().as_ref().map_or(0, Vec::len);
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
            InstanceMode::Pooled => self.idle.lock().unwrap().as_mut().and_then(Vec::pop),
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
        if self.mode == InstanceMode::Pooled
            && instance.reusable()
            && let Some(idle) = &mut *self.idle.lock().unwrap()
        {
            idle.push(instance);
        } else {
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}
