//! Connections served thread-per-core: each accepted connection is handed to one of
//! N threads, each running its own single-threaded runtime, and stays there; a
//! WebSocket session may move between them ([`Upgraded::serve`]).
//!
//! Why not one multi-threaded runtime: hyper wakes its connection task from within
//! the task's own poll (its body channel) about once a request, and tokio's
//! work-stealing scheduler answers such a wake by unparking an idle worker to steal
//! the task. An object request on a quiet connection thus cost two context switches
//! beyond its own, a fifth of the server's CPU at concurrency 1. Here a request
//! touches one thread only (the guests' runtime aside, for calls past an epoch tick).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::Listener;
use futures::FutureExt;
use futures::future::BoxFuture;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::without_nagle;
use crate::threads::{self, Threads};

/// Serve `router` on `listener` from `threads` threads until `stop` resolves; then
/// accept no more connections, let every connection finish the request it is in
/// (graceful shutdown) and return once all have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    threads: usize,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (threads, _stop) = Threads::start(threads)?;
    let connections: Arc<[Arc<AtomicUsize>]> = (0..threads.len()).map(|_| Arc::default()).collect();
    let placement = Placement {
        threads,
        connections,
        last_move: Arc::default(),
    };
    let mut listener = without_nagle(listener);
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        // Deregistered here, registered again with the chosen thread's reactor.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!("cannot hand over an accepted connection: {error}");
                continue;
            }
        };
        let index = (0..placement.threads.len())
            .min_by_key(|&index| placement.connections[index].load(Ordering::Relaxed))
            .expect("at least one serving thread");
        let load = Load::new(&placement.connections[index]);
        let connection = serve_connection(
            stream,
            load,
            placement.clone(),
            router.clone(),
            draining.clone(),
        );
        let runtime = placement.threads.runtime(index);
        runtime.spawn(connections.track_future(connection));
    }
    drop(listener);
    draining.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One HTTP/1.1 connection until the peer closes it, `draining` asks it to close
