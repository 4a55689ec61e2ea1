//! The `ais-wasm` binary: parse the command line, start logging, run the command.

use std::io::IsTerminal;
use std::process::ExitCode;

use ais_wasm::config::{Cli, LogFormat};
use ais_wasm::logs::OneLinePerEvent;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let tuned = ais_wasm::allocator::tune();
    forget_empty_variables();
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colours = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours);
    match cli.log_format {
        LogFormat::Text => logs.with_writer(OneLinePerEvent { colours }).init(),
        LogFormat::Json => logs.with_writer(std::io::stderr).json().init(),
    }
    if !tuned {
        tracing::warn!("glibc refused the heap settings; large objects will run slower");
    }
    raise_open_file_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ais_wasm::cmd::dispatch(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raise the soft limit of open files to the hard one, as Go's runtime does: every
/// connection, serving thread and reply held in a file takes descriptors, and a soft
/// limit of 1024 is still a common default (256 serving threads alone took 1,000).
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur >= limit.rlim_max
    {
        return;
    }
    let soft = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        tracing::debug!(soft, "cannot raise the open-file limit to its hard limit");
    }
}

/// An empty variable of ours is an unset one, whichever it is: a Kubernetes spec made
/// from a template often says `value: ""`, which some settings took for unset and
/// others refused (`NUM_WORKERS`, `ETL_WASM_TIMEOUT`), and an empty
/// `ETL_WASM_ADMIN_TOKEN` must not be a token.
fn forget_empty_variables() {
    let ours =
        |name: &str| name.starts_with("AIS_") || name.starts_with("ETL_") || name == "NUM_WORKERS";
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| value.is_empty() && name.to_str().is_some_and(ours))
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        // SAFETY: no other thread runs yet, to read the environment meanwhile.
        unsafe { std::env::remove_var(name) };
    }
}
