//! Where an object's bytes come from: the request body, a WebSocket message, a file
//! named by `etl_fqn`, or an HTTP GET (the target for hpull, any URL for download).
//! Sources stream; only buffered transforms read them whole.

pub mod fqn;
pub mod target;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

/// An object's input.
pub enum Source {
    /// A request body: can be read once (hpush body mode, pipeline stages).
    Body {
        body: Option<BoxStream<'static, io::Result<Bytes>>>,
        length: Option<u64>,
    },
    /// Bytes already in memory (a WebSocket data message).
    Bytes(Bytes),
    /// The object's file on a mountpath, as [`fqn::FqnPolicy::resolve`] returned it.
    Fqn(PathBuf),
    /// A GET, re-issued for every attempt.
    Http {
        url: String,
        client: reqwest::Client,
        kind: HttpSource,
    },
}

/// What an HTTP source is, which decides how its failures are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpSource {
    /// `AIS_TARGET_URL` (hpull): an error status is passed on as is.
    Target,
    /// `original_url` of `POST /download`: every failure is the request's (400).
    Download,
}

/// Why an object's input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the object's file {} does not exist", .0.display())]
    FqnNotFound(PathBuf),
    /// The FQN names a file the policy does not allow; it was not opened.
    #[error("etl_fqn {} {reason}", path.display())]
    FqnRefused {
        path: PathBuf,
        reason: fqn::FqnRefusal,
    },
    #[error("the object's file {} cannot be read: {error}", path.display())]
    FqnUnreadable { path: PathBuf, error: io::Error },
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    #[error("the request body was already consumed and cannot be replayed")]
    Consumed,
    #[error("the target answered {status} for the object: {body}")]
    Upstream { status: u16, body: String },
    #[error("the target cannot be reached: {0}")]
    Unreachable(String),
    #[error("downloading {url} failed: {cause}")]
    Download { url: String, cause: String },
    #[error("the object must be fetched from the target, but AIS_TARGET_URL is not set")]
    NoTargetUrl,
}

/// A source opened for one attempt.
pub struct Opened {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub size: Option<u64>,
}

impl Source {
    /// Whether the source can be opened again for another attempt (a direct-put
    /// retry re-runs the transform from a fresh source).
    pub fn replayable(&self) -> bool {
        !matches!(self, Source::Body { .. })
    }

    /// The object's size, when known before reading.
    pub async fn size(&mut self) -> Option<u64> {
        match self {
            Source::Body { length, .. } => *length,
            Source::Bytes(bytes) => Some(bytes.len() as u64),
            Source::Fqn(path) => tokio::fs::metadata(path).await.ok().map(|m| m.len()),
            Source::Http { .. } => None,
        }
    }

    /// Open the source for streaming.
    pub async fn open(&mut self) -> Result<Opened, SourceError> {
        match self {
            Source::Body { body, length } => {
                let body = body.take().ok_or(SourceError::Consumed)?;
                Ok(Opened {
                    reader: Box::new(StreamReader::new(body)),
                    size: *length,
                })
            }
            Source::Bytes(bytes) => Ok(Opened {
                size: Some(bytes.len() as u64),
                reader: Box::new(io::Cursor::new(bytes.clone())),
            }),
            Source::Fqn(path) => {
                let (file, size) = open_fqn(path).await?;
                Ok(Opened {
                    reader: Box::new(file),
                    size: Some(size),
                })
            }
            Source::Http { url, client, kind } => {
                let response = get(client, url, *kind).await?;
                let size = response.content_length();
                let stream = response.bytes_stream().map_err(io::Error::other);
                Ok(Opened {
                    reader: Box::new(StreamReader::new(stream)),
                    size,
                })
            }
        }
    }

