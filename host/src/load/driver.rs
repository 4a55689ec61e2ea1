//! Running a [`Workload`] against the server: HTTP workers (one request at a time
//! each, on a keep-alive connection of its own) or WebSocket connections (requests
//! pipelined, replies matched by position), every response checked byte by byte as
//! it streams in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Method, Request, Response, header};
use hyper_util::rt::TokioIo;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};

use super::process::CpuSnapshot;
use super::stats::{Recorder, Usage};
use super::target::Target;
use super::wire::{etl_fqn_query, hpull_path, hpush_path, ws_fqn};
use super::{BUCKET, Object, Stop, Transport, Workload};

/// WebSocket connections per cell at most; requests in flight are spread over them.
const WS_CONNECTIONS: usize = 4;
/// Largest WebSocket message either way (the protocol allows 16 GiB; the corpus is
/// in memory anyway).
const WS_MAX_MESSAGE: usize = 1 << 30;
/// The payload of each frame an AIStore target sends a data message in: gorilla's
/// default write buffer, one frame per write (protocol §4.4).
pub const TARGET_WS_FRAME: usize = 4 << 10;

/// Compares a response, chunk by chunk, with the expected bytes.
pub struct Check<'a> {
    expected: Option<&'a [u8]>,
    received: usize,
}