/// after its current request, or a WebSocket upgrade takes the socket over. (Graceful
/// shutdown does not wait for WebSocket sessions: a target keeps them for hours, and
/// AIStore deletes an ETL's pod without a grace period anyway.)
async fn serve_connection(
    stream: std::net::TcpStream,
    load: Load,
    placement: Placement,
    router: Router,
    draining: CancellationToken,
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!("cannot register an accepted connection: {error}");
            return;
        }
    };
    let service = TowerToHyperService::new(router);
    // No timer, so no header-read timeout: hyper's runs while a keep-alive connection
    // waits for its next request too, and would close the target's idle connections,
    // where a PUT that races the close fails without being replayed.
    let connection = http1::Builder::new()
        .serve_connection(
            TokioIo::new(Counted {
                stream,
                _load: load,
                placement,
            }),
            service,
        )
        .with_upgrades();
    tokio::pin!(connection);
    let mut asked = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!("connection ended: {error}");
                }
                return;
            }
            () = draining.cancelled(), if !asked => {
                asked = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The serving threads and the connections on each: a new connection goes to the
/// thread with the fewest.
#[derive(Clone)]
struct Placement {
    threads: Arc<Threads>,
    connections: Arc<[Arc<AtomicUsize>]>,
    /// When a WebSocket session last moved ([`Seat::better`]).
    last_move: Arc<Mutex<Option<Instant>>>,
}

/// A serving thread's share of time at work under which it takes new WebSocket
/// sessions: one that keeps up with half its time free can take another.
const SPARE: f64 = 0.5;

/// A serving thread's share of time at work from which its WebSocket sessions move
/// to one with time to spare: it has more to do than it keeps up with.
const BUSY: f64 = 0.9;

/// A connection's socket, counted against its thread while open: after a WebSocket
/// upgrade too, when the socket outlives the HTTP connection that accepted it. It
/// knows the serving threads, for the session to move to one of them.
struct Counted {
    stream: TcpStream,
    _load: Load,
    placement: Placement,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The socket of a connection `serve` accepted and hyper upgraded to WebSocket, with
/// the bytes hyper read past the upgrade request. `None` for a connection accepted
/// elsewhere.
pub(super) fn upgraded_socket(upgraded: hyper::upgrade::Upgraded) -> Option<Upgraded> {
    let parts = upgraded.downcast::<TokioIo<Counted>>().ok()?;
    Some(Upgraded {
        counted: parts.io.into_inner(),
        early: parts.read_buf,
    })
}

pub(super) struct Upgraded {
    counted: Counted,
    early: bytes::Bytes,
}

/// What a WebSocket session ends with: nothing, or its socket, the bytes read from it
/// and not yet used, and the seat it moves to.
pub(super) type Moving = Option<(TcpStream, bytes::Bytes, Seat)>;

impl Upgraded {
    /// Run `session` on the socket, on the first serving thread whose share of time
    /// at work is under [`SPARE`] (the least busy if none is), and again on another
    /// thread whenever it returns to move ([`Seat::better`]).
    ///
    /// A target keeps a few sessions, each carrying many objects at once: gathered
    /// on one thread they find it awake more often, where spread over two each
    /// thread slept and was woken about once an object (WebSocket echo at 64 KiB
    /// and concurrency 8 and 32: 1.2-1.4x the MiB per server CPU second, the same or
    /// more objects/s). A session moves off once its thread is saturated and another
    /// has time to spare, as with md5, whose calls run on their session's thread.
    pub(super) async fn serve<F, S>(self, session: F)
    where
        F: FnOnce(TcpStream, bytes::Bytes, Seat) -> S + Clone + Send + 'static,
        S: Future<Output = Moving> + Send + 'static,
    {
        let Upgraded { counted, early } = self;
        let Counted {
            stream,
            placement,
            _load: accepted,
        } = counted;
        // The session counts against its seat's thread from here.
        drop(accepted);
        let index = placement.for_session();
        let seat = Seat::new(placement, index);
        if threads::current() == Some(index) {
            seat.run(stream, early, session).await;
        } else {
            seat.start(stream, early, session);
        }
    }
}

/// A WebSocket session's place: the serving thread it runs on, counted against it.
pub(super) struct Seat {
    placement: Placement,
    index: usize,
    _load: Load,
    checked: Instant,
}

impl Seat {
    /// How often a session asks whether to move: a share is sampled over 50 ms.
    const CHECK_EVERY: Duration = Duration::from_millis(100);

    /// A server moves at most one session this often, so that the shares show the
    /// effect of one move before the next is decided.
    const MOVE_EVERY: Duration = Duration::from_millis(250);

    fn new(placement: Placement, index: usize) -> Seat {
        let load = Load::new(&placement.connections[index]);
        Seat {
            placement,
            index,
            _load: load,
            checked: Instant::now(),
        }
    }

    /// Run `session` here, then wherever it moves.
    fn run<F, S>(self, stream: TcpStream, early: bytes::Bytes, session: F) -> BoxFuture<'static, ()>
    where
        F: FnOnce(TcpStream, bytes::Bytes, Seat) -> S + Clone + Send + 'static,
        S: Future<Output = Moving> + Send + 'static,
    {
        async move {
            if let Some((stream, early, seat)) = session.clone()(stream, early, self).await {
                seat.start(stream, early, session);
            }
        }
        .boxed()
    }

    /// Run `session` on this seat's thread, from another.
    fn start<F, S>(self, stream: TcpStream, early: bytes::Bytes, session: F)
    where
        F: FnOnce(TcpStream, bytes::Bytes, Seat) -> S + Clone + Send + 'static,
        S: Future<Output = Moving> + Send + 'static,
    {
        // Deregistered here, registered again with the chosen thread's reactor.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!("cannot hand over a WebSocket session: {error}");
                return;
            }
        };
        let runtime = self.placement.threads.runtime(self.index).clone();
        runtime.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => self.run(stream, early, session).await,
                Err(error) => tracing::debug!("cannot register a WebSocket session: {error}"),
            }
        });
    }

    /// A seat on another thread, if this one's thread is saturated (its share of
    /// time at work at least [`BUSY`]), serves more than this session, and another
    /// has time to spare. Cheap when asked between every message: it looks only
    /// every [`Seat::CHECK_EVERY`].
    pub(super) fn better(&mut self) -> Option<Seat> {
        let now = Instant::now();
        if now.duration_since(self.checked) < Self::CHECK_EVERY {
            return None;
        }
        self.checked = now;
        let placement = &self.placement;
        let threads = &placement.threads;
        if placement.connections[self.index].load(Ordering::Relaxed) < 2
            || threads.share(self.index) < BUSY
        {
            return None;
        }
        let (to, share) = (0..threads.len())
            .map(|index| (index, threads.share(index)))
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        if share >= SPARE {
            return None;
        }
        let mut last = placement
            .last_move
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|last| now.duration_since(last) < Self::MOVE_EVERY) {
            return None;
        }
        *last = Some(now);
        tracing::debug!(
            from = self.index,
            to,
            "moving a WebSocket session to a thread with time to spare"
        );
        Some(Seat::new(placement.clone(), to))
    }
}

