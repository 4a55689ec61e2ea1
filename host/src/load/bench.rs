//! `ais-wasm bench serve`: a server under test driven end to end over a matrix of
//! transports × sizes × concurrency levels, every byte verified; a Markdown table
//! on stdout (a row per cell as it finishes) and, optionally, JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use serde::Serialize;

use super::driver::Driver;
use super::process::{ServerCommand, ServerProcess, ServerSpec, self_cpu};
use super::stats::{Cell, TABLE_LEGEND, table_header, table_line};
use super::target::Target;
use super::{Corpus, Stop, Transport, Verify, Workload};

#[derive(Debug, clap::Args)]
pub struct ServeBenchArgs {
    /// The component the default server, this executable's `serve`, runs.
    #[arg(long, required_unless_present = "server_cmd")]
    pub component: Option<PathBuf>,
    /// Benchmark this server instead: a command line, split like a shell's, with
    /// `{port}` replaced by the loopback port to listen on (also exported as
    /// ETL_WASM_LISTEN=127.0.0.1:PORT, with AIS_TARGET_URL and NUM_WORKERS).
    #[arg(long, value_name = "COMMAND", conflicts_with = "component")]
    pub server_cmd: Option<String>,
    /// The server's name in the output [default: ais-wasm, or the command's
    /// program name].
    #[arg(long)]
    pub label: Option<String>,
    /// NUM_WORKERS for the server.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Transports to drive.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = super::ALL_TRANSPORTS
    )]
    pub transports: Vec<Transport>,
    /// Object sizes.
    #[arg(long, value_delimiter = ',', default_value = "1KiB,64KiB,1MiB,16MiB")]
    pub sizes: Vec<ByteSize>,
    /// Requests in flight (HTTP connections; WebSocket requests outstanding over
    /// up to 4 connections).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    /// How long each cell is measured.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Measure each cell over this many objects instead of for --duration.
    #[arg(long, value_name = "N")]
    pub objects: Option<u64>,
    /// Unmeasured load before each cell.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// The transform the server runs, to check its output against.
    #[arg(long, default_value = "echo")]
    pub verify: Verify,
    /// Distinct objects per size (each request takes the next).
    #[arg(long, default_value_t = 4)]
    pub distinct: usize,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// How long the server may take to answer GET /health.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub start_timeout: Duration,
    /// How long one request may take before it counts as an error.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Send WebSocket data messages in frames of this size, each written on its
    /// own, as an AIStore target does (gorilla's 4 KiB write buffer); 0 sends each
    /// message as one frame.
    #[arg(long, default_value = "4KiB")]
    pub ws_frame: ByteSize,
    /// Keep the server's stdout and stderr in FILE [default: a temporary file,
    /// shown in part if the server fails].
    #[arg(long, value_name = "FILE")]
    pub server_log: Option<PathBuf>,
}

/// The JSON document.
#[derive(Serialize)]
struct Report {
    tool: &'static str,
    version: &'static str,
    server: ServerReport,
    verify: &'static str,
    machine: Machine,
    settings: Settings,
    cells: Vec<Cell>,
    generator_cpu_s: f64,
    errors: u64,
}

#[derive(Serialize)]
struct ServerReport {
    label: String,
    command: Vec<String>,
    workers: Option<usize>,
    ready_ms: f64,
}

#[derive(Serialize)]
struct Settings {
    duration_s: Option<f64>,
    objects: Option<u64>,
    warmup_s: f64,
    distinct: usize,
    ws_frame: u64,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_bytes: Option<u64>,
    kernel: String,
    load_average_start: String,
    load_average_end: String,
}

