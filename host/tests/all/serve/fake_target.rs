//! A fake AIStore target on 127.0.0.1:0: it records every request it receives
//! (method, raw path and query, headers, body), serves objects on
//! `GET /v1/etl/_object/<etl>/<secret>/<uname>` (and plain files on other paths, for
//! downloads), and answers direct puts (`PUT`) as scripted: 200 empty, 200 with a
//! body, 204 with `Ais-Direct-Put-Length`, any status, a redirect, a connection
//! reset in the middle of the body, or no answer at all. GETs of an object can be
//! made to fail the same ways. [`FakeTarget::down`] is a port that refuses
//! connections until it comes up.
//!
//! Built on hyper directly rather than axum: resetting one connection needs the
//! socket.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;

type Body = BoxBody<Bytes, std::io::Error>;

/// One request as the target saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// The request target exactly as sent: raw (escaped) path and query.
    pub target: String,
    pub headers: HeaderMap,
    /// The body (for a reset put: what was read before the reset).
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// How the target answers a `PUT`.
#[derive(Debug, Clone)]
pub enum Put {
    /// 200 with an empty body: "stored".
    Ok,
    /// 200 with this body.
    OkBody(Bytes),
    /// 204, with `Ais-Direct-Put-Length` when given.
    NoContent(Option<u64>),
    /// This status and body.
    Status(u16, Bytes),
    /// This status (a redirect) with `Location` set to this URL.
    Redirect(u16, String),
    /// Read the first piece of the body, then reset the connection (RST).
    Reset,
    /// Read the whole body, then never answer (a hop slower than any deadline).
    Hang,
    /// 200 announcing a longer body than these bytes, which never comes.
    OkBodyThenStall(Bytes),
}

/// How the target fails a `GET` of an object (see [`FakeTarget::fail_object`]).
#[derive(Debug, Clone)]
pub enum Get {
    /// This status and body.
    Status(u16, Bytes),
    /// This status (a redirect) with `Location` set to this URL.
    Redirect(u16, String),
    /// Reset the connection (RST) instead of answering.
    Reset,
    /// Never answer.
    Hang,
}

/// An object served on GET.
#[derive(Clone)]
struct Object {
    data: Bytes,
    /// Announce the full length but stop after this many bytes and drop the
    /// connection, as a target failing mid-object.
    cut_at: Option<usize>,
    /// Fail the GET instead of serving `data`.
    failure: Option<Get>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    objects: Mutex<HashMap<String, Object>>,
    script: Mutex<VecDeque<Put>>,
    fallback: Mutex<Option<Put>>,
}

pub struct FakeTarget {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The per-ETL object endpoint's prefix.
pub const OBJECT_ENDPOINT: &str = "/v1/etl/_object/";

impl FakeTarget {
    /// Start on 127.0.0.1:0; puts are answered 200 (empty) until scripted otherwise.
    pub async fn start() -> FakeTarget {
        FakeTarget::start_with(true).await
    }

    /// Like [`start`](Self::start), but every connection is closed after one
    /// response, so that none stays open in the server's client pool.
    pub async fn start_closing_connections() -> FakeTarget {
        FakeTarget::start_with(false).await
    }

    /// A port on 127.0.0.1 that refuses connections until [`Down::come_up`]: a next
    /// hop whose pod is restarting.
    pub fn down() -> Down {
        let socket = TcpSocket::new_v4().unwrap();
        // Bound but not listening: the port is ours, and connections are refused.
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        Down { socket, addr }
    }

    async fn start_with(keep_alive: bool) -> FakeTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakeTarget::serve(listener, keep_alive, Shared::default())
    }

    fn serve(listener: TcpListener, keep_alive: bool, shared: Shared) -> FakeTarget {
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(shared);
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(connection(stream, accept_shared.clone(), keep_alive));
            }
        });
        FakeTarget { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `AIS_TARGET_URL` of ETL `etl` on this target.
    pub fn etl_url(&self, etl: &str) -> String {
        format!("{}{OBJECT_ENDPOINT}{etl}/{SECRET}", self.url())
    }

    /// Serve `data` as the object with this uname (decoded form, `ais/@#/b/o`).
    pub fn put_object(&self, uname: &str, data: impl Into<Bytes>) {
        self.insert(uname, data.into(), None);
    }

    /// Serve an object of `data.len()` bytes (so announced in `Content-Length`) that
    /// breaks off after `cut_at` bytes.
    pub fn put_broken_object(&self, uname: &str, data: impl Into<Bytes>, cut_at: usize) {
        self.insert(uname, data.into(), Some(cut_at));
    }

    /// Serve `data` on a plain path (raw, as requested), e.g. `/files/a%20b`.
    pub fn put_file(&self, raw_path: &str, data: impl Into<Bytes>) {
        self.insert(raw_path, data.into(), None);
    }

    /// Answer GETs of the object with this uname (decoded form), or of this plain
    /// path, by failing or redirecting.
    pub fn fail_object(&self, uname: &str, failure: Get) {
        self.shared.objects.lock().unwrap().insert(
            uname.to_string(),
            Object {
                data: Bytes::new(),
                cut_at: None,
                failure: Some(failure),
            },
        );
    }

    fn insert(&self, key: &str, data: Bytes, cut_at: Option<usize>) {
        self.shared.objects.lock().unwrap().insert(
            key.to_string(),
            Object {
                data,
                cut_at,
                failure: None,
            },
        );
    }

    /// Answer the next puts with these, in order; then with the fallback.
    pub fn script(&self, puts: impl IntoIterator<Item = Put>) {
        self.shared.script.lock().unwrap().extend(puts);
    }

    /// How puts are answered once the script is used up (initially `Put::Ok`).
    pub fn always(&self, put: Put) {
        *self.shared.fallback.lock().unwrap() = Some(put);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The `PUT`s received so far.
    pub fn puts(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::PUT)
            .collect()
    }
}

