//! The emulated AIStore target, on 127.0.0.1:0: the per-ETL object endpoint of §10
//! of the protocol document, `/v1/etl/_object/<etl>/<secret>/<uname>`.
//!
//! - `GET`: an object of the corpus, by uname (the uname one escaped segment, or
//!   with literal `/`: everything after the secret is decoded once).
//! - `PUT`: a direct put. The body is consumed and compared, chunk by chunk, with the
//!   output expected for the request that caused it (the destination uname carries
//!   the request's id); the verdict waits for the driver, and the answer is what a
//!   target answers: 200, empty.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::Object;
use super::driver::Check;
use super::wire::path_escape;

/// The ETL's name in `AIS_TARGET_URL`.
pub const ETL_NAME: &str = "bench";
/// The ETL's secret (ten letters, like AIStore's).
pub const SECRET: &str = "BenchSecrt";
/// The job id a target appends to destination entries.
pub const JOB_UUID: &str = "bench";
const OBJECT_ENDPOINT: &str = "/v1/etl/_object/";
/// Destination unames: `ais/@#/dst/put-<request id>`.
const DESTINATION_PREFIX: &str = "ais/@#/dst/put-";

/// What the target made of one direct put: the bytes received, or why they are wrong.
pub type Verdict = Result<u64, String>;

#[derive(Default)]
struct Shared {
    objects: Mutex<HashMap<String, Arc<Object>>>,
    expected_puts: Mutex<HashMap<u64, Arc<Object>>>,
    verdicts: Mutex<HashMap<u64, Verdict>>,
}

/// The running emulator; stops when dropped.
pub struct Target {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Target {
    pub async fn start() -> anyhow::Result<Target> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the emulated target")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(crate::protocol::without_nagle(listener), app).await {
                tracing::error!(%error, "the emulated target stopped");
            }
        });
        Ok(Target { addr, shared, task })
    }

    /// `AIS_TARGET_URL` for the server under test.
    pub fn etl_url(&self) -> String {
        format!("http://{}{OBJECT_ENDPOINT}{ETL_NAME}/{SECRET}", self.addr)
    }

    /// Serve `object` on GET, under its uname.
    pub fn serve(&self, object: Arc<Object>) {
        self.shared
            .objects
            .lock()
            .unwrap()
            .insert(object.uname(), object);
    }

    /// The destination entry of request `id` for `Ais-Node-Url` or `pipeline`
    /// (§6.1: this target's address, an escaped uname, `owt` and `uuid`), after
    /// which a put of `object`'s expected output is awaited.
    pub fn expect_put(&self, id: u64, object: Arc<Object>) -> String {
        self.shared.expected_puts.lock().unwrap().insert(id, object);
        format!(
            "http://{}/{}?owt=3&uuid={JOB_UUID}",
            self.addr,
            path_escape(&format!("{DESTINATION_PREFIX}{id}"))
        )
    }

    /// The verdict on request `id`'s put, once the put was answered; forgets the
    /// request either way.
    pub fn take_verdict(&self, id: u64) -> Option<Verdict> {
        self.shared.expected_puts.lock().unwrap().remove(&id);
        self.shared.verdicts.lock().unwrap().remove(&id)
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix(OBJECT_ENDPOINT) else {
        return (StatusCode::NOT_FOUND, "not an ETL object path").into_response();
    };
    let mut items = rest.splitn(3, '/');
    let (etl, secret, uname) = (items.next(), items.next(), items.next());
    if etl != Some(ETL_NAME) || secret != Some(SECRET) {
        return (StatusCode::BAD_REQUEST, "unrecognized request source").into_response();
    }
    let Some(uname) = uname
        .and_then(|u| percent_encoding::percent_decode_str(u).decode_utf8().ok())
        .map(|u| u.into_owned())
    else {
        return (StatusCode::BAD_REQUEST, "bad uname").into_response();
    };
    match *request.method() {
        Method::GET => {
            let object = shared.objects.lock().unwrap().get(&uname).cloned();
            match object {
                Some(object) => Response::new(Body::from(object.data.clone())),
                None => (StatusCode::NOT_FOUND, format!("{uname:?} not found")).into_response(),
            }
        }
        Method::PUT => {
            let query = request.uri().query().unwrap_or("").to_string();
            let Some(id) = uname
                .strip_prefix(DESTINATION_PREFIX)
                .and_then(|id| id.parse::<u64>().ok())
            else {
                return (StatusCode::BAD_REQUEST, "not a destination of this run").into_response();
            };
            let verdict = receive(&shared, id, &query, request.into_body()).await;
            let status = if verdict.is_ok() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            shared.verdicts.lock().unwrap().insert(id, verdict);
            status.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// Consume a direct put's body, checking it against request `id`'s expected output.
async fn receive(shared: &Shared, id: u64, query: &str, body: Body) -> Verdict {
    let object = shared.expected_puts.lock().unwrap().remove(&id);
    let Some(object) = object else {
        return Err(format!("a put for request {id}, which expects none"));
    };
    // §6.3: the destination entry's query is forwarded verbatim.
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let has = |key: &str, value: &str| params.iter().any(|(k, v)| k == key && v == value);
    if !has("owt", "3") || !has("uuid", JOB_UUID) {
        return Err(format!("the put lost owt/uuid from its query: {query:?}"));
    }
    let mut check = Check::new(object.expected.as_deref());
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading the put's body: {e}"))?;
        check.feed(&chunk)?;
    }
    check.finish()
}
