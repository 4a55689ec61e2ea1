//! What a cell measured: per-worker [`Recorder`]s merged into a [`Cell`], printed as
//! a Markdown row and serialised to JSON.

use std::time::Duration;

use serde::Serialize;

use super::process::Cpu;
use super::{Transport, size_label};

/// At most this many error messages are kept per recorder (and per cell).
const ERROR_SAMPLES: usize = 5;

/// What one worker saw.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Verified objects, measured part only.
    pub objects: u64,
    /// Their input bytes.
    pub bytes: u64,
    /// Their latencies, microseconds.
    pub latencies_us: Vec<u64>,
    /// Failed requests, warm-up included.
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl Recorder {
    pub fn ok(&mut self, size: u64, latency: Duration) {
        self.objects += 1;
        self.bytes += size;
        self.latencies_us.push(latency.as_micros() as u64);
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(message.into());
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.objects += other.objects;
        self.bytes += other.bytes;
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        for sample in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(sample);
            }
        }
    }
}

/// What the measured part of a cell cost: CPU time, context switches, TCP segments.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// The server's process tree (`None` when it could not be read).
    pub server_cpu: Option<Cpu>,
    /// The same by thread name, most first.
    pub server_threads: Vec<(String, Cpu)>,
    /// This process: client and emulated target.
    pub generator_cpu: Duration,
    /// The rest of the machine's busy time: other processes, and time the
    /// hypervisor gave to other guests.
    pub other_cpu: Option<Duration>,
    /// Context switches on the whole machine.
    pub context_switches: Option<u64>,
    /// TCP segments sent in the network namespace (loopback: each is also received).
    pub tcp_segments: Option<u64>,
}

/// One cell of the matrix: a transport, a size, a concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub transport: &'static str,
    pub size: String,
    pub size_bytes: u64,
    pub concurrency: usize,
    /// Length of the measured part.
    pub seconds: f64,
    pub objects: u64,
    pub bytes: u64,
    pub objects_per_s: f64,
    pub mib_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub server_cpu_s: Option<f64>,
    /// Server CPU seconds per wall-clock second.
    pub server_cores: Option<f64>,
    /// The part of the server's CPU time spent in the kernel, in percent.
    pub server_kernel_pct: Option<f64>,
    pub mib_per_server_cpu_s: Option<f64>,
    /// Peak of the summed RSS of the server's process tree during the cell.
    pub server_peak_rss_bytes: Option<u64>,
    /// The server's CPU time by thread name (summed over its processes), most first;
    /// `(exited)` is what threads that ended used.
    pub server_threads: Vec<ThreadCpu>,
    pub generator_cpu_s: f64,
    pub generator_cores: f64,
    /// CPU seconds per second used by neither the server nor this generator: other
    /// processes and hypervisor steal. High values mean the cell shared the machine.
    pub other_cores: Option<f64>,
    /// Context switches on the whole machine per verified object: how often the
    /// server and the generator slept and woke each other. More per object, less
    /// work per wake, more CPU per object on both sides.
    pub context_switches_per_object: Option<f64>,
    /// TCP segments per verified object, both directions (loopback, and anything
    /// else in the namespace): how much the kernel coalesced the writes.
    pub tcp_segments_per_object: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadCpu {
    pub name: String,
    pub cpu_s: f64,
    pub kernel_s: f64,
}

