//! `ais-wasm serve`: the ETL container. Loads the component (compiled, linked and
//! initialised before the port opens, so a listening server is a ready one), then
//! serves the AIStore ETL protocol until SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::etl::Etl;
use crate::protocol::{AppState, app};
use crate::runtime::{Runtime, Transform};
use crate::sink::DirectPut;

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let client = args.outbound.client()?;
    let config = args.runtime.runtime_config()?;
    let fqn_policy = args.fqn_policy()?;
    match fqn_policy.roots() {
        [] => tracing::info!("etl_fqn: any AIStore object path (ETL_FQN_ROOTS is not set)"),
        roots => tracing::info!(
            ?roots,
            "etl_fqn: AIStore object paths under these roots only"
        ),
    }
    // Kept alive while serving: it owns the engine and its epoch ticker.
    let runtime = Runtime::new(config.clone())?;
    let transform = match args.native {
        Some(native) => Transform::native(native, config.limits, config.concurrency),
        None => {
            let wasm = args.component.fetch(&client).await?;
            let (transform, _report) = runtime
                .load(wasm, args.runtime.init_config()?)
                .await
                .with_context(|| args.component.describe())?;
            transform
        }
    };

    let guests = GuestRuntime::new()?;

    let target_path = match &args.target_url {
        Some(target) => Some(
            url::Url::parse(target)
                .with_context(|| "AIS_TARGET_URL is not a URL".to_string())?
                .path()
                .to_string(),
        ),
        None => {
            tracing::warn!(
                "AIS_TARGET_URL is not set: hpull without etl_fqn and direct puts to targets will fail"
            );
            None
        }
    };
    let state = AppState {
        etl: Etl {
            transform,
            direct_put: DirectPut {
                client: client.clone(),
                retries: args.direct_put_retries,
                backoff: args.direct_put_backoff,
            },
            target_path,
            direct_fqn: args
                .direct_fqn
                .as_deref()
                .is_some_and(crate::outbound::truthy),
            guests: guests.handle(),
        },
        target_url: args.target_url.clone(),
        client,
        download_client: reqwest::Client::builder()
            .build()
            .context("building the download client")?,
        fqn_policy: std::sync::Arc::new(fqn_policy),
    };

    // Installed before the port opens: SIGUSR1 would otherwise end the process.
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("installing the SIGUSR1 handler")?;
    let transform = state.etl.transform.clone();
    let _stats = AbortOnDrop(tokio::spawn(log_pool_stats_on_signal(
        usr1,
        transform.clone(),
    )));

    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    // A plain line on stdout: scripts and tests wait for it.
    println!("listening on http://{address}");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .into_future();
    let mut server = tokio::spawn(server);
    tokio::select! {
        result = &mut server => {
            result.context("the server task failed")?.context("the server failed")?;
            return Ok(ExitCode::FAILURE);
        }
        signal = shutdown_signal() => tracing::info!(signal, "shutting down: no new connections"),
    }
    let _ = stop.send(());
    match tokio::time::timeout(args.shutdown_timeout, server).await {
        Ok(_) => tracing::info!("in-flight requests finished"),
        Err(_) => tracing::warn!(
            bound = ?args.shutdown_timeout,
            "in-flight requests did not finish in time; exiting anyway"
        ),
    }
    log_pool_stats(&transform);
    Ok(ExitCode::SUCCESS)
}

/// One line with the instance pool's counters. `live` (created and not yet
/// discarded: idle plus in use) stays at most `NUM_WORKERS` once requests are
/// done; more means instances leak.
fn log_pool_stats(transform: &Transform) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = transform.pool_stats();
    let (created, discarded) = (stats.created.load(Relaxed), stats.discarded.load(Relaxed));
    tracing::info!(
        created,
        discarded,
        live = created.saturating_sub(discarded),
        "instance pool"
    );
}

/// `kill -USR1 <pid>` logs the pool's counters. A log line rather than an endpoint:
/// every path is an object name (§4.6), so any endpoint would shadow one.
async fn log_pool_stats_on_signal(mut signal: tokio::signal::unix::Signal, transform: Transform) {
    while signal.recv().await.is_some() {
        log_pool_stats(&transform);
    }
}

/// Aborts the task when dropped, so that it does not outlive `serve`.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime guests run on, apart from the one serving HTTP.
///
/// - A guest gives its worker thread back only at epoch ticks (every 10 ms), and a
///   tokio worker polls for I/O only every 61 task polls: with every worker of a
///   shared runtime inside a guest, new connections and `/health` waited about
///   0.6 s, longer on a loaded node. §8.4 requires `/health` to answer
///   independently of transform load.
/// - It is shut down without waiting for its threads: a shared runtime with every
///   worker inside a spinning guest never finished dropping, so the process
///   outlived SIGTERM and the shutdown timeout.
struct GuestRuntime(Option<tokio::runtime::Runtime>);

impl GuestRuntime {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("guest")
            .enable_all()
            .build()
            .context("starting the guests' runtime")?;
        Ok(GuestRuntime(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("running").handle().clone()
    }
}

impl Drop for GuestRuntime {
    fn drop(&mut self) {
        // Dropped from async code, where a blocking shutdown is not allowed.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
