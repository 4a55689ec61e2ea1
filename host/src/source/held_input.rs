//! A budget of input bytes held whole, read and not yet transformed: one WebSocket
//! connection's, or the whole server's (`--held-input`), which WebSocket messages,
//! HTTP bodies and objects fetched from the target share. Past it, no more is read
//! until a transform finishes, and TCP pushes back on the sender.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct HeldInput {
    limit: u32,
    permits: Arc<Semaphore>,
    /// Whoever has to wait for bytes waits holding this, so that only one waits at a
    /// time. A semaphore hands released bytes to its first waiter, so a second waiter
    /// holding some of them could otherwise wait for the first, and the first for it.
    waiting: Arc<Mutex<()>>,
}

/// Bytes taken from a [`HeldInput`], given back when dropped.
#[derive(Default)]
pub struct Share(Option<OwnedSemaphorePermit>);

impl HeldInput {
    pub fn new(limit: u32) -> HeldInput {
        HeldInput {
            limit,
            permits: Arc::new(Semaphore::new(limit as usize)),
            waiting: Arc::default(),
        }
    }

    /// Whether no share of the budget is taken.
    pub fn is_untouched(&self) -> bool {
        self.permits.available_permits() == self.limit as usize
    }

    /// Takes `bytes`, or all of the budget when they are more, waiting for them.
    pub async fn take(&self, bytes: usize) -> Share {
        let mut share = Share::default();
        self.cover(&mut share, bytes).await;
        share
    }

    /// Grows `share` to cover `bytes` in all (or all of the budget), as what it holds
    /// grows.
    pub async fn cover(&self, share: &mut Share, bytes: usize) {
        let held = share.0.as_ref().map_or(0, |permit| permit.num_permits());
        let wanted = bytes.min(self.limit as usize);
        if wanted <= held {
            return;
        }
        match self
            .permits
            .clone()
            .try_acquire_many_owned((wanted - held) as u32)
        {
            Ok(more) => match &mut share.0 {
                Some(permit) => permit.merge(more),
                None => share.0 = Some(more),
            },
            Err(_) => {
                // A share that waits holds nothing (what it held goes back, and it
                // waits for all of it at once): one that held some while it waited
                // might be waiting for the waiter.
                drop(share.0.take());
                let _alone = self.waiting.lock().await;
                let all = self.permits.clone().acquire_many_owned(wanted as u32).await;
                *share = Share(Some(all.expect("the semaphore is never closed")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn available(budget: &HeldInput) -> usize {
        budget.permits.available_permits()
    }

    fn held(share: &Share) -> usize {
        share.0.as_ref().map_or(0, |permit| permit.num_permits())
    }

    #[tokio::test]
    async fn a_share_is_given_back_when_dropped_and_never_exceeds_the_budget() {
        let budget = HeldInput::new(100);
        let share = budget.take(30).await;
        assert_eq!(available(&budget), 70);
        assert!(!budget.is_untouched());
        let whole = tokio::time::timeout(Duration::from_millis(50), budget.take(1000)).await;
        assert!(whole.is_err(), "more than is left waits");
        drop(share);
        let whole = budget.take(1000).await;
        assert_eq!(available(&budget), 0);
        drop(whole);
        assert_eq!(available(&budget), 100);
        assert!(budget.is_untouched());
    }

    /// Two shares growing, each while the other holds part of the budget: the one
    /// that cannot grow gives back what it held and waits for all of it, so neither
    /// waits for the other.
    #[tokio::test]
    async fn shares_growing_together_do_not_wait_for_each_other() {
        let budget = HeldInput::new(100);
        let shares = [budget.take(60).await, budget.take(40).await];
        let growing = shares.into_iter().map(|mut share| {
            let budget = budget.clone();
            tokio::spawn(async move {
                let grown = held(&share) + 50;
                budget.cover(&mut share, grown).await;
                held(&share)
            })
        });
        let grown =
            tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(growing))
                .await
                .expect("neither share waits for the other");
        let grown: Vec<usize> = grown.into_iter().map(Result::unwrap).collect();
        assert_eq!(grown, [100, 90]);
        assert_eq!(available(&budget), 100);
    }
}