/// See [`FakeTarget::down`].
pub struct Down {
    socket: TcpSocket,
    pub addr: SocketAddr,
}

impl Down {
    /// Start listening on this port, answering every put with `put`.
    pub fn come_up(self, put: Put) -> FakeTarget {
        let shared = Shared {
            fallback: Mutex::new(Some(put)),
            ..Shared::default()
        };
        FakeTarget::serve(self.socket.listen(1024).unwrap(), true, shared)
    }
}

/// The ETLs' secret in `AIS_TARGET_URL` (10 letters, like AIStore's).
pub const SECRET: &str = "QzXvKpLmNt";

async fn connection(stream: tokio::net::TcpStream, shared: Arc<Shared>, keep_alive: bool) {
    let fd = stream.as_raw_fd();
    let reset = Arc::new(Notify::new());
    let service_reset = reset.clone();
    let service = hyper::service::service_fn(move |request| {
        handle(request, shared.clone(), service_reset.clone())
    });
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = served => {}
        _ = reset.notified() => {
            // Linger 0: closing sends RST instead of FIN. `served` still owns the
            // socket here, so the descriptor is valid; dropping it closes.
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: a valid open socket and a properly sized option value.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    reset: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    let (parts, mut body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    let mut record = Recorded {
        method: parts.method.clone(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body: Bytes::new(),
    };

    if parts.method == Method::PUT {
        let put = shared.script.lock().unwrap().pop_front();
        let put = put
            .or_else(|| shared.fallback.lock().unwrap().clone())
            .unwrap_or(Put::Ok);
        if let Put::Reset = put {
            // Read one piece of the body so the sender is mid-body, then reset.
            if let Some(Ok(frame)) = body.frame().await {
                record.body = frame.into_data().unwrap_or_default();
            }
            shared.requests.lock().unwrap().push(record);
            reset.notify_one();
            return std::future::pending().await;
        }
        record.body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        shared.requests.lock().unwrap().push(record);
        if let Put::Hang = put {
            return std::future::pending().await;
        }
        return Ok(match put {
            Put::Ok => respond(StatusCode::OK, Bytes::new()),
            Put::OkBody(body) => respond(StatusCode::OK, body),
            Put::NoContent(length) => {
                let mut response = respond(StatusCode::NO_CONTENT, Bytes::new());
                if let Some(length) = length {
                    response
                        .headers_mut()
                        .insert("ais-direct-put-length", length.into());
                }
                response
            }
            Put::Status(status, body) => respond(StatusCode::from_u16(status).unwrap(), body),
            Put::Redirect(status, location) => redirect(status, &location),
            Put::OkBodyThenStall(head) => {
                let length = head.len() + 1;
                let frames = futures::StreamExt::chain(
                    futures::stream::iter([Ok::<_, std::io::Error>(Frame::data(head))]),
                    futures::stream::pending(),
                );
                let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_LENGTH, length.into());
                response
            }
            Put::Reset | Put::Hang => unreachable!(),
        });
    }

    record.body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    shared.requests.lock().unwrap().push(record);
    if parts.method != Method::GET {
        return Ok(respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new()));
    }
    // The per-ETL endpoint takes everything after the secret as one item and
    // decodes it once (§10); other paths are looked up raw.
    let path = parts.uri.path();
    let key = match path.strip_prefix(OBJECT_ENDPOINT) {
        Some(rest) => match rest.splitn(3, '/').nth(2) {
            Some(uname) => percent_encoding::percent_decode_str(uname)
                .decode_utf8_lossy()
                .into_owned(),
            None => return Ok(respond(StatusCode::BAD_REQUEST, "bad path".into())),
        },
        None => path.to_string(),
    };
    let object = shared.objects.lock().unwrap().get(&key).cloned();
    let Some(object) = object else {
        // As AIStore's error bodies do, with the request's path and so the secret.
        let url_path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let body = serde_json::json!({"message": format!("object {key:?} not found"),
            "url_path": url_path, "status": 404});
        return Ok(respond(StatusCode::NOT_FOUND, body.to_string().into()));
    };
    match object.failure {
        Some(Get::Status(status, body)) => {
            return Ok(respond(StatusCode::from_u16(status).unwrap(), body));
        }
        Some(Get::Redirect(status, location)) => return Ok(redirect(status, &location)),
        Some(Get::Reset) => {
            reset.notify_one();
            return std::future::pending().await;
        }
        Some(Get::Hang) => return std::future::pending().await,
        None => {}
    }
    let Some(cut_at) = object.cut_at else {
        return Ok(respond(StatusCode::OK, object.data));
    };
    let length = object.data.len();
    let head = object.data.slice(..cut_at);
    // The break comes after what was sent went out: a pending poll first, on which
    // hyper writes its buffer (else it would drop the head and the headers unsent).
    let broken = async {
        tokio::task::yield_now().await;
        Err(std::io::Error::other(
            "the fake target breaks off mid-object",
        ))
    };
    let head = futures::stream::once(async { Ok(Frame::data(head)) });
    let frames = futures::StreamExt::chain(head, futures::stream::once(broken));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_LENGTH, length.into());
    Ok(response)
}

fn redirect(status: u16, location: &str) -> Response<Body> {
    let mut response = respond(StatusCode::from_u16(status).unwrap(), Bytes::new());
    let location = location.parse().unwrap();
    response
        .headers_mut()
        .insert(hyper::header::LOCATION, location);
    response
}

fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}
