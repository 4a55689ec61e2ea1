//! Where an object's bytes come from: the request body, a WebSocket message, a file
//! named by `etl_fqn`, or an HTTP GET (the target for hpull, any URL for download).
//! Sources stream; only buffered transforms read them whole.

mod file;
pub mod fqn;
mod held_input;
pub mod target;

pub use held_input::{HeldInput, Share};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

/// An object's input.
pub enum Source {
    /// A request body, or a WebSocket data message too long to hold: can be read
    /// once (hpush body mode, pipeline stages).
    Body {
        body: Option<BoxStream<'static, io::Result<Bytes>>>,
        length: Option<u64>,
        /// What it took of `--held-input` as it arrived (a WebSocket message's
        /// beginning), grown if it is read whole.
        share: Share,
    },
    /// Bytes already in memory (a WebSocket data message, held whole), with their
    /// share of `--held-input`.
    Bytes(Bytes, Share),
    /// The object's file on a mountpath: `etl_fqn` decoded, checked against the
    /// policy and resolved when the source is loaded. An object stored in chunks,
    /// whose file holds only the first, is read from `target` instead.
    Fqn {
        path: PathBuf,
        policy: Arc<fqn::FqnPolicy>,
        target: Option<Arc<target::Target>>,
    },
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
    /// This server may not read the object's file: AIStore writes objects with mode
    /// 0640 in directories of 0750, owned by the user aisnode runs as (root, by
    /// default), and gives ETL pods no say in the user they run as.
    #[error(
        "the object's file {} cannot be read by this server ({}): {error}; run the ETL \
         container as a user that may read the target's mountpaths (AIStore writes \
         objects with mode 0640 in directories of 0750, owned by the user aisnode runs \
         as, root by default: the ais-wasm image runs in group 0 for this), or set \
         AIS_TARGET_URL to read objects from the target instead",
        path.display(),
        identity()
    )]
    FqnDenied {
        path: PathBuf,
        /// Its uname, by which the target serves it.
        uname: Vec<u8>,
        error: io::Error,
    },
    /// The object is stored in chunks, and its file holds the first only.
    #[error(
        "the object's file {} holds only the first chunk of an object stored in chunks \
         (a multipart upload), and there is no AIS_TARGET_URL to read it whole from; \
         set AIS_TARGET_URL, as AIStore does for its ETL pods",
        path.display()
    )]
    FqnChunked {
        path: PathBuf,
        /// Its uname, by which the target serves it whole.
        uname: Vec<u8>,
    },
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
    /// The object is to be read whole, for a buffered transform, and is larger than
    /// any instance could hold.
    #[error(
        "the object is {} the {at_most} bytes of memory an instance may have, so a \
         buffered transform cannot take it: export aistore:etl/streaming to take objects \
         of any size, or raise --max-memory/ETL_WASM_MAX_MEMORY",
        size.map_or("more than".to_string(), |size| format!("{size} bytes, more than"))
    )]
    TooLarge {
        /// Its size, when it was announced.
        size: Option<u64>,
        at_most: u64,
    },
}

/// A source opened for one attempt, to be streamed.
pub struct Opened {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub size: Option<u64>,
}

/// A source loaded for one attempt: read whole, or opened to be streamed.
pub enum Loaded {
    /// Read whole, with its share of `--held-input` when it arrived over a
    /// connection, to be held until its transform is done with it.
    Whole(Bytes, Share),
    Stream(Opened),
}

impl Source {
    /// `etl_fqn` as it arrived (§5.3), to be confined by `policy` (§11).
    pub fn fqn(
        policy: &Arc<fqn::FqnPolicy>,
        value: &str,
        target: Option<Arc<target::Target>>,
    ) -> Self {
        Source::Fqn {
            path: fqn::decode(value),
            policy: policy.clone(),
            target,
        }
    }

    /// Whether the source can be opened again for another attempt (a direct-put
    /// retry re-runs the transform from a fresh source).
    pub fn replayable(&self) -> bool {
        !matches!(self, Source::Body { .. })
    }

