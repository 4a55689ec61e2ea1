//! `ais-wasm run`: transform local files with exactly the engine `serve` uses, no
//! cluster needed. Each input's path is the object path the guest sees.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::RunArgs;
use crate::runtime::{InputStream, ObjectRequest, Runtime, Transform};
use crate::source::within;

/// Chunks in flight between the guest and the output file.
const OUTPUT_QUEUE: usize = 4;

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let outputs = output_paths(&args.inputs, args.output.as_deref())?;
    let runtime = Runtime::new(args.runtime.runtime_config()?)?;
    let wasm = args.component.fetch(&args.outbound.client()?).await?;
    let (transform, _report) = runtime
        .load(wasm, args.runtime.init_config()?)
        .await
        .with_context(|| args.component.describe())?;
    if let Some(dir) = &args.output {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating the output directory {}", dir.display()))?;
    }

    let mut failed = 0;
    for (input, output) in args.inputs.iter().zip(outputs) {
        let object = ObjectRequest {
            path: input.to_string_lossy().into_owned(),
            args: args.args.clone(),
            ..Default::default()
        };
        if let Err(error) = transform_file(&transform, input, output.as_deref(), &object).await {
            eprintln!("error: {}: {error:#}", input.display());
            failed += 1;
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where each input's result goes (`None`: stdout), refusing ambiguous requests
/// before any work is done.
fn output_paths(inputs: &[PathBuf], dir: Option<&Path>) -> anyhow::Result<Vec<Option<PathBuf>>> {
    let Some(dir) = dir else {
        if inputs.len() > 1 {
            bail!(
                "{} inputs need --output DIR; stdout takes a single input",
                inputs.len()
            );
        }
        return Ok(vec![None]);
    };
    let mut seen = HashSet::new();
    inputs
        .iter()
        .map(|input| {
            let name = input
                .file_name()
                .with_context(|| format!("{} has no file name", input.display()))?;
            if !seen.insert(name.to_owned()) {
                bail!(
                    "two inputs are named {:?}; their results would overwrite each other in {}",
                    name,
                    dir.display()
                );
            }
            Ok(Some(dir.join(name)))
        })
        .collect()
}

async fn transform_file(
    transform: &Transform,
    input: &Path,
    output: Option<&Path>,
    object: &ObjectRequest,
) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(input)
        .await
        .context("cannot open the input")?;
    let size = file
        .metadata()
        .await
        .context("cannot stat the input")?
        .len();
    // Results are written next to their final name and renamed when complete, so a
    // failed object never leaves a plausible-looking partial file behind.
    let (mut sink, partial): (Box<dyn AsyncWrite + Unpin + Send>, Option<PathBuf>) = match output {
        Some(path) => {
            let partial = path.with_extension("partial");
            let file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("cannot create {}", partial.display()))?;
            (Box::new(file), Some(partial))
        }
        None => (Box::new(tokio::io::stdout()), None),
    };

    let result = if transform.shapes().prefers_streaming(Some(size)) {
        let (sender, mut receiver) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
        let writer = async {
            while let Some(chunk) = receiver.recv().await {
                sink.write_all(&chunk).await?;
            }
            sink.flush().await
        };
        let input = InputStream::new(file, Some(size));
        let (transformed, written) =
            tokio::join!(transform.streaming(input, sender, object), writer);
        transformed
            .map(drop)
            .map_err(anyhow::Error::from)
            .and(write_result(written))
    } else {
        // Not streamed, so buffered: a component without either shape does not load.
        async {
            within(size, transform.limits().max_memory)?;
            let data = tokio::fs::read(input)
                .await
                .context("cannot read the input")?;
            let result = transform.buffered(&data, object).await?;
            write_result(
                async {
                    sink.write_all(&result).await?;
                    sink.flush().await
                }
                .await,
            )
        }
        .await
    };

    match (result, partial, output) {
        (Ok(()), Some(partial), Some(output)) => tokio::fs::rename(&partial, output)
            .await
            .context("renaming the result"),
        (Err(error), Some(partial), _) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(error)
        }
        (result, _, _) => result,
    }
}

/// A closed stdout (`ais-wasm run ... | head`) is not a failure.
fn write_result(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the result"),
    }
}
