//! `ais-wasm bench engine`: what the runtime costs, beside the same transforms
//! compiled natively. Prints a table; never a pass/fail test.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use md5::Digest;
use tokio::sync::mpsc;

use crate::delivery::read_component_file;
use crate::runtime::{
    InputStream, InstanceMode, Limits, NativeTransform, ObjectError, ObjectRequest, Runtime,
    RuntimeConfig, Transform,
};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// Engine costs: instantiation, per-call overhead, throughput of echo, md5, upper.
    Engine(EngineArgs),
    /// What each component costs: size, compile and cached start, instantiation,
    /// per-object overhead and throughput (compare languages).
    Components(ComponentsArgs),
    /// End to end: start a server (this executable's `serve`, or any command), play
    /// the AIStore target, drive every transport at several sizes and concurrency
    /// levels, verify every byte, measure throughput, latency, CPU and memory.
    Serve(Box<crate::load::bench::ServeBenchArgs>),
    /// Soak a server: many objects of mixed sizes over every transport, every byte
    /// verified; fails on any error or when memory or descriptors grow.
    Soak(Box<crate::load::soak::SoakArgs>),
    /// Start-up: from spawning `serve` to a healthy server, per component, with an
    /// empty compile cache and then from the cache.
    Start(crate::load::start::StartArgs),
}

#[derive(Debug, clap::Args)]
pub struct ComponentsArgs {
    /// Component files (.wasm) to measure.
    #[arg(required = true)]
    pub components: Vec<PathBuf>,
    /// Time spent on each measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub budget: Duration,
}

#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// The echo example component (its buffered export is measured).
    #[arg(long)]
    pub echo: PathBuf,
    /// The md5 example component (buffered).
    #[arg(long)]
    pub md5: PathBuf,
    /// The upper example component (streaming).
    #[arg(long)]
    pub upper: PathBuf,
    /// Time spent on each measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub budget: Duration,
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        BenchWhat::Engine(args) => engine(args).await,
        BenchWhat::Components(args) => components(args).await,
        BenchWhat::Serve(args) => serve(*args).await,
        BenchWhat::Soak(args) => crate::load::soak::run(*args).await,
        BenchWhat::Start(args) => crate::load::start::run(args).await,
    }
}

/// The logic lives in `crate::load`, which a soak test can reuse.
async fn serve(args: crate::load::bench::ServeBenchArgs) -> anyhow::Result<ExitCode> {
    crate::load::bench::run(args).await
}

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A runtime for measuring: generous limits, one object at a time.
/// Limits no benchmark object comes near.
const BENCH_LIMITS: Limits = Limits {
    max_memory: 1 << 30,
    timeout: Duration::from_secs(300),
    max_output: 1 << 30,
};

fn bench_runtime(mode: InstanceMode, cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeConfig {
        limits: BENCH_LIMITS,
        instance_mode: mode,
        concurrency: 1,
        cache_dir,
    })
}

async fn components(args: ComponentsArgs) -> anyhow::Result<ExitCode> {
    let header = [
        "component",
        "size",
        "cold compile",
        "cached start",
        "instantiate+init",
        "per object 1 KiB",
        "1 MiB",
    ];
    let mut rows = Vec::new();
    let (small, large) = (pattern(KIB), pattern(MIB));
    for path in &args.components {
        let wasm = read_component_file(path)?;
        let cache = tempfile::tempdir()?;
        let runtime = |mode| bench_runtime(mode, Some(cache.path().into()));
        let (_, cold) = runtime(InstanceMode::Pooled)?
            .load(wasm.clone(), vec![])
            .await?;
        let (pooled, cached) = runtime(InstanceMode::Pooled)?
            .load(wasm.clone(), vec![])
            .await?;
        let (fresh, _) = runtime(InstanceMode::Fresh)?
            .load(wasm.clone(), vec![])
            .await?;
        let pooled_call = per_call(args.budget, || any_shape(&pooled, &small)).await?;
        let fresh_call = per_call(args.budget, || any_shape(&fresh, &small)).await?;
        let large_call = per_call(args.budget, || any_shape(&pooled, &large)).await?;
        let millis = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let micros = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
        rows.push([
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            format!("{:.1} KiB", wasm.len() as f64 / KIB as f64),
            millis(cold.compile_time),
            millis(cached.compile_time),
            micros(fresh_call.saturating_sub(pooled_call)),
            micros(pooled_call),
            format!("{:.0} MiB/s", 1.0 / large_call.as_secs_f64()),
        ]);
    }
    print_table(&header, &rows);
    println!(
        "\ncold compile: Cranelift with nothing cached; cached start: loading the compile \
         cache's entry; instantiate+init: what a fresh instance adds to each object; per \
         object: a reused instance, 1 KiB in and out; 1 MiB: throughput on 1 MiB objects \
         (through the streaming export when the component has no buffered one)."
    );
    Ok(ExitCode::SUCCESS)
}