    /// Whether its bytes come over a connection, in pieces as they arrive (rather
    /// than from a file or memory, whenever asked for).
    pub fn arrives(&self) -> bool {
        matches!(self, Source::Body { .. } | Source::Http { .. })
    }

    /// Open the source and read it whole if `whole(size)` says so, the size being
    /// known once the source is open (`None`: it has no length), refusing one longer
    /// than `at_most` bytes before reading more than that. What arrives over a
    /// connection takes its share of `held` before it is read, or as it is read when
    /// it has no length; a file is read in its turn, and so is an object stored in
    /// chunks that its file names but does not hold.
    pub async fn load(
        &mut self,
        whole: impl Fn(Option<u64>) -> bool + Copy + Send + 'static,
        at_most: u64,
        held: &HeldInput,
    ) -> Result<Loaded, SourceError> {
        match self {
            Source::Body {
                body,
                length,
                share,
            } => {
                let body = body.take().ok_or(SourceError::Consumed)?;
                if !whole(*length) {
                    // Read by the guest: its failure says whose it was (the status).
                    let body = body.map_err(|e| io::Error::other(SourceError::Body(e)));
                    return Ok(Loaded::Stream(Opened {
                        reader: Box::new(StreamReader::new(body)),
                        size: *length,
                    }));
                }
                let share = std::mem::take(share);
                read_whole(body, *length, at_most, Some(held), share, SourceError::Body).await
            }
            Source::Bytes(bytes, _) => {
                let size = bytes.len() as u64;
                if !whole(Some(size)) {
                    return Ok(Loaded::Stream(Opened {
                        size: Some(size),
                        reader: Box::new(io::Cursor::new(bytes.clone())),
                    }));
                }
                within(size, at_most)?;
                // Its share stays with it, for another attempt.
                Ok(Loaded::Whole(bytes.clone(), Share::default()))
            }
            Source::Fqn {
                path,
                policy,
                target,
            } => {
                let loaded = load_file(path, policy, whole, at_most).await;
                let (Err(error), Some(target)) = (&loaded, target) else {
                    return loaded;
                };
                // Read from the target, in the turn the file had.
                let uname = match error {
                    // §5.3: the file holds the first chunk only.
                    SourceError::FqnChunked { uname, .. } => {
                        tracing::debug!(path = %path.display(), "stored in chunks: read from the target");
                        uname
                    }
                    SourceError::FqnDenied { uname, error, .. } => {
                        static WARNED: std::sync::Once = std::sync::Once::new();
                        WARNED.call_once(|| {
                            tracing::warn!(
                                "the object's file {} cannot be read by this server ({}): \
                                 {error}; each such object is read from the target instead, \
                                 a GET through it (said once); to read the files, run the \
                                 container as a user that may read the target's mountpaths",
                                path.display(),
                                identity()
                            )
                        });
                        uname
                    }
                    _ => return loaded,
                };
                let (client, url) = (target.client(), target.object_url(uname, false));
                let kind = HttpSource::Target;
                load_http(&client, &url, kind, whole, at_most, None).await
            }
            Source::Http { url, client, kind } => {
                load_http(client, url, *kind, whole, at_most, Some(held)).await
            }
        }
    }
}

/// A file is loaded on this thread when the kernel has it cached, else in one trip
/// to the blocking pool for all of it: a trip per step (resolve, open, stat, read)
/// costs more than the reading itself for small objects.
async fn load_file(
    path: &Path,
    policy: &Arc<fqn::FqnPolicy>,
    whole: impl Fn(Option<u64>) -> bool + Copy + Send + 'static,
    at_most: u64,
) -> Result<Loaded, SourceError> {
    let wait = file::Wait::Never;
    if let Some(loaded) = file::load(policy, path, &whole, at_most, wait)? {
        return Ok(loaded);
    }
    let (path, policy) = (path.to_path_buf(), policy.clone());
    let on_pool = path.clone();
    tokio::task::spawn_blocking(move || {
        file::load(&policy, &on_pool, &whole, at_most, file::Wait::Allowed)
            .map(|loaded| loaded.expect("a load that may wait always finishes"))
    })
    .await
    .unwrap_or_else(|stopped| Err(fqn_error(&path, io::Error::other(stopped))))
}

