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
        Command::Run(args) => run::run(*args).await,
        Command::Payload(args) => payload::payload(args),
        Command::Spec(args) => spec::spec(args),
        Command::Bench(args) => bench::bench(args).await,
    }
}