/// Whichever shape the server would pick for `data`.
async fn any_shape(transform: &Transform, data: &Bytes) -> Result<(), ObjectError> {
    if transform
        .shapes()
        .prefers_streaming(Some(data.len() as u64))
    {
        streamed(transform, data).await
    } else {
        buffered(transform, data).await
    }
}

async fn engine(args: EngineArgs) -> anyhow::Result<ExitCode> {
    let (pooled, fresh) = (
        bench_runtime(InstanceMode::Pooled, None)?,
        bench_runtime(InstanceMode::Fresh, None)?,
    );
    let (echo, echo_report) = load(&pooled, &args.echo).await?;
    let (md5, _) = load(&pooled, &args.md5).await?;
    let (upper, _) = load(&pooled, &args.upper).await?;
    for (flag, path, exported, shape) in [
        ("--echo", &args.echo, echo.shapes().buffered, "buffered"),
        ("--md5", &args.md5, md5.shapes().buffered, "buffered"),
        (
            "--upper",
            &args.upper,
            upper.shapes().streaming,
            "streaming",
        ),
    ] {
        if !exported {
            bail!(
                "{flag} {}: the component does not export aistore:etl/{shape}@0.1.0, which this \
                 measurement needs; pass the {} example",
                path.display(),
                &flag[2..]
            );
        }
    }
    // The same algorithm compiled into the host, behind the same streaming interface.
    let native_upper = Transform::native(NativeTransform::Upper, BENCH_LIMITS, 1);
    let (echo_fresh, _) = load(&fresh, &args.echo).await?;
    let budget = args.budget;

    let mut table = Table::default();
    let small = pattern(KIB);
    let pooled_call = per_call(budget, || buffered(&echo, &small)).await?;
    let fresh_call = per_call(budget, || buffered(&echo_fresh, &small)).await?;
    let native_call = per_call(budget, || async {
        std::hint::black_box(small.to_vec());
        Ok(())
    })
    .await?;
    table.latency(
        "echo 1 KiB, pooled instance (per object)",
        pooled_call,
        Some(native_call),
    );
    table.latency(
        "echo 1 KiB, fresh instance + init (per object)",
        fresh_call,
        Some(native_call),
    );
    table.latency(
        "  => instantiate + init",
        fresh_call.saturating_sub(pooled_call),
        None,
    );
    table.latency(
        "first instance at load (instantiate + init)",
        echo_report.first_instance_time,
        None,
    );

    for size in [MIB, 64 * MIB] {
        let data = pattern(size);
        let label = if size == MIB { "1 MiB" } else { "64 MiB" };
        let wasm = per_call(budget, || buffered(&echo, &data)).await?;
        let native = per_call(budget, || async {
            std::hint::black_box(data.to_vec());
            Ok(())
        })
        .await?;
        table.throughput(&format!("echo {label} (buffered)"), size, wasm, native);
        let wasm = per_call(budget, || buffered(&md5, &data)).await?;
        let native = per_call(budget, || async {
            std::hint::black_box(hex::encode(md5::Md5::digest(&data)));
            Ok(())
        })
        .await?;
        table.throughput(&format!("md5 {label} (buffered)"), size, wasm, native);
        let wasm = per_call(budget, || streamed(&upper, &data)).await?;
        let native = per_call(budget, || streamed(&native_upper, &data)).await?;
        table.throughput(
            &format!("upper {label} (streaming, 256 KiB chunks)"),
            size,
            wasm,
            native,
        );
    }
    table.print();
    Ok(ExitCode::SUCCESS)
}