impl<'a> Check<'a> {
    /// `None`: count bytes only.
    pub fn new(expected: Option<&'a [u8]>) -> Check<'a> {
        Check {
            expected,
            received: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let start = self.received;
        self.received += chunk.len();
        let Some(expected) = self.expected else {
            return Ok(());
        };
        let Some(want) = expected.get(start..self.received) else {
            return Err(format!(
                "{} bytes or more, {} expected",
                self.received,
                expected.len()
            ));
        };
        if want != chunk {
            let at = start + want.iter().zip(chunk).take_while(|(a, b)| a == b).count();
            return Err(format!(
                "differs at byte {at} of {}: {:?}",
                expected.len(),
                preview(&chunk[at - start..])
            ));
        }
        Ok(())
    }

    /// The byte count, or an error if short.
    pub fn finish(self) -> Result<u64, String> {
        match self.expected {
            Some(expected) if self.received != expected.len() => Err(format!(
                "{} bytes, {} expected",
                self.received,
                expected.len()
            )),
            _ => Ok(self.received as u64),
        }
    }
}

/// The start of `bytes`, printable, for error messages.
fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned()
}

/// Drives workloads against one server, with one emulated target.
pub struct Driver {
    pub server: SocketAddr,
    pub target: Arc<Target>,
    /// How long one request may take before it counts as failed.
    pub request_timeout: Duration,
    /// WebSocket data messages go out in frames of this payload, each its own write;
    /// 0: each message in one frame.
    ws_frame: usize,
    ids: AtomicU64,
}

/// The result of [`Driver::run`].
pub struct Outcome {
    pub recorded: Recorder,
    /// Length of the measured part.
    pub elapsed: Duration,
    /// CPU used during the measured part.
    pub usage: Usage,
}

/// When requests may start, and which are measured.
struct Schedule {
    measure_from: Instant,
    deadline: Option<Instant>,
    /// Measured requests left to start (count mode).
    remaining: AtomicU64,
}

impl Schedule {
    /// `None`: stop; `Some(measured)`: start a request.
    fn next(&self) -> Option<bool> {
        let now = Instant::now();
        if now < self.measure_from {
            return Some(false);
        }
        match self.deadline {
            Some(deadline) => (now < deadline).then_some(true),
            None => self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .ok()
                .map(|_| true),
        }
    }
}

impl Schedule {
    /// No request may start any more.
    fn over(&self) -> bool {
        match self.deadline {
            Some(deadline) => Instant::now() >= deadline,
            None => {
                Instant::now() >= self.measure_from && self.remaining.load(Ordering::Relaxed) == 0
            }
        }
    }
}

impl Driver {
    pub fn new(
        server: SocketAddr,
        target: Arc<Target>,
        request_timeout: Duration,
        ws_frame: usize,
    ) -> Driver {
        Driver {
            server,
            target,
            request_timeout,
            ws_frame,
            ids: AtomicU64::new(0),
        }
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Run `workload`. `cpu` reads the CPU counters; it is called when the measured
    /// part starts and when the last request has finished.
    pub async fn run(
        self: &Arc<Self>,
        workload: &Workload,
        cpu: impl Fn() -> CpuSnapshot,
    ) -> Outcome {
        assert!(!workload.objects.is_empty(), "a workload needs objects");
        let concurrency = workload.concurrency.max(1);
        let measure_from = Instant::now() + workload.warmup;
        let (deadline, remaining) = match workload.stop {
            Stop::After(duration) => (Some(measure_from + duration), 0),
            Stop::Objects(count) => (None, count),
        };
        let schedule = Arc::new(Schedule {
            measure_from,
            deadline,
            remaining: AtomicU64::new(remaining),
        });
        let objects: Arc<[Arc<Object>]> = workload.objects.clone().into();
        let mut tasks = Vec::new();
        if workload.transport.is_ws() {
            let connections = concurrency.min(WS_CONNECTIONS);
            for c in 0..connections {
                // Spread `concurrency` outstanding requests over the connections.
                let depth = concurrency / connections + usize::from(c < concurrency % connections);
                tasks.push(tokio::spawn(ws_connection(
                    self.clone(),
                    schedule.clone(),
                    workload.transport,
                    objects.clone(),
                    depth,
                    c,
                )));
            }
        } else {
            for w in 0..concurrency {
                tasks.push(tokio::spawn(http_worker(
                    self.clone(),
                    schedule.clone(),
                    workload.transport,
                    objects.clone(),
                    w,
                )));
            }
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let start = cpu();
        let mut recorded = Recorder::default();
        for task in tasks {
            match task.await {
                Ok(worker) => recorded.merge(worker),
                Err(error) => recorded.error(format!("a worker failed: {error}")),
            }
        }
        let elapsed = measure_from.elapsed();
        Outcome {
            recorded,
            elapsed,
            usage: cpu().since(&start),
        }
    }

    /// One HTTP request of `transport` for `object` on `connection`, its response
    /// checked.
    async fn http_request(
        &self,
        connection: &mut Connection,
        transport: Transport,
        object: &Arc<Object>,
    ) -> Result<(), String> {
        let hpush = hpush_path(BUCKET, &object.name);
        let hpull = hpull_path(&object.uname());
        let fqn = etl_fqn_query(&object.fqn);
        let mut put_id = None;
        let request = Request::builder().header(header::HOST, self.server.to_string());
        let (request, body) = match transport {
            Transport::HpushBody => (request.method(Method::PUT).uri(hpush), object.data.clone()),
            Transport::HpushFqn => (
                request.method(Method::PUT).uri(format!("{hpush}?{fqn}")),
                Bytes::new(),
            ),
            Transport::HpullTarget => (request.method(Method::GET).uri(hpull), Bytes::new()),
            Transport::HpullFqn => (
                request.method(Method::GET).uri(format!("{hpull}?{fqn}")),
                Bytes::new(),
            ),
            Transport::HpushDirectPut => {
                let id = self.next_id();
                put_id = Some(id);
                let destination = self.target.expect_put(id, object.clone());
                let request = request.method(Method::PUT).uri(hpush);
                (
                    request.header("Ais-Node-Url", destination),
                    object.data.clone(),
                )
            }
            Transport::Ws | Transport::WsFqn | Transport::WsDirectPut => {
                unreachable!("not an HTTP transport")
            }
        };
        let request = request
            .body(Full::new(body))
            .expect("a well-formed request");
        let exchange = self.exchange(connection, request, object, put_id);
        let result = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.request_timeout)));
        if result.is_err() {
            // It may still carry the rest of an answer, or a late one.
            connection.close();
            if let Some(id) = put_id {
                self.target.take_verdict(id);
            }
        }
        result
    }