impl Machine {
    fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_string()),
            memory_bytes: meminfo
                .lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
                .map(|kib| kib * 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |k| k.trim().to_string()),
            load_average_start: load_average(),
            load_average_end: String::new(),
        }
    }
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(args: ServeBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.concurrency.iter().all(|&c| c > 0),
        "--concurrency levels must be at least 1"
    );
    anyhow::ensure!(args.distinct > 0, "--distinct must be at least 1");
    match args.objects {
        Some(objects) => anyhow::ensure!(objects > 0, "--objects must be at least 1"),
        None => anyhow::ensure!(
            !args.duration.is_zero(),
            "--duration must be more than 0s: it is how long each cell is measured \
             (or give --objects to measure each cell over a number of objects)"
        ),
    }
    for (flag, timeout) in [
        ("--start-timeout", args.start_timeout),
        ("--request-timeout", args.request_timeout),
    ] {
        anyhow::ensure!(!timeout.is_zero(), "{flag} must be more than 0s");
    }
    anyhow::ensure!(
        args.sizes.iter().all(|s| s.as_u64() > 0),
        "sizes must be at least one byte"
    );
    let mut machine = Machine::describe();
    let (command, label) = match (&args.component, &args.server_cmd) {
        (_, Some(line)) => {
            let program = shlex::split(line)
                .and_then(|words| words.into_iter().next())
                .unwrap_or_default();
            let name = std::path::Path::new(&program)
                .file_name()
                .map_or(program.clone(), |n| n.to_string_lossy().into_owned());
            (ServerCommand::Shell(line.clone()), name)
        }
        (Some(component), None) => (
            ServerCommand::Component(component.clone()),
            "ais-wasm".to_string(),
        ),
        (None, None) => anyhow::bail!("give --component or --server-cmd"),
    };
    let label = args.label.clone().unwrap_or(label);

    // The objects, their files, and the target that serves them.
    let mut corpus = Corpus::new(args.verify)?;
    let mut by_size = Vec::new();
    for size in &args.sizes {
        by_size.push((
            size.as_u64(),
            corpus.add_sized(size.as_u64(), args.distinct)?,
        ));
    }
    let target = Arc::new(Target::start().await?);
    for object in corpus.objects() {
        target.serve(object.clone());
    }

    let log_dir = tempfile::tempdir()?;
    let log = args
        .server_log
        .clone()
        .unwrap_or_else(|| log_dir.path().join("server.log"));
    let mut server = ServerProcess::start(&ServerSpec {
        command,
        target_url: target.etl_url(),
        workers: args.workers,
        start_timeout: args.start_timeout,
        log,
        env: Vec::new(),
    })
    .await?;
    println!(
        "# ais-wasm bench serve: {label}\n\nserver: `{}` (pid {}, ready in {:.0} ms{})  \n\
         machine: {} CPUs, {}, load average {}  \nverify: {}; each cell: {} after {:?} of warm-up; \
         {} distinct objects per size; WebSocket data in {}\n",
        server.argv.join(" "),
        server.pid(),
        server.ready_after.as_secs_f64() * 1e3,
        args.workers
            .map_or_else(String::new, |w| format!(", NUM_WORKERS={w}")),
        machine.cpus,
        machine.cpu_model,
        machine.load_average_start,
        args.verify.name(),
        match args.objects {
            Some(n) => format!("{n} objects"),
            None => format!("{:?}", args.duration),
        },
        args.warmup,
        args.distinct,
        match args.ws_frame.0 {
            0 => "one frame per message".to_string(),
            frame => format!("{} frames", ByteSize(frame)),
        },
    );
    println!("{}", table_header());

    let driver = Arc::new(Driver::new(
        server.addr,
        target.clone(),
        args.request_timeout,
        args.ws_frame.0 as usize,
    ));
    let stop = match args.objects {
        Some(n) => Stop::Objects(n),
        None => Stop::After(args.duration),
    };
    let started_cpu = self_cpu();
    let mut cells = Vec::new();
    // Sizes outermost: memory a server keeps after large objects would otherwise
    // count in the peak RSS of every later small-object cell.
    for (size, objects) in &by_size {
        for &transport in &args.transports {
            for &concurrency in &args.concurrency {
                let workload = Workload {
                    transport,
                    objects: objects.clone(),
                    concurrency,
                    warmup: args.warmup,
                    stop,
                };
                server.reset_peak_rss();
                let outcome = driver.run(&workload, || server.snapshot()).await;
                let cell = Cell::new(
                    transport,
                    *size,
                    concurrency,
                    outcome.elapsed,
                    outcome.recorded,
                    outcome.usage,
                    server.peak_rss(),
                );
                println!("{}", table_line(&cell.row()));
                cells.push(cell);
                server.check_running()?;
            }
        }
    }
    machine.load_average_end = load_average();
    let generator_cpu = self_cpu().saturating_sub(started_cpu);
    println!("\n{TABLE_LEGEND}");
    println!(
        "\nload generator: {:.1} CPU seconds in all; load average at the end {}",
        generator_cpu.as_secs_f64(),
        machine.load_average_end
    );
    let errors: u64 = cells.iter().map(|c| c.errors).sum();
    if errors > 0 {
        println!("\nerrors ({errors}):");
        for cell in cells.iter().filter(|c| c.errors > 0) {
            for sample in &cell.error_samples {
                println!(
                    "- {} {} c{}: {sample}",
                    cell.transport, cell.size, cell.concurrency
                );
            }
        }
    }

    let report = Report {
        tool: "ais-wasm bench serve",
        version: env!("CARGO_PKG_VERSION"),
        server: ServerReport {
            label,
            command: server.argv.clone(),
            workers: args.workers,
            ready_ms: server.ready_after.as_secs_f64() * 1e3,
        },
        verify: args.verify.name(),
        machine,
        settings: Settings {
            duration_s: args
                .objects
                .is_none()
                .then_some(args.duration.as_secs_f64()),
            objects: args.objects,
            warmup_s: args.warmup.as_secs_f64(),
            distinct: args.distinct,
            ws_frame: args.ws_frame.0,
        },
        cells,
        generator_cpu_s: generator_cpu.as_secs_f64(),
        errors,
    };
    drop(server);
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {errors} requests failed or returned wrong bytes");
        ExitCode::FAILURE
    })
}
