//! `ais-wasm spec`: the AIStore ETL runtime spec (`ETLSpecMsg`, protocol document
//! §2.1) that `ais etl init spec` consumes, carrying the component in
//! `ETL_WASM_PAYLOAD`, or as `ETL_WASM_URL` pinned by `ETL_WASM_SHA256` when it is too
//! large for an environment variable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{MAX_TIMEOUT, MAX_WORKERS};
use crate::delivery::{
    ENV_VALUE_MAX, PAYLOAD_VAR, component_url, encode_payload, read_component_file,
};
use crate::runtime::check_shape;

#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// The component file (.wasm).
    #[arg(long)]
    pub component: PathBuf,
    /// The ETL's name: 6 to 32 characters of [a-z0-9-] (AIStore's rule).
    #[arg(long)]
    pub name: String,
    /// How targets talk to the ETL.
    #[arg(long, default_value = "hpush")]
    pub comm: Comm,
    /// The ETL delivers results to their destination itself (required for ws).
    #[arg(long)]
    pub direct_put: bool,
    /// How long a target waits for one object.
    #[arg(long, default_value = "45s", value_parser = humantime::parse_duration)]
    pub obj_timeout: Duration,
    /// How long AIStore waits for the pod to become ready.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub init_timeout: Duration,
    /// The container image that runs `ais-wasm serve`.
    #[arg(long, default_value = concat!("ais-wasm:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Where the pod downloads the component (needed when it is too large for an
    /// environment variable; for example an AIStore object URL).
    #[arg(long)]
    pub url: Option<String>,
    /// Init configuration for the transform, KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Objects transformed at once in the pod (NUM_WORKERS).
    #[arg(long)]
    pub workers: Option<usize>,
    /// More environment for the container, NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// CPU request and limit, e.g. 2 or 500m.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory request and limit, e.g. 512Mi.
    #[arg(long)]
    pub memory: Option<String>,
    /// Output format.
    #[arg(long, default_value = "yaml")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Comm {
    Hpush,
    Hpull,
    Ws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

pub fn spec(args: SpecArgs) -> anyhow::Result<ExitCode> {
    let spec = build(&args)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&spec)?),
        Format::Yaml => print!("{}", yaml(&spec, 0)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The spec as JSON, refusing what AIStore would refuse.
pub fn build(args: &SpecArgs) -> anyhow::Result<Value> {
    check_name(&args.name)?;
    if args.comm == Comm::Ws && !args.direct_put {
        bail!("AIStore refuses WebSocket ETLs without direct put: add --direct-put");
    }
    for (flag, timeout) in [
        ("--obj-timeout", args.obj_timeout),
        ("--init-timeout", args.init_timeout),
    ] {
        if timeout < Duration::from_millis(1) {
            bail!("{flag} must be at least 1ms");
        }
    }
    let wasm = read_component_file(&args.component)?;
    check_shape(&wasm).with_context(|| args.component.display().to_string())?;
    let payload = encode_payload(&wasm)?;
    let mut env = Vec::new();
    match &args.url {
        Some(url) => {
            component_url(url).context("--url")?;
            env.push(env_var("ETL_WASM_URL", url));
            env.push(env_var(
                "ETL_WASM_SHA256",
                &hex::encode(Sha256::digest(&wasm)),
            ));
        }
        None if payload.len() <= ENV_VALUE_MAX => env.push(env_var(PAYLOAD_VAR, &payload)),
        None => bail!(
            "{} is too large for an environment variable ({} characters of payload, {ENV_VALUE_MAX} \
             at most): upload it where the pod can download it (for example as an AIStore \
             object) and pass --url",
            args.component.display(),
            payload.len()
        ),
    }
    if !args.config.is_empty() {
        let mut config = serde_json::Map::new();
        for entry in &args.config {
            let (key, value) = split_pair(entry, "--config")?;
            config.insert(key.to_string(), Value::String(value.to_string()));
        }
        env.push(env_var(
            "ETL_WASM_CONFIG",
            &Value::Object(config).to_string(),
        ));
    }
    if let Some(workers) = args.workers {
        if !(1..=MAX_WORKERS).contains(&workers) {
            bail!("--workers must be from 1 to {MAX_WORKERS}, got {workers}");
        }
        env.push(env_var("NUM_WORKERS", &workers.to_string()));
    }
    let mut timeout_given = false;
    for entry in &args.env {
        let (name, value) = split_pair(entry, "--env")?;
        if ["ETL_WASM_PATH", "ETL_WASM_PAYLOAD", "ETL_WASM_URL"].contains(&name) {
            bail!(
                "--env {name}: the component's source is spec's to set (inline, or --url); \
                 a second one would stop the pod at start"
            );
        }
        // Kubernetes keeps the last of two entries of a name, silently.
        if env.iter().any(|set| set["name"] == name) {
            bail!(
                "--env {name} is set twice (by an earlier --env, or by spec itself from its \
                 flags: use those), and Kubernetes would keep only the last"
            );
        }
        timeout_given |= name == "ETL_WASM_TIMEOUT";
        env.push(env_var(name, value));
    }
    if !timeout_given {
        // The pod gives up on an object before the target does, so that the user
        // sees why (a 504 naming the transform's deadline) rather than the target's
        // own timeout; the last third leaves time for the answer and a direct put.
        let deadline = (args.obj_timeout * 2 / 3).clamp(Duration::from_millis(1), MAX_TIMEOUT);
        let deadline = Duration::from_millis(deadline.as_millis() as u64);
        env.push(env_var(
            "ETL_WASM_TIMEOUT",
            &humantime::format_duration(deadline).to_string(),
        ));
    }

    let mut spec = json!({
        "name": args.name,
        "communication": format!("{}://", match args.comm { Comm::Hpush => "hpush", Comm::Hpull => "hpull", Comm::Ws => "ws" }),
        "init_timeout": go_duration(args.init_timeout),
        "obj_timeout": go_duration(args.obj_timeout),
        "support_direct_put": args.direct_put,
        "runtime": {
            "image": args.image,
            "command": ["ais-wasm", "serve"],
            "env": env,
        },
    });
    let mut resources = serde_json::Map::new();
    for (name, value) in [("cpu", &args.cpu), ("memory", &args.memory)] {
        if let Some(value) = value {
            check_quantity(name, value)?;
            resources.insert(name.to_string(), Value::String(value.clone()));
        }
    }
    if !resources.is_empty() {
        spec["resources"] = json!({ "requests": resources, "limits": resources });
    }
    Ok(spec)
}

fn env_var(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

fn split_pair<'a>(entry: &'a str, flag: &str) -> anyhow::Result<(&'a str, &'a str)> {
    match entry.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => bail!("{flag} takes NAME=VALUE, got {entry:?}"),
    }
}

