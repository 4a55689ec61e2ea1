//! HTTP endpoints: `GET /health`, `PUT /<path>` (hpush, pipeline stages), `GET /<path>`
//! (hpull) and `POST /download`.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{AppState, HttpError};
use crate::etl::{EtlError, Job, Outcome, Output};
use crate::metrics::{InFlight, Metrics, Transport};
use crate::pipeline;
use crate::runtime::{LogScope, ObjectError, ObjectRequest};
use crate::sink::DIRECT_PUT_LENGTH;
use crate::source::{HttpSource, Source, SourceError, with_causes};

/// §4.1: answered without touching the transform, so it stays fast under any load;
/// 503 until the component is compiled, instantiated and initialised.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.etl.load().is_some() {
        true => "Running".into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, "Loading").into_response(),
    }
}

/// Prometheus metrics (text exposition format).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let etl = state.etl.load_full();
    let transform = etl.as_ref().map(|etl| &etl.transform);
    let text = state.metrics.render(transform, &state.reply_space);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `POST /admin/reload` with the admin token: hot-swap the component.
pub async fn reload(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(admin) = &state.admin else {
        let body = "reloading is off: start the server with ETL_WASM_ADMIN_TOKEN set to enable it";
        return (StatusCode::METHOD_NOT_ALLOWED, body).into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token);
    // Compared as digests, so that how long the comparison takes tells nothing of
    // the token.
    let digest = |token: &str| Sha256::digest(token.as_bytes());
    if presented.map(digest) != Some(digest(&admin.token)) {
        return (StatusCode::UNAUTHORIZED, "a valid admin token is required").into_response();
    }
    match (admin.reload)().await {
        Ok(message) => message.into_response(),
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, message).into_response(),
    }
}

/// The query parameters of an object request. First value wins, as in Go (§5.1).
struct Params {
    fqn: Option<String>,
    args: String,
    latest_ver: bool,
}

impl Params {
    fn parse(query: Option<&str>) -> Self {
        let [fqn, args, latest] = first_values(query, ["etl_fqn", "etl_args", "latest-ver"]);
        Params {
            fqn: fqn.filter(|f| !f.trim().is_empty()),
            args: etl_args(args),
            latest_ver: latest.is_some_and(|v| crate::outbound::truthy(&v)),
        }
    }
}

/// The first value of each of `keys` in `query`, as Go's `Query().Get` takes it.
fn first_values<const N: usize>(query: Option<&str>, keys: [&str; N]) -> [Option<String>; N] {
    let mut values = [const { None }; N];
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if let Some(slot) = keys.iter().position(|k| *k == key) {
            values[slot].get_or_insert_with(|| value.into_owned());
        }
    }
    values
}

/// §5.2, §13 Q4: a target puts an object's name into its hpush URL unescaped, so a
/// name holding `?` arrives cut there, the rest of it leading the query up to a second
/// `?` (`/src/a?b?etl_fqn=...`). Parsed as is, `etl_fqn` is lost and the object is
/// transformed as if it were empty. No query a target builds holds a literal `?` (it
/// escapes `etl_fqn` and `etl_args`, and puts one of them first), so the last one
/// starts the real query if one of them follows it, and what comes before it goes
/// back on the path, its `?` escaped, to decode to the name. (Another client's
/// unescaped `?` in `etl_args` stays where it is.)
fn rejoin_cut_name<'a>(path: &'a str, query: Option<&'a str>) -> (Cow<'a, str>, Option<&'a str>) {
    let cut = query
        .and_then(|query| query.rsplit_once('?'))
        .filter(|(_, query)| query.starts_with("etl_args=") || query.starts_with("etl_fqn="));
    match cut {
        Some((rest_of_name, query)) => {
            let rest_of_name = rest_of_name.replace('?', "%3F");
            (format!("{path}%3F{rest_of_name}").into(), Some(query))
        }
        None => (path.into(), query),
    }
}

/// Warns of an hpush body that announces itself empty without `etl_fqn`. A target
/// sends one only in FQN mode, with `etl_fqn` beside it (it sends an empty object
/// chunked, §4.2), so this is what it sends for a name holding `#`: its URL cut there
/// with the query (§5.2, §13 Q4), the rest of the name only in the target's log.
/// Nothing here can recover the object, but the log says why it came out empty.
fn warn_if_cut_at_a_hash(headers: &HeaderMap, length: Option<u64>, object: &ObjectRequest) {
    // The length first: every hpush body passes here, and few are empty.
    let from_a_target = || {
        (headers.get(header::USER_AGENT))
            .is_some_and(|agent| agent.as_bytes().starts_with(b"Go-http-client/"))
    };
    if length == Some(0) && from_a_target() {
        tracing::warn!(
            parent: object.span(),
            object = object.path,
            "an empty body without etl_fqn: an AIStore target sends this for an object \
             whose name holds '#' (it cuts its URL there, etl_fqn with it), so the object \
             is transformed as if empty; avoid '#' in object names, or set the cluster \
             feature Do-not-Allow-Passing-FQN-to-ETL so that objects come in the body"
        );
    }
}

