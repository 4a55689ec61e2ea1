//! The engine's epoch, advanced by a plain thread while guests run.
//!
//! A guest is interrupted only when the epoch advances: to yield to its executor, or
//! to stop at its deadline. So the ticker runs whenever a guest may be running (a
//! [`Running`] guard is held around every instantiation and call), and sleeps once a
//! second has passed without one; the next guard wakes it. An idle server otherwise
//! woke 100 times a second, 5 ms of CPU a second on a VM where a wake-up cost 50 µs.
//!
//! A plain thread rather than a tokio timer: a timer would stall exactly when every
//! executor thread is busy running guests, which is when ticks are needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances. A guest yields to the executor at every tick and a
/// deadline is noticed within one tick of passing.
const TICK: Duration = Duration::from_millis(10);

/// Ticks without a guest before the ticker sleeps.
const IDLE_TICKS: u32 = 100;

/// What the ticker and the guards share. Every access is `SeqCst`: a guard raises
/// `running` and then reads `asleep`, the ticker sets `asleep` and then reads
/// `running`, so at least one of them sees the other's write and the ticker never
/// sleeps through a guest.
#[derive(Default)]
struct State {
    /// Guards alive.
    running: AtomicUsize,
    /// Guards ever taken: a call that began and ended between two ticks still counts.
    taken: AtomicU64,
    asleep: AtomicBool,
    stop: AtomicBool,
}

/// Owns the ticker thread; dropping it stops the thread.
pub(crate) struct EpochTicker {
    clock: Arc<Clock>,
    thread: Option<JoinHandle<()>>,
}

/// The handle guests' callers hold, to keep the ticker going.
pub(crate) struct Clock {
    state: Arc<State>,
    ticker: Thread,
}

/// Keeps the epoch advancing while alive.
pub(crate) struct Running<'a>(&'a Clock);

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> EpochTicker {
        EpochTicker::with_idle_ticks(engine, IDLE_TICKS)
    }

    fn with_idle_ticks(engine: Engine, idle_ticks: u32) -> EpochTicker {
        let state = Arc::new(State::default());
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || tick(&engine, &shared, idle_ticks))
            .expect("spawning the epoch thread");
        let clock = Arc::new(Clock {
            state,
            ticker: thread.thread().clone(),
        });
        EpochTicker {
            clock,
            thread: Some(thread),
        }
    }

    pub(crate) fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }
}

fn tick(engine: &Engine, state: &State, idle_ticks: u32) {
    let mut idle = 0;
    let mut taken = state.taken.load(Ordering::SeqCst);
    while !state.stop.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
        engine.increment_epoch();
        let now = state.taken.load(Ordering::SeqCst);
        if state.running.load(Ordering::SeqCst) > 0 || now != taken {
            (idle, taken) = (0, now);
            continue;
        }
        idle += 1;
        if idle < idle_ticks {
            continue;
        }
        state.asleep.store(true, Ordering::SeqCst);
        // A guard taken since is seen here, or sees `asleep` and unparks (a token
        // that makes this park return at once).
        if state.running.load(Ordering::SeqCst) == 0 && !state.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
        state.asleep.store(false, Ordering::SeqCst);
        idle = 0;
    }
}

impl Clock {
    /// Keep the epoch advancing until the guard is dropped: around anything that runs
    /// guest code.
    pub(crate) fn running(&self) -> Running<'_> {
        let state = &self.state;
        state.taken.fetch_add(1, Ordering::SeqCst);
        state.running.fetch_add(1, Ordering::SeqCst);
        if state.asleep.load(Ordering::SeqCst) {
            self.ticker.unpark();
        }
        Running(self)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.state.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.clock.state.stop.store(true, Ordering::SeqCst);
        self.clock.ticker.unpark();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use wasmtime::{Config, Engine, Instance, Module, Store};

    use super::EpochTicker;

    /// `(module (func (export "spin") (loop (br 0))))`: never returns unless the epoch
    /// interrupts it.
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
        0x03, 0x02, 0x01, 0x00, // one function of that type
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop, br 0
    ];

    fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "{what}: not within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs `spin` with a deadline one tick ahead, on its own thread: `true` if the
    /// epoch interrupted it within 10 s.
    fn interrupted(engine: &Engine, module: &Module) -> bool {
        let (engine, module) = (engine.clone(), module.clone());
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut store = Store::new(&engine, ());
            store.set_epoch_deadline(1);
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let spin = instance
                .get_typed_func::<(), ()>(&mut store, "spin")
                .unwrap();
            let _ = sender.send(spin.call(&mut store, ()).is_err());
        });
        receiver.recv_timeout(Duration::from_secs(10)) == Ok(true)
    }

    #[test]
    fn the_ticker_sleeps_when_idle_and_wakes_for_a_guest() {
        let engine = Engine::new(Config::new().epoch_interruption(true)).unwrap();
        let module = Module::new(&engine, SPIN).unwrap();
        let ticker = EpochTicker::with_idle_ticks(engine.clone(), 5);
        let asleep = || ticker.clock().state.asleep.load(Ordering::SeqCst);
        until("asleep once idle", asleep);
        let running = ticker.clock().running();
        assert!(interrupted(&engine, &module), "a guest was not interrupted");
        assert!(!asleep());
        drop(running);
        until("asleep again", asleep);
        drop(ticker);
    }
}
