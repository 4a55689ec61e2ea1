//! The command line: every flag, its environment variable and its default, turned
//! into validated configuration once, before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

use crate::delivery::ComponentArgs;
use crate::outbound::OutboundArgs;
use crate::runtime::{InstanceMode, Limits, RuntimeConfig};
use crate::source::fqn::FqnPolicy;

/// The longest `--timeout`: a day is more than any object needs, and far less than
/// would overflow a deadline computed from it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The most objects transformed at once: the instance pool reserves address space
/// for three instances per worker.
pub const MAX_WORKERS: usize = 1024;

#[derive(Debug, Parser)]
#[command(
    name = "ais-wasm",
    version,
    about = "Run AIStore ETL transforms as WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "ETL_WASM_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the AIStore ETL protocol (the container's command).
    Serve(Box<ServeArgs>),
    /// Transform local files with a component, exactly as the server would.
    Run(Box<RunArgs>),
    /// Print the ETL_WASM_PAYLOAD value for a component.
    Payload(PayloadArgs),
    /// Print the AIStore ETL runtime spec (`ais etl init spec`) for a component.
    Spec(crate::cmd::spec::SpecArgs),
    /// Benchmarks: the engine, each component, a server end to end, a soak, start-up.
    Bench(crate::cmd::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub component: ComponentArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// The etl_args string every object gets.
    #[arg(long, default_value = "")]
    pub args: String,
    /// Write each result to DIR/<input file name> instead of stdout (required for
    /// more than one input).
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Input files; each one's path is the object path the transform sees.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub component: ComponentArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// Address to listen on (AIStore sends to the pod's port 8000).
    #[arg(long, env = "ETL_WASM_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: String,
    /// The target's per-ETL object endpoint, with its secret; set by AIStore.
    #[arg(long, env = "AIS_TARGET_URL", hide_env_values = true)]
    pub target_url: Option<String>,
    /// Local retries of a direct put after a transient network failure.
    #[arg(long, env = "AIS_DIRECT_PUT_RETRIES", default_value_t = 3)]
    pub direct_put_retries: u32,
    /// Delay before the first direct-put retry; doubled for each further one.
    #[arg(long, env = "ETL_WASM_DIRECT_PUT_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    pub direct_put_backoff: Duration,
    /// Stream FQN files to a streaming export whatever their size (1, true, yes, on).
    #[arg(long, env = "ETL_DIRECT_FQN")]
    pub direct_fqn: Option<String>,
    /// Serve a built-in native transform instead of a component: the baseline that
    /// benchmarks compare WebAssembly against, behind the same server code.
    #[arg(long, value_name = "NAME")]
    pub native: Option<crate::runtime::NativeTransform>,
    /// The ETL's name in logs [default: from AIS_TARGET_URL].
    #[arg(long, env = "ETL_NAME")]
    pub name: Option<String>,
    /// Enables `POST /admin/reload` (hot swap), authorised by this bearer token.
    #[arg(long, env = "ETL_WASM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// How long SIGTERM waits for in-flight requests before exiting.
    #[arg(long, env = "ETL_WASM_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Accept etl_fqn only under these mountpath roots: absolute paths separated by
    /// `:` or `,`, each a mountpath or a directory holding mountpaths [default: any
    /// path shaped like an AIStore object's file].
    #[arg(long, env = "ETL_FQN_ROOTS", value_name = "DIRS")]
    pub fqn_roots: Option<String>,
    /// Temporary disk space that WebSocket replies past 16 MiB, held in files under
    /// TMPDIR until their transform ends, may take at once (keep it within the pod's
    /// ephemeral storage); 0 holds every reply in memory, up to --max-output.
    #[arg(long, env = "ETL_WASM_REPLY_SPACE", default_value = "4GiB")]
    pub reply_space: ByteSize,
    /// Bytes of objects held whole, read and waiting for their transform, over all
    /// requests: WebSocket messages (each connection holds at most 64 MiB of them),
    /// and HTTP bodies and target GETs read whole for a buffered transform; past them,
    /// no more is read until a transform finishes, and TCP pushes back on the sender.
    #[arg(long, env = "ETL_WASM_HELD_INPUT", default_value = "256MiB")]
    pub held_input: ByteSize,
    /// Threads serving connections; each connection stays on one [default: the CPUs].
    #[arg(long, env = "ETL_WASM_SERVE_THREADS")]
    pub serve_threads: Option<std::num::NonZeroUsize>,
}

