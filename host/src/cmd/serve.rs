//! `ais-wasm serve`: the ETL container. Opens the port, loads the component (while
//! `/health` answers 503), then serves the AIStore ETL protocol until SIGTERM.
//! SIGHUP (or `POST /admin/reload`) swaps in the component its source now holds,
//! after validating it fully; in-flight objects finish on the old one.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::delivery::ComponentArgs;
use crate::etl::{Etl, Pace};
use crate::metrics::Metrics;
use crate::protocol::{Admin, AppState, app};
use crate::runtime::{Runtime, Transform};
use crate::sink::DirectPut;

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let clients = crate::outbound::Clients::new(&args.outbound)?;
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
    let runtime = Arc::new(Runtime::new(config.clone())?);
    let guests = GuestRuntime::new()?;
    let target_path = match &args.target_url {
        Some(target) => {
            // Objects' names are appended to it: a query or fragment would take them.
            let url = url::Url::parse(target)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .filter(|url| url.query().is_none() && url.fragment().is_none())
                .context(
                    "AIS_TARGET_URL must be an http or https URL with neither query nor \
                     fragment, as AIStore sets it: http://HOST:PORT/v1/etl/_object/NAME/SECRET",
                )?;
            Some(url.path().to_string())
        }
        None => {
            tracing::warn!(
                "AIS_TARGET_URL is not set: hpull without etl_fqn and direct puts to targets will fail"
            );
            None
        }
    };
    let slot: Arc<ArcSwapOption<Etl>> = Arc::new(ArcSwapOption::empty());
    let metrics = Arc::new(Metrics::default());
    let reloader = Arc::new(Reloader {
        runtime: runtime.clone(),
        component: args.component.clone(),
        init_config: args.runtime.init_config()?,
        client: client.clone(),
        slot: slot.clone(),
        metrics: metrics.clone(),
        one_at_a_time: tokio::sync::Mutex::new(()),
    });
    let admin = args.admin_token.clone().map(|token| {
        let reloader = reloader.clone();
        Arc::new(Admin {
            token,
            reload: Box::new(move || {
                let reloader = reloader.clone();
                Box::pin(async move { reloader.reload().await.map_err(|e| format!("{e:#}")) })
            }),
        })
    });
    let held_input = crate::source::HeldInput::new(args.held_input()?);
    let serve_threads = args.serve_threads()?;
    let state = AppState {
        etl: slot.clone(),
        name: etl_name(&args).into(),
        metrics: metrics.clone(),
        admin,
        target: args.target_url.clone().map(|url| {
            let clients = clients.clone();
            Arc::new(crate::source::target::Target { url, clients })
        }),
        download_client: crate::outbound::client_builder()
            .build()
            .context("building the download client")?,
        fqn_policy: std::sync::Arc::new(fqn_policy),
        reply_space: crate::held::SpillSpace::new(args.reply_space.as_u64()),
        held_input: held_input.clone(),
        ws_replies_in_memory: crate::protocol::new_ws_replies_in_memory(),
    };

    // Installed before the port opens: SIGUSR1 or SIGHUP would otherwise end the
    // process, also while the component loads (a SIGHUP then is refused and logged,
    // as `POST /admin/reload` is).
    use tokio::signal::unix::{SignalKind, signal};
    let usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let _stats = AbortOnDrop(tokio::spawn(log_pool_stats_on_signal(usr1, slot.clone())));
    let hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let _reloads = AbortOnDrop(tokio::spawn(reload_on_signal(hangup, reloader.clone())));

    // The port opens first, so readiness probes see 503 while a large component
    // compiles instead of a refused connection.
    let listener = TcpListener::bind(&args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (--listen/ETL_WASM_LISTEN: HOST:PORT, a free port, \
             such as 0.0.0.0:8000)",
            args.listen
        )
    })?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(crate::protocol::serve(
        listener,
        app(state),
        serve_threads,
        async move {
            let _ = stopped.await;
        },
    ));

    let transform = match args.native {
        Some(native) => Transform::native(native, config.limits, config.concurrency),
        None => {
            let wasm = args.component.fetch(&client).await?;
            let (transform, report) = runtime
                .load(wasm, reloader.init_config.clone())
                .await
                .with_context(|| args.component.describe())?;
            metrics.loaded(report.cache);
            transform
        }
    };
    slot.store(Some(Arc::new(Etl {
        transform,
        direct_put: DirectPut {
            client: clients,
            retries: args.direct_put_retries,
            backoff: args.direct_put_backoff,
        },
        target_path,
        direct_fqn: args
            .direct_fqn
            .as_deref()
            .is_some_and(crate::outbound::truthy),
        guests: guests.handle(),
        held_input,
        pace: Pace::calls(),
        stream_pace: Pace::polls(),
    })));
    tracing::info!(%address, "ready");
    // A plain line on stdout once ready: scripts and tests wait for it.
    println!("listening on http://{address}");

    tokio::select! {
        result = &mut server => {
            result.context("the server task failed")?.context("the server failed")?;
            return Ok(ExitCode::FAILURE);
        }
        (signal, _) = super::shutdown_signal() => {
            tracing::info!(signal, "shutting down: no new connections");
        }
    }
    let _ = stop.send(());
    match tokio::time::timeout(args.shutdown_timeout, server).await {
        Ok(_) => tracing::info!("in-flight requests finished"),
        Err(_) => tracing::warn!(
            bound = ?args.shutdown_timeout,
            "in-flight requests did not finish in time; exiting anyway"
        ),
    }
    if let Some(etl) = slot.load_full() {
        log_pool_stats(&etl.transform);
    }
    Ok(ExitCode::SUCCESS)
}

