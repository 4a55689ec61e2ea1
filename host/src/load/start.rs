//! `ais-wasm bench start`: how long `ais-wasm serve` takes from being spawned to
//! answering `GET /health` with 200, per component: once with an empty compile cache
//! (it compiles), then again and again from the cache, as a restarted pod does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::process::{HEALTH_POLL, ServerCommand, ServerProcess, ServerSpec};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Component files (.wasm) to start `serve` with.
    #[arg(required = true)]
    pub components: Vec<PathBuf>,
    /// Starts from the compile cache per component, after the one that compiles.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// How long one start may take.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub start_timeout: Duration,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// One component's starts, in milliseconds.
#[derive(Serialize)]
struct Starts {
    component: String,
    size_bytes: u64,
    /// With an empty compile cache.
    cold_ms: f64,
    /// From the cache the cold start filled, in the order they ran.
    cached_ms: Vec<f64>,
}

/// The target's URL the server is given: nothing is transformed, so it is never
/// called, but `serve` refuses to start without one.
const UNUSED_TARGET: &str = "http://127.0.0.1:9/v1/etl/_object/bench-start/unused";

pub async fn run(args: StartArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(
        !args.start_timeout.is_zero(),
        "--start-timeout must be more than 0s: it is how long one start may take"
    );
    let scratch = tempfile::tempdir()?;
    let mut results = Vec::new();
    for (index, path) in args.components.iter().enumerate() {
        let size_bytes = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let cache = scratch.path().join(format!("cache-{index}"));
        let spec = ServerSpec {
            command: ServerCommand::Component(path.clone()),
            target_url: UNUSED_TARGET.into(),
            workers: None,
            start_timeout: args.start_timeout,
            log: scratch.path().join(format!("server-{index}.log")),
            env: vec![("ETL_WASM_CACHE_DIR".into(), cache.display().to_string())],
        };
        let mut starts = Vec::with_capacity(args.runs + 1);
        for _ in 0..=args.runs {
            // Dropping the server stops it before the next start.
            let server = ServerProcess::start(&spec).await?;
            starts.push(server.ready_after.as_secs_f64() * 1e3);
        }
        let cold_ms = starts.remove(0);
        results.push(Starts {
            component: path.file_name().map_or_else(
                || path.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            ),
            size_bytes,
            cold_ms,
            cached_ms: starts,
        });
    }

    println!(
        "| component | size | cold start ms | from the cache ms, median | slowest |\n\
         |---|---|---|---|---|"
    );
    for starts in &results {
        let mut cached = starts.cached_ms.clone();
        cached.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.1} KiB | {:.0} | {:.0} | {:.0} |",
            starts.component,
            starts.size_bytes as f64 / 1024.0,
            starts.cold_ms,
            cached[cached.len() / 2],
            cached[cached.len() - 1],
        );
    }
    println!(
        "\nFrom spawning `ais-wasm serve --component FILE` to the first 200 from GET /health \
         (polled every {} ms): cold with an empty compile cache, then {} starts from the \
         cache it filled.",
        HEALTH_POLL.as_millis(),
        args.runs
    );
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&results)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
