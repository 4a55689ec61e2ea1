//! `ais-wasm serve`: the ETL container. Loads the component (compiled, linked and
//! initialised before the port opens, so a listening server is a ready one), then
//! serves the AIStore ETL protocol until SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::etl::Etl;
use crate::protocol::{AppState, app};
use crate::runtime::Runtime;
use crate::sink::DirectPut;

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let client = args.outbound.client()?;
    let runtime = Runtime::new(args.runtime.runtime_config()?)?;
    let wasm = args.component.fetch(&client).await?;
    let (transform, _report) = runtime
        .load(wasm, args.runtime.init_config()?)
        .await
        .with_context(|| args.component.describe())?;

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
        },
        target_url: args.target_url.clone(),
        client,
        download_client: reqwest::Client::builder()
            .build()
            .context("building the download client")?,
    };

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
    Ok(ExitCode::SUCCESS)
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