    /// Read the whole object (for buffered transforms).
    pub async fn read_all(&mut self) -> Result<Bytes, SourceError> {
        match self {
            Source::Body { body, length } => {
                let mut body = body.take().ok_or(SourceError::Consumed)?;
                let mut data = Vec::with_capacity(length.unwrap_or(0).min(64 << 20) as usize);
                while let Some(chunk) = body.next().await {
                    data.extend_from_slice(&chunk.map_err(SourceError::Body)?);
                }
                Ok(data.into())
            }
            Source::Bytes(bytes) => Ok(bytes.clone()),
            Source::Fqn(path) => {
                // One trip to the blocking pool for open, fstat and the whole read:
                // tokio's File would make one per step and per 2 MiB read, which cost
                // more than the read itself for small objects.
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let (file, size) = open_fqn_blocking(&path)?;
                    let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
                    (&file)
                        .read_to_end(&mut data)
                        .map_err(|e| fqn_error(&path, e))?;
                    Ok(Bytes::from(data))
                })
                .await
                .unwrap_or_else(|error| Err(SourceError::Body(io::Error::other(error))))
            }
            Source::Http { url, client, kind } => {
                let response = get(client, url, *kind).await?;
                response
                    .bytes()
                    .await
                    .map_err(|e| transport_error(url, *kind, e))
            }
        }
    }
}

/// Decode an `etl_fqn` value and resolve it under `policy` (§5.3, §11): the path
/// to hand to [`Source::Fqn`], or why there is none. A refused path is not opened.
pub async fn resolve_fqn(
    policy: &Arc<fqn::FqnPolicy>,
    value: &str,
) -> Result<PathBuf, SourceError> {
    let path = fqn::decode(value);
    let (policy, lookup) = (policy.clone(), path.clone());
    // canonicalize and stat are blocking calls.
    let resolved = tokio::task::spawn_blocking(move || policy.resolve(&lookup))
        .await
        .unwrap_or_else(|error| Err(fqn::ResolveError::Io(io::Error::other(error))));
    resolved.map_err(|error| match error {
        fqn::ResolveError::Refused(reason) => SourceError::FqnRefused { path, reason },
        fqn::ResolveError::Io(error) => fqn_error(&path, error),
    })
}

/// Open a resolved FQN for reading: never through a symbolic link (one swapped in
/// since [`resolve_fqn`] checked the path) and never blocking on a FIFO; and only
/// a regular file, checked on the open descriptor. Returns the file and its size.
async fn open_fqn(path: &Path) -> Result<(tokio::fs::File, u64), SourceError> {
    let path = path.to_path_buf();
    let (file, size) = tokio::task::spawn_blocking(move || open_fqn_blocking(&path))
        .await
        .unwrap_or_else(|error| Err(SourceError::Body(io::Error::other(error))))?;
    Ok((tokio::fs::File::from_std(file), size))
}

fn open_fqn_blocking(path: &Path) -> Result<(std::fs::File, u64), SourceError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => SourceError::FqnRefused {
                path: path.to_path_buf(),
                reason: fqn::FqnRefusal::LinkOutside,
            },
            _ => fqn_error(path, e),
        })?;
    let metadata = file.metadata().map_err(|e| fqn_error(path, e))?;
    if !metadata.is_file() {
        return Err(SourceError::FqnRefused {
            path: path.to_path_buf(),
            reason: fqn::FqnRefusal::NotAFile,
        });
    }
    Ok((file, metadata.len()))
}

fn fqn_error(path: &Path, error: io::Error) -> SourceError {
    match error.kind() {
        io::ErrorKind::NotFound => SourceError::FqnNotFound(path.to_path_buf()),
        _ => SourceError::FqnUnreadable {
            path: path.to_path_buf(),
            error,
        },
    }
}

fn transport_error(url: &str, kind: HttpSource, error: reqwest::Error) -> SourceError {
    match kind {
        HttpSource::Target => SourceError::Unreachable(without_url(error)),
        HttpSource::Download => SourceError::Download {
            url: url.to_string(),
            cause: without_url(error),
        },
    }
}

/// reqwest errors print their URL, which for the target carries the ETL's secret.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    kind: HttpSource,
) -> Result<reqwest::Response, SourceError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| transport_error(url, kind, e))?;
    let status = response.status();
    if status.is_success() && (kind == HttpSource::Target || status.as_u16() <= 204) {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(512).collect();
    Err(match kind {
        HttpSource::Target => SourceError::Upstream {
            status: status.as_u16(),
            body,
        },
        HttpSource::Download => SourceError::Download {
            url: url.to_string(),
            cause: format!("HTTP {status}"),
        },
    })
}