    async fn exchange(
        &self,
        connection: &mut Connection,
        request: Request<Full<Bytes>>,
        object: &Arc<Object>,
        put_id: Option<u64>,
    ) -> Result<(), String> {
        let response = connection.send(self.server, request).await?;
        let status = response.status().as_u16();
        let announced = response
            .headers()
            .get("ais-direct-put-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = response.into_body();
        let expected_status = if put_id.is_some() { 204 } else { 200 };
        if status != expected_status {
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(format!(
                "status {status}, {expected_status} expected: {:?}",
                preview(&body)
            ));
        }
        let mut check = Check::new(match put_id {
            Some(_) => Some(&[][..]),
            None => object.expected.as_deref(),
        });
        while let Some(frame) = body.frame().await {
            if let Some(chunk) = frame.map_err(|e| error_chain(&e))?.data_ref() {
                check.feed(chunk)?;
            }
        }
        check.finish()?;
        if let Some(id) = put_id {
            let length = self.put_verdict(id, object)?;
            if let Some(announced) = announced
                && announced != length
            {
                return Err(format!(
                    "Ais-Direct-Put-Length {announced}, {length} bytes put"
                ));
            }
        }
        Ok(())
    }

    /// What the target made of request `id`'s direct put.
    fn put_verdict(&self, id: u64, object: &Object) -> Result<u64, String> {
        match self.target.take_verdict(id) {
            Some(Ok(length)) => Ok(length),
            Some(Err(error)) => Err(format!("direct put of {:?}: {error}", object.name)),
            None => Err(format!(
                "delivered by direct put, but the target received no put of {:?}",
                object.name
            )),
        }
    }
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One HTTP worker's connection, kept from request to request and made again once
/// it breaks. A target's Go client puts a connection back in its pool before the
/// caller sees the end of the body, so one request at a time keeps to one
/// connection; reqwest's pool takes it back a task later, and opened a new
/// connection every 4-5 requests (hpush, 64 KiB, concurrency 1), accepts the server
/// paid for and a target would not make.
#[derive(Default)]
struct Connection(Option<http1::SendRequest<Full<Bytes>>>);

impl Connection {
    async fn send(
        &mut self,
        server: SocketAddr,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, String> {
        // Free again once the answer before it was read through.
        if let Some(sender) = &mut self.0
            && sender.ready().await.is_err()
        {
            self.0 = None;
        }
        let sender = match &mut self.0 {
            Some(sender) => sender,
            None => self.0.insert(connect(server).await?),
        };
        let response = sender.send_request(request).await;
        response.map_err(|error| error_chain(&error))
    }

    /// Not used again: a request on it failed.
    fn close(&mut self) {
        self.0 = None;
    }
}

async fn connect(server: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| format!("connecting to {server}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| error_chain(&e))?;
    // Ends when the sender is dropped or the server closes the connection.
    tokio::spawn(connection);
    Ok(sender)
}

async fn http_worker(
    driver: Arc<Driver>,
    schedule: Arc<Schedule>,
    transport: Transport,
    objects: Arc<[Arc<Object>]>,
    first: usize,
) -> Recorder {
    let mut recorder = Recorder::default();
    let mut connection = Connection::default();
    let mut next = first;
    while let Some(measured) = schedule.next() {
        let object = &objects[next % objects.len()];
        next += 1;
        let started = Instant::now();
        match driver
            .http_request(&mut connection, transport, object)
            .await
        {
            Ok(()) if measured => recorder.ok(object.size(), started.elapsed()),
            Ok(()) => {}
            Err(error) => {
                recorder.error(format!("{} {:?}: {error}", transport.name(), object.name))
            }
        }
    }
    recorder
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A request sent on a connection, waiting for its reply.
struct Pending {
    object: Arc<Object>,
    started: Instant,
    measured: bool,
    put_id: Option<u64>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// One WebSocket connection, re-dialled if it breaks, with up to `depth` requests
/// outstanding, until the schedule ends.
async fn ws_connection(
    driver: Arc<Driver>,
    schedule: Arc<Schedule>,
    transport: Transport,
    objects: Arc<[Arc<Object>]>,
    depth: usize,
    first: usize,
) -> Recorder {
    let mut recorder = Recorder::default();
    let mut next = first;
    let config = WebSocketConfig::default()
        .max_message_size(Some(WS_MAX_MESSAGE))
        .max_frame_size(Some(WS_MAX_MESSAGE));
    let url = format!("ws://{}/ws", driver.server);
    loop {
        let connected = tokio::time::timeout(
            driver.request_timeout,
            tokio_tungstenite::connect_async_with_config(&url, Some(config), true),
        )
        .await;
        let socket = match connected {
            Ok(Ok((socket, _))) => socket,
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error_chain(&error),
                    _ => "timed out".to_string(),
                };
                recorder.error(format!("connecting to {url}: {error}"));
                if schedule.over() {
                    break;
                }
                // Not a busy loop against a server that refuses.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let finished = ws_session(
            &driver,
            &schedule,
            transport,
            &objects,
            depth,
            &mut next,
            socket,
            &mut recorder,
        )
        .await;
        if finished {
            break;
        }
    }
    recorder
}

/// Send requests and read their replies on `socket` until the schedule ends (`true`)
/// or the connection fails (`false`).
#[allow(clippy::too_many_arguments)]
async fn ws_session(
    driver: &Arc<Driver>,
    schedule: &Arc<Schedule>,
    transport: Transport,
    objects: &Arc<[Arc<Object>]>,
    depth: usize,
    next: &mut usize,
    socket: Socket,
    recorder: &mut Recorder,
) -> bool {
    let (mut sink, mut stream) = socket.split();
    let permits = Arc::new(Semaphore::new(depth.max(1)));
    let (queue, mut replies) = mpsc::unbounded_channel::<Pending>();
    // The writer runs as its own task, so sending (masking) and receiving
    // (checking) can use two cores.
    let writer = {
        let (driver, schedule, objects, permits) = (
            driver.clone(),
            schedule.clone(),
            objects.clone(),
            permits.clone(),
        );
        let mut next = *next;
        tokio::spawn(async move {
            let mut errors = Recorder::default();
            let mut finished = false;
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break; // the reader gave up on the connection
                };
                let Some(measured) = schedule.next() else {
                    finished = true;
                    break;
                };
                let object = objects[next % objects.len()].clone();
                next += 1;
                let started = Instant::now();
                let put_id = transport.direct_put().then(|| driver.next_id());
                let pipeline = put_id.map(|id| driver.target.expect_put(id, object.clone()));
                let control = control_message(transport, &object, pipeline.as_deref());
                let mut sent = send(&mut sink, control, 0, driver.request_timeout).await;
                if sent.is_ok() && transport != Transport::WsFqn {
                    let (data, frame) = (object.data.clone(), driver.ws_frame);
                    sent = send(&mut sink, data, frame, driver.request_timeout).await;
                }
                if let Err(error) = sent {
                    if let Some(id) = put_id {
                        driver.target.take_verdict(id);
                    }
                    errors.error(format!(
                        "{} {:?}: sending: {error}",
                        transport.name(),
                        object.name,
                    ));
                    break;
                }
                let _ = queue.send(Pending {
                    object,
                    started,
                    measured,
                    put_id,
                    _permit: permit,
                });
            }
            drop(queue);
            (finished, next, errors, sink)
        })
    };
    let mut broken = false;
    while let Some(pending) = replies.recv().await {
        let name = &pending.object.name;
        if broken {
            recorder.error(format!(
                "{} {name:?}: the connection broke before its reply",
                transport.name()
            ));
            if let Some(id) = pending.put_id {
                driver.target.take_verdict(id);
            }
            continue;
        }
        let reply = next_reply(&mut stream, driver.request_timeout).await;
        match reply.and_then(|message| ws_check(driver, transport, &pending, message)) {
            Ok(()) if pending.measured => {
                recorder.ok(pending.object.size(), pending.started.elapsed());
            }
            Ok(()) => {}
            Err(error) => {
                if let Some(id) = pending.put_id {
                    driver.target.take_verdict(id);
                }
                recorder.error(format!("{} {name:?}: {error}", transport.name()));
                if error.starts_with(CONNECTION_ERROR) {
                    // No more replies will come: stop the writer, fail the rest.
                    broken = true;
                    permits.close();
                }
            }
        }
    }
    let Ok((finished, written, errors, mut sink)) = writer.await else {
        recorder.error("the WebSocket writer panicked");
        return false;
    };
    *next = written;
    recorder.merge(errors);
    if finished && !broken {
        // Every reply is in: say goodbye properly.
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        return true;
    }
    false
}

/// Sends `data` as one binary message, in frames of `frame` bytes each written on
/// its own as a target does (0: one frame).
async fn send(
    sink: &mut futures::stream::SplitSink<Socket, Message>,
    data: Bytes,
    frame: usize,
    timeout: Duration,
) -> Result<(), String> {
    let frames = async {
        if frame == 0 || data.len() <= frame {
            return sink.send(Message::Binary(data)).await;
        }
        let mut opcode = OpCode::Data(OpData::Binary);
        for start in (0..data.len()).step_by(frame) {
            let end = data.len().min(start + frame);
            let fin = end == data.len();
            let piece = Frame::message(data.slice(start..end), opcode, fin);
            sink.send(Message::Frame(piece)).await?;
            opcode = OpCode::Data(OpData::Continue);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, frames).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error_chain(&error)),
        Err(_) => Err(format!("not sent within {timeout:?}")),
    }
}

const CONNECTION_ERROR: &str = "connection: ";

/// The next data message (BINARY or TEXT) on the connection.
async fn next_reply(
    stream: &mut futures::stream::SplitStream<Socket>,
    timeout: Duration,
) -> Result<Message, String> {
    loop {
        let message = match tokio::time::timeout(timeout, stream.next()).await {
            Err(_) => return Err(format!("{CONNECTION_ERROR}no reply within {timeout:?}")),
            Ok(None) => return Err(format!("{CONNECTION_ERROR}closed by the server")),
            Ok(Some(Err(error))) => {
                return Err(format!("{CONNECTION_ERROR}{}", error_chain(&error)));
            }
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Binary(_) | Message::Text(_) => return Ok(message),
            Message::Close(frame) => {
                return Err(format!("{CONNECTION_ERROR}closed by the server: {frame:?}"));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Check one reply: BINARY with the expected output, or for a direct put, TEXT
/// (the byte count) after the target received the expected output.
fn ws_check(
    driver: &Driver,
    transport: Transport,
    pending: &Pending,
    message: Message,
) -> Result<(), String> {
    let object = &pending.object;
    match (message, pending.put_id) {
        (Message::Binary(data), None) => {
            let mut check = Check::new(object.expected.as_deref());
            check.feed(&data)?;
            check.finish().map(drop)
        }
        (Message::Text(text), Some(id)) => {
            let length = driver.put_verdict(id, object)?;
            match text.as_str().trim().parse::<u64>() {
                Ok(count) if count != length => {
                    Err(format!("TEXT reply {count}, but {length} bytes were put"))
                }
                _ => Ok(()),
            }
        }
        (Message::Text(text), None) => Err(format!("TEXT reply: {:?}", preview(text.as_bytes()))),
        (Message::Binary(data), Some(_)) => Err(format!(
            "BINARY reply to a direct put ({} bytes), TEXT expected",
            data.len()
        )),
        (other, _) => Err(format!("unexpected {} message {other:?}", transport.name())),
    }
}

/// The control message a target sends (§4.4): compact JSON, keys in the target's
/// order, empty ones omitted; `path` is the object name.
fn control_message(transport: Transport, object: &Object, pipeline: Option<&str>) -> Bytes {
    let fqn = (transport == Transport::WsFqn).then(|| ws_fqn(&object.fqn));
    let fields: Vec<String> = [
        ("pipeline", pipeline),
        ("fqn", fqn.as_deref()),
        ("path", Some(object.name.as_str())),
    ]
    .into_iter()
    .filter_map(|(key, value)| {
        let value = serde_json::to_string(value?).expect("a JSON string");
        Some(format!("\"{key}\":{value}"))
    })
    .collect();
    format!("{{{}}}", fields.join(",")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_where_bytes_differ() {
        let mut check = Check::new(Some(b"hello world"));
        check.feed(b"hello").unwrap();
        assert!(check.feed(b" wOrld").unwrap_err().contains("byte 7"));
        let mut check = Check::new(Some(b"abc"));
        check.feed(b"ab").unwrap();
        assert!(check.finish().unwrap_err().contains("2 bytes, 3 expected"));
        let mut check = Check::new(Some(b"abc"));
        assert!(check.feed(b"abcd").is_err());
        let mut check = Check::new(None);
        check.feed(b"anything").unwrap();
        assert_eq!(check.finish(), Ok(8));
    }

    /// One request at a time keeps to one connection, as a target's does; a
    /// connection the server closed is dialled again.
    #[tokio::test]
    async fn a_worker_keeps_to_one_connection() {
        use hyper::service::service_fn;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::Relaxed);
                // Echo; a body of "close" ends the connection after its answer.
                let echo = service_fn(|request: Request<Incoming>| async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    let mut response = Response::new(Full::new(body.clone()));
                    if body == "close" {
                        let close = header::HeaderValue::from_static("close");
                        response.headers_mut().insert(header::CONNECTION, close);
                    }
                    Ok::<_, hyper::Error>(response)
                });
                let serve = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), echo);
                tokio::spawn(serve);
            }
        });
        let mut connection = Connection::default();
        let mut exchange = async |body: &'static str| {
            let request = Request::put("/o")
                .header(header::HOST, server.to_string())
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap();
            let response = connection.send(server, request).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        };
        for i in 0..100 {
            assert_eq!(exchange("object").await, "object", "request {i}");
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
        assert_eq!(exchange("close").await, "close");
        assert_eq!(exchange("object").await, "object");
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }
}