/// §5.4: the Python references strip etl_args.
fn etl_args(value: Option<String>) -> String {
    value.map(|a| a.trim().to_string()).unwrap_or_default()
}

/// `PUT /<path>` and `GET /<path>`; anything else is 405 (§4.6).
pub async fn object(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (raw_path, query) = match method {
        Method::PUT => rejoin_cut_name(uri.path(), uri.query()),
        _ => (uri.path().into(), uri.query()),
    };
    let params = Params::parse(query);
    // §5.2: the path is decoded once to recover the object's name; the raw form is
    // what a stage hop receives, so that it decodes to the same name (§6.3).
    let raw_path = raw_path.as_ref();
    let name: Vec<u8> =
        percent_encoding::percent_decode_str(raw_path.strip_prefix('/').unwrap_or(raw_path))
            .collect();
    let path = String::from_utf8_lossy(&name).into_owned();
    let pipeline = match pipeline_header(&headers) {
        Ok(pipeline) => pipeline,
        Err(error) => return error.into_response(),
    };
    let transport = if method == Method::PUT {
        Transport::Hpush
    } else {
        Transport::Hpull
    };
    let object = ObjectRequest {
        log: LogScope::new(&state.name, transport.as_str()),
        path,
        args: params.args,
        ..Default::default()
    };
    // §5.5, §13 Q8: hpull sends etl_fqn with latest-ver, and the target did not look
    // for a newer version before naming the file (in hpush and WebSocket it does); so
    // the latest version is fetched from the target, which finds it.
    let fetch_latest = method == Method::GET && params.latest_ver && state.target.is_some();
    let fqn = params.fqn.filter(|_| !fetch_latest);
    let source = match (&method, fqn) {
        (&Method::PUT | &Method::GET, Some(fqn)) => {
            Source::fqn(&state.fqn_policy, &fqn, state.target.clone())
        }
        (&Method::PUT, None) => {
            let length = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            warn_if_cut_at_a_hash(&headers, length, &object);
            Source::Body {
                length,
                body: Some(Lingering(Some(body.into_data_stream())).boxed()),
                share: Default::default(),
            }
        }
        (&Method::GET, None) => {
            match &state.target {
                // §4.3: hpull without an FQN reads the object from the target.
                Some(target) => Source::Http {
                    url: target.object_url(&name, params.latest_ver),
                    client: target.client(),
                    kind: HttpSource::Target,
                },
                None => {
                    let error = EtlError::Source(SourceError::NoTargetUrl);
                    return HttpError::for_object(&object, error).into_response();
                }
            }
        }
        _ => {
            let allow = [(header::ALLOW, "GET, PUT")];
            let body = "objects are transformed by PUT (hpush) or GET (hpull)";
            return (StatusCode::METHOD_NOT_ALLOWED, allow, body).into_response();
        }
    };
    let job = Job {
        object,
        source,
        pipeline,
        forward_path: raw_path.to_string(),
        bytes_in: 0,
    };
    process(&state, transport, job).await
}

/// `POST /download?original_url=&object_to=[&etl_args=]` (§4.5).
pub async fn download(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let [url, object_to, args] =
        first_values(uri.query(), ["original_url", "object_to", "etl_args"]);
    let (Some(url), Some(object_to)) = (
        url.filter(|u| !u.is_empty()),
        object_to.filter(|o| !o.is_empty()),
    ) else {
        return HttpError::new(
            StatusCode::BAD_REQUEST,
            "object_to and original_url query parameters are required",
        )
        .into_response();
    };
    let job = Job {
        forward_path: pipeline::escape_path(object_to.as_bytes()),
        object: ObjectRequest {
            log: LogScope::new(&state.name, Transport::Download.as_str()),
            path: object_to,
            args: etl_args(args),
            ..Default::default()
        },
        source: Source::Http {
            url,
            client: state.download_client.clone(),
            kind: HttpSource::Download,
        },
        pipeline: None,
        bytes_in: 0,
    };
    process(&state, Transport::Download, job).await
}

fn pipeline_header(headers: &HeaderMap) -> Result<Option<pipeline::Pipeline>, HttpError> {
    let Some(value) = headers.get("ais-node-url") else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "Invalid pipeline header: not ASCII",
        )
    })?;
    Ok(pipeline::parse(value)?)
}

async fn process(state: &AppState, transport: Transport, mut job: Job) -> Response {
    let in_flight = state.metrics.in_flight();
    let Some(etl) = state.etl.load_full() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the component is still loading",
        )
            .into_response();
    };
    let mut record = Record {
        metrics: state.metrics.clone(),
        in_flight: Some(in_flight),
        transport,
        started: std::time::Instant::now(),
        bytes_in: 0,
    };
    let result = etl.process(&mut job).await;
    record.bytes_in = job.bytes_in;
    match result {
        Ok(outcome) => respond(&job.object, outcome, record).await,
        Err(error) => {
            record.done(Err(&error));
            HttpError::for_object(&job.object, error).into_response()
        }
    }
}