/// A Kubernetes resource quantity as people write them: a decimal number and an
/// optional suffix (`500m`, `2`, `1.5`, `512Mi`, `1G`), which AIStore would otherwise
/// refuse only when the ETL is created.
fn check_quantity(name: &str, value: &str) -> anyhow::Result<()> {
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let number = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &value[number.len()..];
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !(digits(whole) && digits(fraction) && SUFFIXES.contains(&suffix)) {
        bail!(
            "--{name} {value:?} is not a Kubernetes quantity: a number with an optional \
             suffix, such as 500m or 2 for cpu, 512Mi or 1G for memory"
        );
    }
    Ok(())
}

/// AIStore's rule for ETL names (`k8s.ValidateEtlName`): they name pods.
fn check_name(name: &str) -> anyhow::Result<()> {
    if !(6..=32).contains(&name.len()) {
        bail!("the ETL name {name:?} must be 6 to 32 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("the ETL name {name:?} may only contain a-z, 0-9 and '-'");
    }
    Ok(())
}

/// A duration as Go's `time.ParseDuration` reads it (`1h30m`, `45s`, `1.5s`).
fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    let (hours, minutes, seconds, millis) = (
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000,
    );
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || millis > 0 || text.is_empty() {
        match millis {
            0 => text.push_str(&format!("{seconds}s")),
            _ if seconds == 0 && text.is_empty() => text.push_str(&format!("{millis}ms")),
            _ => text.push_str(&format!("{seconds}.{millis:03}s")),
        }
    }
    text
}

/// Block-style YAML; scalars are written as JSON literals, which YAML reads as is.
fn yaml(value: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n{}", yaml(value, indent + 2)))
                    }
                    Value::Array(items) if !items.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n{}", yaml(value, indent + 2)))
                    }
                    scalar => out.push_str(&format!("{pad}{key}: {scalar}\n")),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let nested = yaml(item, indent + 2);
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}- {}\n", nested.trim_start().trim_end()))
                    }
                    scalar => out.push_str(&format!("{pad}- {scalar}\n")),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_by_go() {
        assert_eq!(go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m");
        assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn names_follow_aistores_rule() {
        assert!(check_name("my-etl").is_ok());
        assert!(check_name("short").is_err());
        assert!(check_name("My-ETL-name").is_err());
        assert!(check_name("under_score").is_err());
        assert!(check_name(&"x".repeat(33)).is_err());
    }

    #[test]
    fn yaml_nests_maps_and_lists_of_maps() {
        let value = json!({"a": "x", "m": {"b": 1, "l": [{"n": "v", "w": "z"}, "s"]}});
        assert_eq!(
            yaml(&value, 0),
            "a: \"x\"\nm:\n  b: 1\n  l:\n    - n: \"v\"\n      w: \"z\"\n    - \"s\"\n"
        );
    }
}