/// A GET, read whole (taking its share of `held`, if it has one) or streamed.
async fn load_http(
    client: &reqwest::Client,
    url: &str,
    kind: HttpSource,
    whole: impl Fn(Option<u64>) -> bool,
    at_most: u64,
    held: Option<&HeldInput>,
) -> Result<Loaded, SourceError> {
    let response = get(client, url, kind).await?;
    let size = response.content_length();
    if whole(size) {
        let body = response.bytes_stream();
        let failed = |e| transport_error(url, kind, e);
        return read_whole(body, size, at_most, held, Share::default(), failed).await;
    }
    let url = url.to_string();
    let stream = response
        .bytes_stream()
        .map_err(move |e| io::Error::other(transport_error(&url, kind, e)));
    Ok(Loaded::Stream(Opened {
        reader: Box::new(StreamReader::new(stream)),
        size,
    }))
}

/// Refuses an object of `size` bytes longer than `at_most`.
pub fn within(size: u64, at_most: u64) -> Result<(), SourceError> {
    match size <= at_most {
        true => Ok(()),
        false => Err(SourceError::TooLarge {
            size: Some(size),
            at_most,
        }),
    }
}

/// Reads `body` whole, `length` bytes if it says, refusing more than `at_most`, its
/// `share` of `held` grown to cover it first (or as it arrives, when it has no
/// length). A small body often arrives as one chunk, used as is rather than copied.
async fn read_whole<E>(
    body: impl Stream<Item = Result<Bytes, E>>,
    length: Option<u64>,
    at_most: u64,
    held: Option<&HeldInput>,
    mut share: Share,
    failed: impl Fn(E) -> SourceError,
) -> Result<Loaded, SourceError> {
    if let Some(length) = length {
        within(length, at_most)?;
        if let Some(held) = held {
            held.cover(&mut share, length as usize).await;
        }
    }
    let over = |size: usize| {
        (size as u64 > at_most).then_some(SourceError::TooLarge {
            size: None,
            at_most,
        })
    };
    let mut body = std::pin::pin!(body);
    // The first chunk is kept as is until a second one comes.
    let mut first: Option<Bytes> = None;
    let mut data = Vec::new();
    while let Some(piece) = body.next().await.transpose().map_err(&failed)? {
        let so_far = first.as_ref().map_or(data.len(), Bytes::len);
        if let Some(error) = over(so_far + piece.len()) {
            return Err(error);
        }
        if let Some(held) = held.filter(|_| length.is_none()) {
            held.cover(&mut share, so_far + piece.len()).await;
        }
        if let Some(first) = first.take() {
            data.reserve(length.unwrap_or(0).min(64 << 20) as usize);
            data.extend_from_slice(&first);
        } else if data.is_empty() {
            first = Some(piece);
            continue;
        }
        data.extend_from_slice(&piece);
    }
    let data = first.unwrap_or_else(|| data.into());
    Ok(Loaded::Whole(data, share))
}

/// Who this server is to the kernel when it opens files.
fn identity() -> String {
    // SAFETY: neither call can fail or touch memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    format!("uid {uid}, gid {gid}")
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

/// A reqwest error and its causes (the refused connection, the TLS handshake), without
/// the URL it prints, which for the target carries the ETL's secret.
pub(crate) fn without_url(error: reqwest::Error) -> String {
    with_causes(&error.without_url())
}

/// An error and each of its causes, `: ` between: an HTTP library's own message
/// ("error sending request", "error reading a body from connection") says little.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
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
    let body = crate::outbound::body_head(response, 512).await;
    let body = String::from_utf8_lossy(&body).trim().to_string();
    Err(match kind {
        HttpSource::Target => SourceError::Upstream {
            status: status.as_u16(),
            body,
        },
        HttpSource::Download => SourceError::Download {
            url: url.to_string(),
            cause: match body.is_empty() {
                true => format!("HTTP {status}"),
                false => format!("HTTP {status}: {body}"),
            },
        },
    })
}