async fn respond(object: &ObjectRequest, outcome: Outcome, record: Record) -> Response {
    match outcome {
        Outcome::Output(Output::Full(bytes)) => {
            record.sent(bytes.len() as u64);
            record.done(Ok(()));
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Outcome::Output(Output::Stream(call)) => {
            let mut stream = call.start();
            match stream.first().await {
                // The status is sent with the first chunk, so a transform that fails
                // before producing anything still gets a proper error status. After
                // that, a failure aborts the body (§9.2).
                Ok(first) => {
                    let body = futures::stream::iter(first.map(Ok)).chain(stream);
                    (
                        [(header::CONTENT_TYPE, "application/octet-stream")],
                        Body::from_stream(record.streamed(body)),
                    )
                        .into_response()
                }
                Err(error) => {
                    record.done(Err(&error));
                    HttpError::for_object(object, error).into_response()
                }
            }
        }
        Outcome::Delivered { length } => {
            record.sent(length);
            record.done(Ok(()));
            let mut response = StatusCode::NO_CONTENT.into_response();
            if length > 0 {
                response
                    .headers_mut()
                    .insert(DIRECT_PUT_LENGTH, HeaderValue::from(length));
            }
            response
        }
        Outcome::Returned { first, rest } => {
            let body =
                futures::stream::once(async { Ok(first) }).chain(rest.map_err(io::Error::other));
            Body::from_stream(record.streamed(body)).into_response()
        }
    }
}

/// An object's metrics, recorded once its outcome is known: for a body that streams,
/// when it ends, since the transform (or the next hop) may still fail after the
/// status went out. A body dropped before its end (the client went away) is counted
/// as output that could not be delivered.
struct Record {
    metrics: Arc<Metrics>,
    in_flight: Option<InFlight>,
    transport: Transport,
    started: std::time::Instant,
    bytes_in: u64,
}

impl Record {
    fn sent(&self, bytes: u64) {
        self.metrics.bytes_out(self.transport, bytes);
    }

    fn done(mut self, result: Result<(), &EtlError>) {
        self.record(result);
    }

    fn record(&mut self, result: Result<(), &EtlError>) {
        if let Some(in_flight) = self.in_flight.take() {
            let elapsed = self.started.elapsed();
            (self.metrics).object(in_flight, self.transport, result, self.bytes_in, elapsed);
        }
    }

    /// `body`, its chunks counted as they go out and its end recorded.
    fn streamed(
        self,
        body: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        futures::stream::unfold(
            (Box::pin(body), self),
            |(mut body, mut record)| async move {
                let item = body.next().await;
                match &item {
                    Some(Ok(chunk)) => record.sent(chunk.len() as u64),
                    Some(Err(error)) => {
                        match error.get_ref().and_then(|e| e.downcast_ref()) {
                            Some(error) => record.record(Err(error)),
                            None => record.record(Err(&EtlError::Transform(ObjectError::Output(
                                io::Error::new(error.kind(), error.to_string()),
                            )))),
                        }
                        // hyper drops what it has buffered, the status included, when a
                        // body fails: one turn lets it write that out first, so the
                        // client sees its 200 break off rather than no answer at all.
                        tokio::task::yield_now().await;
                    }
                    None => record.record(Ok(())),
                }
                item.map(|item| (item, (body, record)))
            },
        )
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let gone = io::Error::new(io::ErrorKind::BrokenPipe, "the client went away");
        self.record(Err(&EtlError::Transform(ObjectError::Output(gone))));
    }
}

/// How long the rest of a request body left unread at its answer is still read.
const LINGER: Duration = Duration::from_secs(30);

/// A request body that, dropped before its end, is read to its end (and thrown away)
/// in a task of its own, for at most [`LINGER`]. Its answer may go before it is read:
/// a 413 decided from the announced length, a transform that failed, or finished,
/// without reading all its input. Left unread, hyper closes the connection with bytes
/// unread, which makes the kernel reset it; a Go client (the target) whose write fails
/// before it has read the answer returns the write's error, not the answer
/// (`persistConn.roundTrip`), takes "broken pipe" for a soft error and sends the object
/// again, up to 10 times (§7.2). Read to its end, the connection serves on.
struct Lingering(Option<BodyDataStream>);

impl Stream for Lingering {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(body) = &mut self.0 else {
            return Poll::Ready(None);
        };
        let next = ready!(body.poll_next_unpin(cx));
        if !matches!(next, Some(Ok(_))) {
            // Ended, or broke off: nothing left to read.
            self.0 = None;
        }
        // axum's error shows its inner one's message, and has it as its source too.
        let broken = |error: axum::Error| io::Error::other(with_causes(&*error.into_inner()));
        Poll::Ready(next.map(|chunk| chunk.map_err(broken)))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut rest) = self.0.take().filter(|body| !body.is_end_stream()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let reading = async { while let Some(Ok(_)) = rest.next().await {} };
            if tokio::time::timeout(LINGER, reading).await.is_err() {
                tracing::debug!("a request body still unread {LINGER:?} after its answer: closing");
            }
        });
    }
}