impl Cell {
    pub fn new(
        transport: Transport,
        size: u64,
        concurrency: usize,
        elapsed: Duration,
        mut recorded: Recorder,
        usage: Usage,
        peak_rss: Option<u64>,
    ) -> Cell {
        recorded.latencies_us.sort_unstable();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let mib = recorded.bytes as f64 / (1024.0 * 1024.0);
        let server_cpu_s = usage.server_cpu.map(|cpu| cpu.total.as_secs_f64());
        let server_kernel_pct = usage
            .server_cpu
            .filter(|cpu| !cpu.total.is_zero())
            .map(|cpu| 100.0 * cpu.kernel.as_secs_f64() / cpu.total.as_secs_f64());
        let generator_cpu_s = usage.generator_cpu.as_secs_f64();
        let objects = recorded.objects;
        let per_object = |count: Option<u64>| {
            count
                .filter(|_| objects > 0)
                .map(|n| n as f64 / objects as f64)
        };
        Cell {
            transport: transport.name(),
            size: size_label(size),
            size_bytes: size,
            concurrency,
            seconds,
            objects: recorded.objects,
            bytes: recorded.bytes,
            objects_per_s: recorded.objects as f64 / seconds,
            mib_per_s: mib / seconds,
            latency_p50_ms: percentile_ms(&recorded.latencies_us, 0.50),
            latency_p99_ms: percentile_ms(&recorded.latencies_us, 0.99),
            latency_max_ms: percentile_ms(&recorded.latencies_us, 1.0),
            errors: recorded.errors,
            error_samples: recorded.error_samples,
            server_cpu_s,
            server_cores: server_cpu_s.map(|cpu| cpu / seconds),
            server_kernel_pct,
            mib_per_server_cpu_s: server_cpu_s.filter(|cpu| *cpu > 0.0).map(|cpu| mib / cpu),
            server_peak_rss_bytes: peak_rss,
            server_threads: usage
                .server_threads
                .into_iter()
                .map(|(name, cpu)| ThreadCpu {
                    name,
                    cpu_s: cpu.total.as_secs_f64(),
                    kernel_s: cpu.kernel.as_secs_f64(),
                })
                .collect(),
            generator_cpu_s,
            generator_cores: generator_cpu_s / seconds,
            other_cores: usage.other_cpu.map(|cpu| cpu.as_secs_f64() / seconds),
            context_switches_per_object: per_object(usage.context_switches),
            tcp_segments_per_object: per_object(usage.tcp_segments),
        }
    }

    /// The cell's row of [`TABLE_HEADER`].
    pub fn row(&self) -> Vec<String> {
        let opt = |value: Option<f64>, digits: usize| {
            value.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
        };
        vec![
            self.transport.to_string(),
            self.size.clone(),
            self.concurrency.to_string(),
            format!("{:.1}", self.objects_per_s),
            format!("{:.1}", self.mib_per_s),
            format!("{:.2}", self.latency_p50_ms),
            format!("{:.2}", self.latency_p99_ms),
            self.errors.to_string(),
            opt(self.server_cores, 2),
            opt(self.server_kernel_pct, 0),
            opt(self.mib_per_server_cpu_s, 1),
            self.server_peak_rss_bytes.map_or_else(
                || "-".to_string(),
                |b| format!("{:.0}", b as f64 / 1048576.0),
            ),
            format!("{:.2}", self.generator_cores),
            opt(self.other_cores, 2),
        ]
    }
}

/// Columns of the Markdown table (see the legend printed under it).
pub const TABLE_HEADER: [&str; 14] = [
    "transport",
    "size",
    "conc",
    "objects/s",
    "MiB/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "srv CPU",
    "srv sys %",
    "MiB/srv-CPU-s",
    "srv RSS MiB",
    "gen CPU",
    "other CPU",
];

/// Widths that fit the usual values, so rows can be printed as cells finish.
const WIDTHS: [usize; 14] = [16, 6, 4, 9, 8, 8, 8, 6, 7, 9, 13, 11, 7, 9];

pub const TABLE_LEGEND: &str = "objects/s and MiB/s: verified objects (input bytes) per second of the \
measured part; p50/p99: latency from the first byte sent to the last byte received (WebSocket: \
replies come in order per connection); errors: failed or mismatched requests, warm-up included; \
srv CPU: the server's process tree, CPU seconds per second (cores); srv sys %: the part of that \
CPU time spent in the kernel (system calls and the loopback network stack); MiB/srv-CPU-s: input \
MiB per server CPU second; srv RSS MiB: peak of the tree's summed RSS during the cell; gen CPU: \
this load generator (client and emulated target), cores; other CPU: the rest of the machine's busy \
time (other processes, hypervisor steal), cores: well above 0, the cell shared the machine. The \
JSON report also splits srv CPU by thread name and counts the machine's context switches and TCP \
segments per object.";

/// One Markdown table line, cells padded to the usual widths.
pub fn table_line(cells: &[String]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(WIDTHS)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect();
    format!("| {} |", padded.join(" | "))
}

pub fn table_header() -> String {
    let header = table_line(&TABLE_HEADER.map(String::from));
    let rule: Vec<String> = WIDTHS.iter().map(|w| "-".repeat(w + 2)).collect();
    format!("{header}\n|{}|", rule.join("|"))
}

/// The `q` quantile (nearest rank) of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&us, 0.5), 50.0);
        assert_eq!(percentile_ms(&us, 0.99), 99.0);
        assert_eq!(percentile_ms(&us, 1.0), 100.0);
        assert_eq!(percentile_ms(&[7000], 0.99), 7.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}