impl Placement {
    /// The first thread whose share of time at work is under [`SPARE`], else the
    /// least busy.
    fn for_session(&self) -> usize {
        let shares: Vec<f64> = (0..self.threads.len())
            .map(|i| self.threads.share(i))
            .collect();
        shares
            .iter()
            .position(|&share| share < SPARE)
            .or_else(|| (0..shares.len()).min_by(|&a, &b| shares[a].total_cmp(&shares[b])))
            .expect("at least one serving thread")
    }
}

/// One connection counted against its thread while alive.
pub(super) struct Load(Arc<AtomicUsize>);

impl Load {
    fn new(count: &Arc<AtomicUsize>) -> Load {
        count.fetch_add(1, Ordering::Relaxed);
        Load(count.clone())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::extract::Request;
    use axum::routing::get;
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    use futures::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio::net::TcpStream;
    use tokio::sync::{Notify, oneshot};
    use tokio_tungstenite::tungstenite;

    use super::serve;

    fn thread_name() -> String {
        std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string()
    }

    /// A server on loopback; the sender stops it.
    async fn start(
        router: Router,
    ) -> (
        String,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, 2, async move {
            let _ = stopped.await;
        }));
        (url, stop, server)
    }

    async fn get_text(client: &reqwest::Client, url: &str) -> String {
        let response = client.get(url).send().await.unwrap();
        assert!(response.status().is_success());
        response.text().await.unwrap()
    }

    #[tokio::test]
    async fn connections_spread_over_the_threads_and_stay_on_theirs() {
        let (url, stop, server) =
            start(Router::new().route("/", get(async || thread_name()))).await;
        // One connection per client: each has its own pool.
        let (first, second) = (reqwest::Client::new(), reqwest::Client::new());
        let on_first = get_text(&first, &url).await;
        let on_second = get_text(&second, &url).await;
        assert_ne!(on_first, on_second, "the second connection shares a thread");
        for name in [&on_first, &on_second] {
            assert!(name.starts_with("serve-"), "served on {name:?}");
        }
        for _ in 0..20 {
            assert_eq!(get_text(&first, &url).await, on_first);
            assert_eq!(get_text(&second, &url).await, on_second);
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_websocket_session_counts_against_its_thread() {
        let session = async |mut request: Request| {
            let (response, socket) = fastwebsockets::upgrade::upgrade(&mut request).unwrap();
            tokio::spawn(async move {
                let mut socket = socket.await.unwrap();
                let greeting = Frame::text(Payload::Owned(thread_name().into_bytes()));
                socket.write_frame(greeting).await.unwrap();
                while socket.read_frame().await.is_ok() {}
            });
            response
        };
        let router = Router::new()
            .route("/", get(async || thread_name()))
            .route("/ws", get(session));
        let (url, stop, server) = start(router).await;
        let (mut session, _) = tokio_tungstenite::connect_async(url.replace("http", "ws") + "/ws")
            .await
            .unwrap();
        let Some(Ok(tungstenite::Message::Text(session_thread))) = session.next().await else {
            panic!("no greeting from the session");
        };
        // The session's HTTP connection ended with the upgrade; its socket still counts.
        let request_thread = get_text(&reqwest::Client::new(), &url).await;
        assert_ne!(request_thread, session_thread.as_str());
        drop(session);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// A session that answers each message with its thread's name, after working
    /// for `work` without a break, and moves when its seat says so.
    async fn busy_session(stream: TcpStream, seat: super::Seat, work: Duration) -> super::Moving {
        let mut seat = seat;
        let mut socket = WebSocket::after_handshake(stream, Role::Server);
        while let Ok(frame) = socket.read_frame().await {
            if frame.opcode != OpCode::Text {
                return None;
            }
            let started = std::time::Instant::now();
            while started.elapsed() < work {
                std::hint::spin_loop();
            }
            let reply = Frame::text(Payload::Owned(thread_name().into_bytes()));
            socket.write_frame(reply).await.ok()?;
            // The client waits for each reply: nothing is read past this message.
            if let Some(better) = seat.better() {
                return Some((socket.into_inner(), bytes::Bytes::new(), better));
            }
        }
        None
    }

    /// A router whose `/ws` sessions are [`busy_session`]s.
    fn sessions_doing(work: Duration) -> Router {
        let route = move |mut request: Request| async move {
            let (response, socket) = fastwebsockets::upgrade::upgrade(&mut request).unwrap();
            tokio::spawn(async move {
                let socket = socket.await.unwrap().into_inner().into_inner();
                let upgraded = super::upgraded_socket(socket).unwrap();
                upgraded
                    .serve(move |stream, early, seat| {
                        assert!(early.is_empty());
                        busy_session(stream, seat, work)
                    })
                    .await;
            });
            response
        };
        Router::new().route("/ws", get(route))
    }

    /// The thread each reply came from, one message at a time.
    async fn ask(session: &mut Session) -> String {
        session.send(tungstenite::Message::text("?")).await.unwrap();
        match session.next().await {
            Some(Ok(tungstenite::Message::Text(thread))) => thread.to_string(),
            other => panic!("no reply from the session: {other:?}"),
        }
    }

    type Session = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_sessions_gather_on_one_thread_and_spread_once_it_is_saturated() {
        let (url, stop, server) = start(sessions_doing(Duration::from_millis(5))).await;
        let ws = url.replace("http", "ws") + "/ws";
        let mut first = tokio_tungstenite::connect_async(&ws).await.unwrap().0;
        let mut second = tokio_tungstenite::connect_async(&ws).await.unwrap().0;
        // Accepted on different threads, both sessions start on the first.
        assert_eq!(ask(&mut first).await, "serve-0");
        assert_eq!(ask(&mut second).await, "serve-0");
        // 5 ms of work per message, one message after another on each: the thread
        // is saturated, and one session moves.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (a, b) = tokio::join!(ask(&mut first), ask(&mut second));
            if a != b {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "both sessions still on {a} after 30 s"
            );
        }
        // Each stays where it is now: the two threads are equally busy.
        let (a, b) = tokio::join!(ask(&mut first), ask(&mut second));
        assert_ne!(a, b);
        drop((first, second));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_lets_the_request_in_progress_finish() {
        let (entered, release) = (
            std::sync::Arc::new(Notify::new()),
            std::sync::Arc::new(Notify::new()),
        );
        let router = Router::new().route(
            "/",
            get({
                let (entered, release) = (entered.clone(), release.clone());
                async move || {
                    entered.notify_one();
                    release.notified().await;
                    "finished"
                }
            }),
        );
        let (url, stop, mut server) = start(router).await;
        let request = tokio::spawn(async move { get_text(&reqwest::Client::new(), &url).await });
        entered.notified().await;
        stop.send(()).unwrap();
        // Draining: the server waits for the request it is in.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut server)
                .await
                .is_err(),
            "the server stopped with a request in progress"
        );
        release.notify_one();
        assert_eq!(request.await.unwrap(), "finished");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server drains once the request is answered")
            .unwrap()
            .unwrap();
    }
}
