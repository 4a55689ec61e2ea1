//! The serving threads: single-threaded runtimes, each tracking its share of time
//! at work through its park and unpark hooks, which decides where WebSocket
//! sessions go (`protocol/server.rs`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// This thread's index among its server's serving threads, if it is one.
    static SERVING: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The serving threads of one server.
pub struct Threads {
    members: Vec<Member>,
}

struct Member {
    runtime: Handle,
    activity: Arc<Activity>,
    share: Mutex<Sample>,
}

const TOO_MANY: &str = "cannot start the serving threads: lower \
     --serve-threads/ETL_WASM_SERVE_THREADS, or raise the process's limits (open files, \
     threads)";

/// A serving thread's runtime until its thread takes it. Should the threads not all
/// start, those not taken are dropped here, in the async code that starts them,
/// where dropping a runtime the usual way (blocking) panics.
struct Unstarted(Option<tokio::runtime::Runtime>);

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Ends the serving threads when dropped, and with them every task still on them.
pub struct Stop {
    _senders: Vec<oneshot::Sender<()>>,
}

impl Threads {
    /// Start `count` threads (at least one), named `serve-0` and on.
    pub fn start(count: usize) -> anyhow::Result<(Arc<Threads>, Stop)> {
        let mut runtimes = Vec::new();
        let mut members = Vec::new();
        for _ in 0..count.max(1) {
            let activity = Arc::new(Activity::default());
            let (unparked, parking) = (activity.clone(), activity.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_unpark(move || unparked.unparked())
                .on_thread_park(move || parking.parking())
                .build()
                .context("starting a serving thread's runtime")
                .context(TOO_MANY)?;
            members.push(Member {
                runtime: runtime.handle().clone(),
                share: Mutex::new(Sample::new(&activity)),
                activity: activity.clone(),
            });
            runtimes.push((Unstarted(Some(runtime)), activity));
        }
        let mut stops = Vec::new();
        for (index, (mut runtime, activity)) in runtimes.into_iter().enumerate() {
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("serve-{index}"))
                .spawn(move || {
                    let runtime = runtime.0.take().expect("a runtime not yet started");
                    SERVING.set(Some(index));
                    // At work from the start: tasks spawned before the thread first
                    // parks run before any unpark would mark it so.
                    activity.unparked();
                    let _ = runtime.block_on(stopped);
                })
                .context("starting a serving thread")
                .context(TOO_MANY)?;
            stops.push(stop);
        }
        let threads = Arc::new(Threads { members });
        Ok((threads, Stop { _senders: stops }))
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub fn runtime(&self, index: usize) -> &Handle {
        &self.members[index].runtime
    }

    /// The thread's share of time at work, 0 to 1, from its last sample to now if
    /// that is at least 50 ms, else over the window before.
    pub fn share(&self, index: usize) -> f64 {
        let member = &self.members[index];
        let mut last = member.share.lock().unwrap_or_else(|e| e.into_inner());
        last.update(&member.activity)
    }
}

/// The index of the current thread among its server's serving threads, if it is one.
pub fn current() -> Option<usize> {
    SERVING.get()
}

/// One thread's time at work, read from other threads.
struct Activity {
    origin: Instant,
    /// Nanoseconds at work in the stretches that have ended.
    ended: AtomicU64,
    /// When the current stretch began, in nanoseconds since `origin` plus one; 0
    /// while parked.
    began: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            ended: AtomicU64::new(0),
            began: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// How long the current stretch has lasted by `now`, if the thread is in one.
    fn stretch(&self, now: Instant) -> Option<Duration> {
        match self.began.load(Ordering::Relaxed) {
            0 => None,
            began => Some(
                now.duration_since(self.origin)
                    .saturating_sub(Duration::from_nanos(began - 1)),
            ),
        }
    }

    /// All the time the thread has been at work by `now`, the current stretch included.
    fn total(&self, now: Instant) -> Duration {
        let ended = Duration::from_nanos(self.ended.load(Ordering::Relaxed));
        ended + self.stretch(now).unwrap_or_default()
    }

    fn unparked(&self) {
        let began = as_nanos(self.origin.elapsed()) + 1;
        self.began.store(began, Ordering::Relaxed);
    }

    fn parking(&self) {
        if let Some(stretch) = self.stretch(Instant::now()) {
            self.ended.fetch_add(as_nanos(stretch), Ordering::Relaxed);
        }
        self.began.store(0, Ordering::Relaxed);
    }
}

fn as_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A thread's share of time at work over its last window.
struct Sample {
    at: Instant,
    total: Duration,
    share: f64,
}

impl Sample {
    /// Windows shorter than this keep the share of the window before: too short a
    /// window says whether the thread is in a stretch, not how much it works.
    const WINDOW: Duration = Duration::from_millis(50);

    fn new(activity: &Activity) -> Sample {
        let at = Instant::now();
        Sample {
            at,
            total: activity.total(at),
            share: 0.0,
        }
    }

    fn update(&mut self, activity: &Activity) -> f64 {
        let at = Instant::now();
        let window = at.duration_since(self.at);
        if window >= Self::WINDOW {
            let total = activity.total(at);
            let worked = total.saturating_sub(self.total);
            self.share = (worked.as_secs_f64() / window.as_secs_f64()).min(1.0);
            (self.at, self.total) = (at, total);
        }
        self.share
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Sample, Threads, current};

    fn work_for(duration: Duration) {
        let started = Instant::now();
        while started.elapsed() < duration {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn a_threads_share_is_its_time_at_work_over_the_last_window() {
        let (threads, _stop) = Threads::start(2).unwrap();
        assert_eq!(threads.share(0), 0.0, "nothing measured yet");
        let on = |index: usize, work: Duration| {
            threads.runtime(index).spawn(async move {
                work_for(work);
                current()
            })
        };
        assert_eq!(on(1, Duration::ZERO).await.unwrap(), Some(1));
        assert_eq!(current(), None, "a test thread is not a serving thread");
        // Thread 0 works for two windows; thread 1 sleeps through them.
        assert_eq!(on(0, Sample::WINDOW * 2).await.unwrap(), Some(0));
        let (busy, idle) = (threads.share(0), threads.share(1));
        assert!(busy > 0.8, "{busy} after working for two windows");
        assert!(idle < 0.2, "{idle} after sleeping through them");
        assert_eq!(threads.share(0), busy, "a window too short to sample again");
        tokio::time::sleep(Sample::WINDOW * 2).await;
        let rested = threads.share(0);
        assert!(rested < 0.2, "{rested} after a rest of two windows");
    }
}