impl ServeArgs {
    /// `--serve-threads`, else the CPUs this process may use (a cgroup quota counts).
    pub fn serve_threads(&self) -> anyhow::Result<usize> {
        const MAX_SERVE_THREADS: usize = 1024;
        let threads = self
            .serve_threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, std::num::NonZeroUsize::get);
        if threads > MAX_SERVE_THREADS {
            bail!(
                "--serve-threads/ETL_WASM_SERVE_THREADS must be from 1 to {MAX_SERVE_THREADS}, \
                 got {threads}"
            );
        }
        Ok(threads)
    }

    /// `--held-input`, checked: a permit count of the semaphore that holds it.
    pub fn held_input(&self) -> anyhow::Result<u32> {
        match u32::try_from(self.held_input.as_u64()) {
            Ok(bytes) if bytes >= 1 << 20 => Ok(bytes),
            _ => bail!(
                "--held-input/ETL_WASM_HELD_INPUT must be from 1MiB to under 4GiB, got {}",
                self.held_input
            ),
        }
    }

    /// Which files `etl_fqn` may name; the roots are resolved now, so a root that
    /// does not exist stops the server from starting.
    pub fn fqn_policy(&self) -> anyhow::Result<FqnPolicy> {
        let roots = FqnPolicy::parse_roots(self.fqn_roots.as_deref().unwrap_or(""))?;
        if roots.is_empty() {
            return Ok(FqnPolicy::any_mountpath());
        }
        Ok(FqnPolicy::under(&roots)?)
    }
}

#[derive(Debug, Args)]
pub struct PayloadArgs {
    /// The component file (.wasm).
    #[arg(value_name = "FILE")]
    pub component: PathBuf,
}

/// Engine limits and instance policy, shared by every command that runs components.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Linear memory per instance.
    #[arg(long, env = "ETL_WASM_MAX_MEMORY", default_value = "256MiB")]
    pub max_memory: ByteSize,
    /// Time one object may take, I/O included (also bounds init).
    #[arg(long, env = "ETL_WASM_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Largest result of a buffered transform, single streamed write, and WebSocket
    /// reply held in memory (past it, or past 16 MiB, a reply waits in a file).
    #[arg(long, env = "ETL_WASM_MAX_OUTPUT", default_value = "128MiB")]
    pub max_output: ByteSize,
    /// Reuse initialised instances (pooled) or create one per object (fresh).
    #[arg(long, env = "ETL_WASM_INSTANCE_MODE", default_value = "pooled")]
    pub instance_mode: InstanceMode,
    /// Objects transformed at once [default: twice the CPUs, at least 4].
    #[arg(long, env = "NUM_WORKERS")]
    pub workers: Option<usize>,
    /// Directory of the compile cache [default: $XDG_CACHE_HOME/ais-wasm or
    /// ~/.cache/ais-wasm].
    #[arg(long, env = "ETL_WASM_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile at every start instead of using the compile cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Configuration for the transform's init hook, KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Init configuration as a JSON object of strings; --config entries follow it.
    #[arg(long, env = "ETL_WASM_CONFIG", value_name = "JSON")]
    pub config_json: Option<String>,
}

impl RuntimeArgs {
    pub fn runtime_config(&self) -> anyhow::Result<RuntimeConfig> {
        if !(1 << 20..=4 << 30).contains(&self.max_memory.as_u64()) {
            bail!(
                "--max-memory/ETL_WASM_MAX_MEMORY must be from 1MiB to 4GiB (a 32-bit \
                 guest's whole address space), got {}",
                self.max_memory
            );
        }
        // It bounds every list the guest hands the host at once, log writes included.
        if self.max_output.as_u64() < 64 << 10 {
            bail!(
                "--max-output/ETL_WASM_MAX_OUTPUT must be at least 64KiB (it bounds all the \
                 guest passes the host at once, its log writes too), got {}",
                self.max_output
            );
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            bail!(
                "--timeout/ETL_WASM_TIMEOUT must be more than zero and at most {}, got {}",
                humantime::format_duration(MAX_TIMEOUT),
                humantime::format_duration(self.timeout)
            );
        }
        let concurrency = match self.workers {
            Some(workers) if !(1..=MAX_WORKERS).contains(&workers) => {
                bail!("--workers/NUM_WORKERS must be from 1 to {MAX_WORKERS}, got {workers}")
            }
            Some(workers) => workers,
            None => std::thread::available_parallelism()
                .map_or(4, |n| n.get() * 2)
                .max(4),
        };
        Ok(RuntimeConfig {
            limits: Limits {
                max_memory: self.max_memory.as_u64(),
                timeout: self.timeout,
                max_output: self.max_output.as_u64(),
            },
            instance_mode: self.instance_mode,
            concurrency,
            cache_dir: if self.no_cache {
                None
            } else {
                self.cache_dir.clone().or_else(default_cache_dir)
            },
        })
    }

    /// The init configuration: ETL_WASM_CONFIG entries, then --config entries.
    pub fn init_config(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut config = Vec::new();
        if let Some(json) = &self.config_json {
            let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
                .context("ETL_WASM_CONFIG must be a JSON object such as {\"key\": \"value\"}")?;
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                config.push((key, value));
            }
        }
        config.extend(self.config.iter().cloned());
        Ok(config)
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("ais-wasm"))
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}