/// The ETL's name for logs: `--name`, else the one in `AIS_TARGET_URL`
/// (`/v1/etl/_object/<name>/<secret>`).
fn etl_name(args: &ServeArgs) -> String {
    args.name.clone().unwrap_or_else(|| {
        args.target_url
            .as_deref()
            .and_then(|url| url.split("/v1/etl/_object/").nth(1))
            .and_then(|rest| rest.split('/').next())
            .filter(|name| !name.is_empty())
            .unwrap_or("ais-wasm")
            .to_string()
    })
}

/// Hot swap: fetch the component from its source again, load it fully (compile,
/// link, instantiate, init), then switch. A failure leaves the current one serving.
struct Reloader {
    runtime: Arc<Runtime>,
    component: ComponentArgs,
    init_config: Vec<(String, String)>,
    client: reqwest::Client,
    slot: Arc<ArcSwapOption<Etl>>,
    metrics: Arc<Metrics>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    async fn reload(&self) -> anyhow::Result<String> {
        let _turn = self.one_at_a_time.lock().await;
        let swapped = async {
            let current = self
                .slot
                .load_full()
                .context("the first component is still loading")?;
            let wasm = self.component.fetch(&self.client).await?;
            let (transform, report) = self
                .runtime
                .load(wasm, self.init_config.clone())
                .await
                .with_context(|| self.component.describe())?;
            self.metrics.loaded(report.cache);
            self.slot.store(Some(Arc::new(Etl {
                transform,
                pace: Pace::calls(),
                stream_pace: Pace::polls(),
                ..Etl::clone(&current)
            })));
            current.transform.retire();
            anyhow::Ok(report.sha256)
        }
        .await;
        self.metrics.reload(swapped.is_ok());
        match swapped {
            Ok(sha256) => {
                tracing::info!(%sha256, "hot swap: now serving the new component");
                Ok(format!("now serving the component with sha256 {sha256}\n"))
            }
            Err(error) => {
                tracing::warn!("hot swap failed, the current component keeps serving: {error:#}");
                Err(error)
            }
        }
    }
}

async fn reload_on_signal(mut signal: tokio::signal::unix::Signal, reloader: Arc<Reloader>) {
    while signal.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the component");
        let _ = reloader.reload().await;
    }
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

/// `kill -USR1 <pid>` logs the pool's counters at a moment of the caller's choosing
/// (the leak tests read them between phases), with no scraper needed.
async fn log_pool_stats_on_signal(
    mut signal: tokio::signal::unix::Signal,
    slot: Arc<ArcSwapOption<Etl>>,
) {
    while signal.recv().await.is_some() {
        if let Some(etl) = slot.load_full() {
            log_pool_stats(&etl.transform);
        }
    }
}

/// Aborts the task when dropped, so that it does not outlive `serve`.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The runtime guests run on, apart from the threads serving the protocol.
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
