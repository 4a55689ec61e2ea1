//! One module per subcommand; each turns its validated arguments into work.

pub mod bench;
pub mod payload;
pub mod run;
pub mod serve;
pub mod spec;

use std::process::ExitCode;

use crate::config::Command;

pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::serve(*args).await,
        Command::Run(args) => interruptible(run::run(*args)).await,
        Command::Payload(args) => payload::payload(args),
        Command::Spec(args) => spec::spec(args),
        Command::Bench(args) => interruptible(bench::bench(args)).await,
    }
}

/// `work`, unless SIGTERM or SIGINT comes first: then it is dropped, which removes
/// the partial file of a `run`'s object in progress and stops the servers a bench
/// started (in process groups of their own, which a terminal's Ctrl-C misses), and
/// the exit code is 128 + the signal's number.
async fn interruptible(
    work: impl Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        // The handlers are installed before any work begins.
        biased;
        (signal, code) = shutdown_signal() => {
            eprintln!(
                "error: interrupted by {signal}; stopped, leaving no partial output file or \
                 benchmarked server behind"
            );
            Ok(ExitCode::from(code))
        }
        result = work => result,
    }
}

/// The first SIGTERM or SIGINT: its name and its exit code (128 + its number).
pub(crate) async fn shutdown_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
    }
}
