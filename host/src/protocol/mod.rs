//! The AIStore ETL wire protocol: the only module that knows HTTP and WebSocket. It
//! turns requests into [`Job`](crate::etl::Job)s and outcomes into responses,
//! following ../shared/protocol/ais-etl-protocol.md (cited as §N below).
//!
//! API Boundary: every route and status here is what AIStore targets depend on.

mod control;
mod error;
mod http;
mod server;
mod ws;

pub use error::HttpError;
pub use server::serve;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::routing::{any, get, post};
use axum::serve::{ListenerExt, TapIo};
use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};

use crate::etl::Etl;
use crate::metrics::Metrics;
use crate::source::HeldInput;
use crate::source::fqn::FqnPolicy;
use crate::source::target::Target;

/// What every handler shares (behind one `Arc`: axum clones the state per request).
pub struct AppState {
    /// The ETL in service: `None` while the component loads (`/health` answers 503),
    /// replaced whole by a hot swap. A request keeps the one it started with.
    pub etl: Arc<ArcSwapOption<Etl>>,
    /// The ETL's name, on every log line of a request.
    pub name: Arc<str>,
    pub metrics: Arc<Metrics>,
    /// `POST /admin/reload`, when an admin token is configured.
    pub admin: Option<Arc<Admin>>,
    /// `AIS_TARGET_URL` (`<scheme>://<target>/v1/etl/_object/<etl>/<secret>`), for
    /// the objects read from the target.
    pub target: Option<Arc<Target>>,
    /// For `POST /download` sources, which may be anywhere: never sends the token.
    pub download_client: reqwest::Client,
    /// Which files `etl_fqn` may name (§11).
    pub fqn_policy: Arc<FqnPolicy>,
    /// The temporary disk space that WebSocket replies held in files share.
    pub reply_space: Arc<crate::held::SpillSpace>,
    /// The bytes of objects held whole, read and waiting for their transform
    /// (`--held-input`): the WebSocket reader takes from it, and `Etl` from the same
    /// budget for what it reads whole over HTTP.
    pub held_input: HeldInput,
    /// The memory all WebSocket connections' finished replies may take while they
    /// wait to be written ([`new_ws_replies_in_memory`]).
    pub ws_replies_in_memory: Arc<tokio::sync::Semaphore>,
}

/// The budget of [`AppState::ws_replies_in_memory`].
pub fn new_ws_replies_in_memory() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        ws::ALL_REPLIES_IN_MEMORY as usize,
    ))
}

/// The hot-swap endpoint: off unless a token is configured.
pub struct Admin {
    /// Required as `Authorization: Bearer <token>`.
    pub token: String,
    /// Re-read the component source, validate it fully and switch to it; the
    /// message says what happened.
    pub reload: Box<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>,
}

/// The router. Object paths are never normalised or redirected (§4.6): everything
/// that is not one of the fixed routes is an object, `PUT /health` included. The
/// fixed routes shadow no object: `GET /metrics` is no uname (those hold `%2F`,
/// §4.3), and AIStore sends no `POST` but `/download`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(http::health).fallback(http::object))
        .route("/metrics", get(http::metrics).fallback(http::object))
        .route("/admin/reload", post(http::reload).fallback(http::object))
        .route("/ws", get(ws::upgrade).fallback(http::object))
        .route("/download", post(http::download).fallback(http::object))
        .route("/", any(http::object))
        .fallback(http::object)
        .with_state(Arc::new(state))
}

/// `listener` with Nagle's algorithm off on every connection (`TCP_NODELAY`), as Go's
/// net package, and so AIStore, has it. Each reply is written whole, so there is
/// nothing to coalesce; with Nagle, the tail of a reply longer than one segment (a
/// 64 KiB object and its WebSocket header) waited for the peer's acknowledgement of
/// the head, which cost WebSocket replies of that size 60% more server CPU.
pub fn without_nagle(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {error}");
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn accepted_connections_send_without_nagle() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut listener = super::without_nagle(listener);
        let _client = TcpStream::connect(address).await.unwrap();
        let (stream, _) = listener.accept().await;
        assert!(stream.nodelay().unwrap());
    }
}
