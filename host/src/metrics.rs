//! Prometheus metrics at `GET /metrics`: objects by transport and outcome, bytes in
//! and out, latency per transport, requests in flight, the instance pool,
//! compile-cache hits, hot swaps, WebSocket sessions moved between serving threads
//! and the disk space WebSocket replies take. Recorded by the protocol layer, which
//! knows the transport; the pool's figures and the replies' space are read when
//! scraped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::etl::EtlError;
use crate::held::{HeldError, SpillSpace};
use crate::runtime::{Abort, CacheStatus, Fault, ObjectError, Transform};

/// How a request reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `PUT /<path>`.
    Hpush,
    /// `GET /<path>`.
    Hpull,
    /// A `/ws` message.
    Ws,
    /// `POST /download`.
    Download,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Hpush => "hpush",
            Transport::Hpull => "hpull",
            Transport::Ws => "ws",
            Transport::Download => "download",
        }
    }
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ObjectLabels {
    transport: Transport,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabels {
    transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    objects: Family<ObjectLabels, Counter>,
    bytes_in: Family<TransportLabels, Counter>,
    bytes_out: Family<TransportLabels, Counter>,
    latency: Family<TransportLabels, Histogram>,
    in_flight: Gauge,
    instances: Family<StateLabels, Gauge>,
    instances_created: Counter,
    instances_discarded: Counter,
    cache: Family<ResultLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    ws_sessions_moved: Counter,
    reply_space: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ais_wasm");
        let objects = Family::<ObjectLabels, Counter>::default();
        registry.register(
            "objects",
            "Objects handled, by transport and outcome (ok, bad_input, failed, trap, timeout, memory, output_limit, source, direct_put, host)",
            objects.clone(),
        );
        let bytes_in = Family::<TransportLabels, Counter>::default();
        registry.register("bytes_in", "Bytes of objects read", bytes_in.clone());
        let bytes_out = Family::<TransportLabels, Counter>::default();
        registry.register("bytes_out", "Bytes of results delivered", bytes_out.clone());
        let latency = Family::<TransportLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
        });
        registry.register(
            "object_duration_seconds",
            "Time from request to outcome",
            latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Object requests received and not yet answered, those waiting for a turn included",
            in_flight.clone(),
        );
        let instances = Family::<StateLabels, Gauge>::default();
        registry.register(
            "instances",
            "Instances by state (idle in the pool, busy with an object)",
            instances.clone(),
        );
        let instances_created = Counter::default();
        registry.register(
            "instances_created",
            "Instances created (instantiated and initialised)",
            instances_created.clone(),
        );
        let instances_discarded = Counter::default();
        registry.register(
            "instances_discarded",
            "Instances discarded (trap, timeout, limit, memory growth, fresh mode)",
            instances_discarded.clone(),
        );
        let cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "compile_cache",
            "Component loads by compile-cache result (hit, miss)",
            cache.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Hot swaps of the component (ok, failed)",
            reloads.clone(),
        );
        let ws_sessions_moved = Counter::default();
        registry.register(
            "ws_sessions_moved",
            "WebSocket sessions moved off a saturated serving thread to one with time to spare",
            ws_sessions_moved.clone(),
        );
        let reply_space = Gauge::default();
        registry.register(
            "reply_space_bytes",
            "Temporary disk space taken by WebSocket replies held in files (at most --reply-space)",
            reply_space.clone(),
        );
        Metrics {
            registry,
            objects,
            bytes_in,
            bytes_out,
            latency,
            in_flight,
            instances,
            instances_created,
            instances_discarded,
            cache,
            reloads,
            ws_sessions_moved,
            reply_space,
        }
    }
}

