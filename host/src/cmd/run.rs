//! `ais-wasm run`: transform local files with exactly the engine `serve` uses, no
//! cluster needed. Each input's path is the object path the guest sees.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::RunArgs;
use crate::runtime::{InputStream, ObjectRequest, Runtime, Transform};
use crate::source::{SourceError, within};

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
    let metadata = file.metadata().await.context("cannot stat the input")?;
    // A device or pipe has no size (its metadata says 0), nor perhaps an end.
    let size = metadata.is_file().then_some(metadata.len());
    // Results are written next to their final name under a name no other result can
    // have, and renamed when complete, so a failed object never leaves a
    // plausible-looking partial file behind (one not renamed is removed when dropped).
    let (mut sink, partial): (Box<dyn AsyncWrite + Unpin + Send>, _) = match output {
        Some(path) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let partial = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".partial")
                // As any new file, within the umask; not a temporary file's 0600.
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            let (file, partial) = partial.into_parts();
            (Box::new(tokio::fs::File::from_std(file)), Some(partial))
        }
        None => (Box::new(tokio::io::stdout()), None),
    };

    let result = if transform.shapes().prefers_streaming(size) {
        let (sender, receiver) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
        let writer = async {
            // Dropped when a write fails, so that the transform's next write fails
            // at once rather than waits for room until its deadline.
            let mut receiver = receiver;
            while let Some(chunk) = receiver.recv().await {
                sink.write_all(&chunk).await?;
            }
            sink.flush().await
        };
        let input = InputStream::new(file, size);
        let (transformed, written) =
            tokio::join!(transform.streaming(input, sender, object), writer);
        match written {
            // The cause of the transform's failure, if it failed.
            Err(error) => write_result(Err(error)),
            Ok(()) => transformed.map(drop).map_err(anyhow::Error::from),
        }
    } else {
        // Not streamed, so buffered: a component without either shape does not load.
        async {
            let at_most = transform.limits().max_memory;
            if let Some(size) = size {
                within(size, at_most)?;
            }
            let mut data = Vec::new();
            file.take(at_most.saturating_add(1))
                .read_to_end(&mut data)
                .await
                .context("cannot read the input")?;
            if data.len() as u64 > at_most {
                Err(SourceError::TooLarge {
                    size: None,
                    at_most,
                })?;
            }
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
        (Ok(()), Some(partial), Some(output)) => partial
            .persist(output)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming the result to {}", output.display())),
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
