//! `ais-wasm bench soak`: many objects of mixed sizes over every transport against
//! one server, every output verified byte for byte; it fails unless there were no
//! errors and the server's resident memory and open file descriptors are flat at
//! the end (memory over the second half of the soak, files from the warm-up on).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytesize::ByteSize;

use super::driver::{Driver, TARGET_WS_FRAME};
use super::process::{ServerCommand, ServerProcess, ServerSpec, tree_usage};
use super::target::Target;
use super::{Corpus, Stop, Transport, Verify, Workload};

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// The component `serve` runs.
    #[arg(long)]
    pub component: PathBuf,
    /// Objects in all, spread evenly over the transports.
    #[arg(long, default_value_t = 100_000)]
    pub objects: u64,
    /// Objects of the warm-up, after which memory and descriptors are measured.
    #[arg(long, default_value_t = 1_000)]
    pub warmup_objects: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Object sizes, mixed within every transport.
    #[arg(long, value_delimiter = ',', default_value = "1KiB,64KiB,1MiB")]
    pub sizes: Vec<ByteSize>,
    /// Transports to drive.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = super::ALL_TRANSPORTS
    )]
    pub transports: Vec<Transport>,
    /// The transform the component implements, to check every output against.
    #[arg(long, default_value = "echo")]
    pub verify: Verify,
    /// NUM_WORKERS for the server.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Resident memory the server may gain between the warm-up and the end.
    #[arg(long, default_value = "16MiB")]
    pub max_rss_growth: ByteSize,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.transports.is_empty(), "give at least one transport");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.objects > 0, "--objects must be at least 1");
    let mut corpus = Corpus::new(args.verify)?;
    for size in &args.sizes {
        corpus.add_sized(size.as_u64(), 2)?;
    }
    let target = Arc::new(Target::start().await?);
    for object in corpus.objects() {
        target.serve(object.clone());
    }
    let log_dir = tempfile::tempdir()?;
    let server = ServerProcess::start(&ServerSpec {
        command: ServerCommand::Component(args.component.clone()),
        target_url: target.etl_url(),
        workers: args.workers,
        start_timeout: Duration::from_secs(60),
        log: log_dir.path().join("server.log"),
        env: Vec::new(),
    })
    .await?;
    let driver = Arc::new(Driver::new(
        server.addr,
        target.clone(),
        Duration::from_secs(60),
        TARGET_WS_FRAME,
    ));
    let objects = corpus.objects().to_vec();
    let round = |count: u64| {
        let per_transport = count.div_ceil(args.transports.len() as u64).max(1);
        let objects = objects.clone();
        args.transports.iter().map(move |&transport| Workload {
            transport,
            objects: objects.clone(),
            concurrency: args.concurrency,
            warmup: Duration::ZERO,
            stop: Stop::Objects(per_transport),
        })
    };

    let mut errors = 0;
    for workload in round(args.warmup_objects) {
        errors += driver
            .run(&workload, || server.snapshot())
            .await
            .recorded
            .errors;
    }
    let before = (rss(&server), open_files(&server));

    // Two halves: pools keep growing towards their steady size for a while (more
    // instances, larger memories after large objects), a leak keeps growing for ever.
    // Memory is judged over the second half only; files over the whole soak.
    let started = Instant::now();
    let (mut verified, mut samples, mut middle) = (0, Vec::new(), before);
    for half in [args.objects / 2, args.objects - args.objects / 2] {
        middle = (rss(&server), open_files(&server));
        for workload in round(half) {
            let outcome = driver.run(&workload, || server.snapshot()).await;
            println!(
                "{:<17} {:>8} objects verified, {} errors",
                workload.transport.name(),
                outcome.recorded.objects,
                outcome.recorded.errors
            );
            verified += outcome.recorded.objects;
            errors += outcome.recorded.errors;
            samples.extend(outcome.recorded.error_samples);
        }
    }
    let elapsed = started.elapsed();
    let after = (rss(&server), open_files(&server));

    let growth = after.0.saturating_sub(middle.0);
    let flat_memory = growth <= args.max_rss_growth.as_u64();
    let flat_files = after.1 <= before.1 + 2;
    println!(
        "\n{verified} objects verified in {:.1} s ({:.0}/s), {errors} errors; server RSS {} -> {} \
         -> {} (second half +{}, limit +{}), open files (not sockets) {} -> {}",
        elapsed.as_secs_f64(),
        verified as f64 / elapsed.as_secs_f64(),
        ByteSize(before.0),
        ByteSize(middle.0),
        ByteSize(after.0),
        ByteSize(growth),
        args.max_rss_growth,
        before.1,
        after.1,
    );
    for sample in samples.iter().take(5) {
        println!("error: {sample}");
    }
    let passed = errors == 0 && flat_memory && flat_files;
    println!(
        "{}",
        if passed {
            "soak: passed"
        } else {
            "soak: FAILED"
        }
    );
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn rss(server: &ServerProcess) -> u64 {
    tree_usage(server.pid()).map_or(0, |usage| usage.rss)
}

/// Open descriptors other than sockets: the number of connections in keep-alive
/// pools rises and falls with the load, while a leaked file or pipe only rises.
fn open_files(server: &ServerProcess) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", server.pid())) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|link| !link.to_string_lossy().starts_with("socket:"))
        })
        .count()
}