impl Metrics {
    /// A request received: counted in flight until the guard is dropped or handed
    /// to [`Metrics::object`] with its outcome.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// One object's outcome. Its request leaves `requests_in_flight` first, so that
    /// no request is ever counted there and in `objects_total` at once. (A request
    /// refused before it reached the transform, the component still loading, only
    /// passes through `requests_in_flight`.)
    pub fn object(
        &self,
        in_flight: InFlight,
        transport: Transport,
        result: Result<(), &EtlError>,
        bytes_in: u64,
        elapsed: Duration,
    ) {
        drop(in_flight);
        let outcome = match result {
            Ok(()) => "ok",
            Err(error) => outcome(error),
        };
        self.objects
            .get_or_create(&ObjectLabels { transport, outcome })
            .inc();
        let labels = TransportLabels { transport };
        self.bytes_in.get_or_create(&labels).inc_by(bytes_in);
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Bytes of a result as they are delivered (streamed results count chunk by chunk).
    pub fn bytes_out(&self, transport: Transport, bytes: u64) {
        self.bytes_out
            .get_or_create(&TransportLabels { transport })
            .inc_by(bytes);
    }

    /// A component was loaded (at start-up or by a hot swap).
    pub fn loaded(&self, cache: CacheStatus) {
        let result = if cache == CacheStatus::Hit {
            "hit"
        } else {
            "miss"
        };
        self.cache.get_or_create(&ResultLabels { result }).inc();
    }

    /// A WebSocket session moved to another serving thread.
    pub fn ws_session_moved(&self) {
        self.ws_sessions_moved.inc();
    }

    /// A hot swap was attempted.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The text exposition, with the current figures of the pool and of the replies'
    /// disk space.
    pub fn render(&self, transform: Option<&Transform>, reply_space: &SpillSpace) -> String {
        self.reply_space
            .set(i64::try_from(reply_space.in_use()).unwrap_or(i64::MAX));
        if let Some(transform) = transform {
            let (idle, busy) = transform.pool_gauges();
            self.instances
                .get_or_create(&StateLabels { state: "idle" })
                .set(idle as i64);
            self.instances
                .get_or_create(&StateLabels { state: "busy" })
                .set(busy as i64);
            let stats = transform.pool_stats();
            self.instances_created
                .inner()
                .store(stats.created.load(Ordering::Relaxed), Ordering::Relaxed);
            self.instances_discarded
                .inner()
                .store(stats.discarded.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// One request in flight; see [`Metrics::in_flight`].
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The `outcome` label of a failure: which of the three parties failed, and how.
fn outcome(error: &EtlError) -> &'static str {
    match error {
        EtlError::Transform(object) => match (object.fault(), object) {
            (_, ObjectError::Aborted(Abort::Timeout(_))) => "timeout",
            (_, ObjectError::Aborted(Abort::MemoryLimit { .. })) => "memory",
            (_, ObjectError::Aborted(Abort::OutputLimit { .. })) => "output_limit",
            (_, ObjectError::Aborted(Abort::Trap { .. })) => "trap",
            (Fault::BadInput, _) => "bad_input",
            (Fault::Guest, _) => "failed",
            (Fault::Host, _) => "host",
        },
        // A WebSocket reply outgrew its room, as a buffered result its limit.
        EtlError::Held(HeldError::TooLarge { .. } | HeldError::NoSpace { .. }) => "output_limit",
        EtlError::Source(_) => "source",
        EtlError::DirectPut(_)
        | EtlError::DirectPutOneShot(_)
        | EtlError::DirectPutExhausted { .. } => "direct_put",
        _ => "host",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In flight plus handled is what the server received, at every moment: the
    /// tests that wait for requests to arrive before a SIGTERM count on it.
    #[test]
    fn a_request_is_in_flight_or_handled_never_both() {
        let metrics = Metrics::default();
        let received = |metrics: &Metrics| -> i64 {
            let text = metrics.render(None, &SpillSpace::new(0));
            text.lines()
                .filter(|l| {
                    l.starts_with("ais_wasm_requests_in_flight ")
                        || l.starts_with("ais_wasm_objects_total{")
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
                .sum()
        };
        let first = metrics.in_flight();
        let second = metrics.in_flight();
        assert_eq!(received(&metrics), 2);
        metrics.object(first, Transport::Hpush, Ok(()), 10, Duration::ZERO);
        assert_eq!(metrics.in_flight.get(), 1);
        assert_eq!(received(&metrics), 2);
        metrics.object(second, Transport::Ws, Ok(()), 10, Duration::ZERO);
        assert_eq!(received(&metrics), 2);
        assert_eq!(metrics.in_flight.get(), 0);
    }
}
