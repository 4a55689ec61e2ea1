//! Connections served thread-per-core: each accepted connection is handed to one of
//! N threads, each running its own single-threaded runtime, and stays there.
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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use anyhow::Context as _;
use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::without_nagle;

/// Serve `router` on `listener` from `threads` threads until `stop` resolves; then
/// accept no more connections, let every connection finish the request it is in
/// (graceful shutdown) and return once all have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    threads: usize,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let workers = (0..threads.max(1))
        .map(Worker::start)
        .collect::<anyhow::Result<Vec<_>>>()?;
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
        let worker = workers
            .iter()
            .min_by_key(|worker| worker.connections.load(Ordering::Relaxed))
            .expect("at least one worker");
        let load = Load::new(&worker.connections);
        let connection = serve_connection(stream, load, router.clone(), draining.clone());
        worker.runtime.spawn(connections.track_future(connection));
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

/// A serving thread and its single-threaded runtime. Dropping it ends the runtime,
/// and with it every connection still on it.
struct Worker {
    runtime: tokio::runtime::Handle,
    /// Connections on this thread: a new one goes to the thread with the fewest.
    connections: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Worker {
    fn start(index: usize) -> anyhow::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a serving thread's runtime")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("serve-{index}"))
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .context("starting a serving thread")?;
        Ok(Worker {
            runtime: handle,
            connections: Arc::new(AtomicUsize::new(0)),
            _stop: stop,
        })
    }
}

/// A connection's socket, counted against its thread while open: after a WebSocket
/// upgrade too, when the socket outlives the HTTP connection that accepted it.
struct Counted {
    stream: TcpStream,
    _load: Load,
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

/// The socket of a connection `serve` accepted and hyper upgraded to WebSocket, the
/// bytes hyper read past the upgrade request, and the socket's place in its thread's
/// count (to be held while it is open). `None` for a connection accepted elsewhere.
pub(super) fn upgraded_socket(
    upgraded: hyper::upgrade::Upgraded,
) -> Option<(TcpStream, bytes::Bytes, Load)> {
    let parts = upgraded.downcast::<TokioIo<Counted>>().ok()?;
    let Counted {
        stream,
        _load: load,
    } = parts.io.into_inner();
    Some((stream, parts.read_buf, load))
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
    use fastwebsockets::{Frame, Payload};
    use futures::StreamExt;
    use tokio::net::TcpListener;
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