async fn load(
    runtime: &Runtime,
    path: &std::path::Path,
) -> anyhow::Result<(Transform, crate::runtime::LoadReport)> {
    let wasm = read_component_file(path)?;
    runtime
        .load(wasm, vec![])
        .await
        .with_context(|| path.display().to_string())
}

fn pattern(size: usize) -> Bytes {
    (0..size)
        .map(|i| b"The quick brown fox jumps over the lazy dog. "[i % 45])
        .collect()
}

async fn buffered(transform: &Transform, data: &[u8]) -> Result<(), ObjectError> {
    let object = ObjectRequest::default();
    std::hint::black_box(transform.buffered(data, &object).await?);
    Ok(())
}

async fn streamed(transform: &Transform, data: &Bytes) -> Result<(), ObjectError> {
    let (sender, mut receiver) = mpsc::channel(4);
    let input = InputStream::new(std::io::Cursor::new(data.clone()), Some(data.len() as u64));
    let drain = async {
        while let Some(chunk) = receiver.recv().await {
            std::hint::black_box(chunk);
        }
    };
    let object = ObjectRequest::default();
    let (result, ()) = tokio::join!(transform.streaming(input, sender, &object), drain);
    result.map(drop)
}

/// The median time of one call, from batches run for about `budget`.
async fn per_call<F, Fut>(budget: Duration, mut call: F) -> Result<Duration, ObjectError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ObjectError>>,
{
    // Warm up, and size a batch to about a tenth of the budget.
    let started = Instant::now();
    call().await?;
    let once = started.elapsed().max(Duration::from_nanos(100));
    let batch = ((budget / 10).as_nanos() / once.as_nanos()).clamp(1, 100_000) as u32;
    let mut samples = Vec::new();
    let deadline = Instant::now() + budget;
    while samples.len() < 3 || (Instant::now() < deadline && samples.len() < 50) {
        let started = Instant::now();
        for _ in 0..batch {
            call().await?;
        }
        samples.push(started.elapsed() / batch);
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn latency(&mut self, what: &str, wasm: Duration, native: Option<Duration>) {
        let micros = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6);
        self.rows.push([
            what.to_string(),
            micros(wasm),
            native.map_or("-".into(), micros),
            native.map_or("-".into(), |n| {
                format!("{:.2}x", wasm.as_secs_f64() / n.as_secs_f64())
            }),
        ]);
    }

    fn throughput(&mut self, what: &str, size: usize, wasm: Duration, native: Duration) {
        let rate = |d: Duration| size as f64 / MIB as f64 / d.as_secs_f64();
        self.rows.push([
            what.to_string(),
            format!("{:.0} MiB/s", rate(wasm)),
            format!("{:.0} MiB/s", rate(native)),
            format!("{:.2}x", rate(wasm) / rate(native)),
        ]);
    }

    fn print(&self) {
        print_table(
            &["measurement", "wasm", "native", "wasm/native"],
            &self.rows,
        );
        println!(
            "\nwasm/native: for times, wasm time over native time (lower is better); for rates, \
             wasm rate over native rate (higher is better). Native runs the same algorithm \
             (md-5 crate, 256 KiB ASCII upper-casing) without the engine."
        );
    }
}

/// A Markdown table, columns padded to their widest cell.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", cells.join(" | "));
    };
    line(header.to_vec());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    println!("|{}|", rule.join("|"));
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
