//! What long runs and shutdowns leave behind: 10,000 mixed objects (successes,
//! every kind of failure, disconnecting clients) leave file descriptors, memory and
//! instances flat; SIGTERM under load completes what is in flight, or fails it
//! visibly, and never reports success for what was not delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use super::fake_target::{FakeTarget, Put};
use super::harness::{Mountpath, Server, ServerBuilder, etl_fqn_param, path_escape};

const WORKERS: usize = 4;
/// Clients sending at once.
const CLIENTS: usize = 8;

/// The object of request `i`: distinct, and from a few bytes to 8 KiB.
fn payload(i: usize) -> Vec<u8> {
    let mut data = format!("object {i}:").into_bytes();
    data.extend((0..(i * 7919) % 8192).map(|j| (j as u32).wrapping_mul(2_654_435_761) as u8));
    data
}

/// A client whose connection is not kept for another request.
fn one_shot_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

struct Workload {
    server: Server,
    target: FakeTarget,
    fqn: std::path::PathBuf,
    fqn_data: Vec<u8>,
    _mountpath: Mountpath,
    /// Direct puts answered 204.
    delivered: AtomicUsize,
}

impl Workload {
    /// Request `i` of the mix; panics when its answer is wrong.
    async fn run(&self, client: &reqwest::Client, i: usize) {
        let data = payload(i);
        let url = |path: &str| self.server.url(path);
        let kind = i % 20;
        let expect = |status: u16, response: &reqwest::Response| {
            assert_eq!(
                response.status().as_u16(),
                status,
                "request {i} (kind {kind})"
            );
        };
        match kind {
            // Buffered hpush.
            0..=7 => {
                let response = client.put(url(&format!("/src/o{i}"))).body(data.clone());
                let response = response.send().await.unwrap();
                expect(200, &response);
                assert!(response.bytes().await.unwrap() == data, "request {i}");
            }
            // Streaming (a chunked body has no length).
            8 => {
                let chunks = futures::stream::iter(
                    data.chunks(1000)
                        .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                        .collect::<Vec<_>>(),
                );
                let response = client
                    .put(url(&format!("/src/s{i}")))
                    .body(reqwest::Body::wrap_stream(chunks))
                    .send()
                    .await
                    .unwrap();
                expect(200, &response);
                assert!(response.bytes().await.unwrap() == data, "request {i}");
            }
            // FQN.
            9 => {
                let response = client
                    .put(url(&format!("/src/f?{}", etl_fqn_param(&self.fqn))))
                    .send()
                    .await
                    .unwrap();
                expect(200, &response);
                assert!(response.bytes().await.unwrap() == self.fqn_data);
            }
            // hpull from the target.
            10 => {
                let response = client
                    .get(url(&format!("/{}", path_escape("ais/@#/src/pulled"))))
                    .send()
                    .await
                    .unwrap();
                expect(200, &response);
                assert_eq!(response.bytes().await.unwrap(), "pulled from the target");
            }
            // Direct put to the target.
            11 => {
                let response = client
                    .put(url(&format!("/src/d{i}")))
                    .header(
                        "Ais-Node-Url",
                        format!("{}/{}", self.target.url(), path_escape("ais/@#/dst/d")),
                    )
                    .body(data)
                    .send()
                    .await
                    .unwrap();
                expect(204, &response);
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            // Failures: a trap, bad input, an unread input, a refused FQN, output
            // over the limit, a stack overflow.
            12..=17 => {
                let (args, status, body) = match kind {
                    12 => ("panic", 500, data),
                    13 => ("bad-input", 422, data),
                    14 => ("never-read", 200, vec![b'n'; 20_000]),
                    15 => ("", 403, Vec::new()),
                    16 => ("big:2000000", 500, data),
                    _ => ("stack", 500, data),
                };
                let path = match kind {
                    15 => format!("/src/x{i}?etl_fqn=%252Fetc%252Fpasswd"),
                    _ => format!("/src/x{i}?etl_args={args}"),
                };
                let request = match kind {
                    // Unknown length: the streaming export, which ignores its input.
                    // The server then closes the connection, its request unread: on
                    // a connection of its own, so that no later request races the
                    // close.
                    14 => one_shot_client()
                        .put(url(&path))
                        .body(reqwest::Body::wrap_stream(futures::stream::iter([Ok::<
                            _,
                            std::io::Error,
                        >(
                            Bytes::from(body),
                        )]))),
                    _ => client.put(url(&path)).body(body),
                };
                let response = request.send().await.unwrap();
                expect(status, &response);
                let text = response.text().await.unwrap();
                assert!(
                    status == 200 || text.starts_with(&format!("src/x{i}: ")),
                    "request {i}: {text}"
                );
            }
            // A WebSocket connection for one object.
            18 => {
                let (mut socket, _) =
                    tokio_tungstenite::connect_async(format!("ws://{}/ws", self.server.addr))
                        .await
                        .unwrap();
                let control = format!(r#"{{"path":"w{i}"}}"#);
                socket.send(Message::Binary(control.into())).await.unwrap();
                socket
                    .send(Message::Binary(data.clone().into()))
                    .await
                    .unwrap();
                match socket.next().await.unwrap().unwrap() {
                    Message::Binary(reply) => assert!(reply == data, "request {i}"),
                    other => panic!("request {i}: {other:?}"),
                }
                socket.close(None).await.unwrap();
            }
            // A client that vanishes mid-upload.
            _ => {
                let mut stream = tokio::net::TcpStream::connect(self.server.addr)
                    .await
                    .unwrap();
                let head = format!(
                    "PUT /src/v{i} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\n\r\n",
                    self.server.addr
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(&data).await.unwrap();
            }
        }
    }

    /// Requests `range`, `CLIENTS` at a time, each client on its own connections.
    async fn drive(self: &Arc<Self>, range: std::ops::Range<usize>) {
        let next = Arc::new(AtomicUsize::new(range.start));
        let clients = (0..CLIENTS).map(|_| {
            let (workload, next, end) = (self.clone(), next.clone(), range.end);
            tokio::spawn(async move {
                let client = super::harness::client();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        break;
                    }
                    workload.run(&client, i).await;
                }
            })
        });
        for client in futures::future::join_all(clients).await {
            client.unwrap();
        }
    }

    /// Once every client is gone and the server has closed their connections (back
    /// to the `sockets` it had when idle: the listener and the runtimes' own), its
    /// descriptors and resident memory.
    async fn settle(&self, sockets: usize) -> (usize, u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (all, open) = self.server.open_fds();
            if open == sockets {
                return (all, self.server.rss());
            }
            assert!(
                Instant::now() < deadline,
                "{open} sockets open, {sockets} when idle: a connection leaked"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// 1,000 objects of warm-up, then 10,000 more: file descriptors equal (±2),
/// resident memory within 10 MiB, no instance left beyond the workers'.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_objects_leave_descriptors_memory_and_instances_flat() {
    const WARM_UP: usize = 1_000;
    const OBJECTS: usize = 10_000;
    // Every connection to the target closes after its answer, so the server's
    // client pool holds none when the load stops.
    let target = FakeTarget::start_closing_connections().await;
    target.put_object("ais/@#/src/pulled", "pulled from the target");
    let mountpath = Mountpath::new();
    let fqn_data = b"from the object's file ".repeat(100);
    let fqn = mountpath.store("src", "f", &fqn_data);
    let server = ServerBuilder::new("host/tests/components/hostile")
        .target(&target, "e")
        .env("NUM_WORKERS", WORKERS.to_string())
        .env("ETL_WASM_MAX_OUTPUT", "1MiB")
        .env("RUST_LOG", "error,ais_wasm::cmd::serve=info")
        .start()
        .await;
    let workload = Arc::new(Workload {
        server,
        target,
        fqn,
        fqn_data,
        _mountpath: mountpath,
        delivered: AtomicUsize::new(0),
    });

    let (_, idle_sockets) = workload.server.open_fds();
    let started = Instant::now();
    workload.drive(0..WARM_UP).await;
    let (fds_before, rss_before) = workload.settle(idle_sockets).await;
    let (created_before, discarded_before, _) = workload.server.pool_stats().await;
    workload.drive(WARM_UP..WARM_UP + OBJECTS).await;
    let (fds_after, rss_after) = workload.settle(idle_sockets).await;
    let (created, discarded, live) = workload.server.pool_stats().await;
    let elapsed = started.elapsed();

    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    eprintln!(
        "{} objects in {elapsed:.1?}: fds {fds_before} -> {fds_after}; VmRSS {:.1} -> {:.1} MiB \
         ({:+.2} MiB); instances created {created_before} -> {created}, discarded \
         {discarded_before} -> {discarded}, live {live}",
        WARM_UP + OBJECTS,
        mib(rss_before),
        mib(rss_after),
        mib(rss_after) - mib(rss_before),
    );
    assert!(
        fds_after.abs_diff(fds_before) <= 2,
        "file descriptors: {fds_before} after the warm-up, {fds_after} after {OBJECTS} more"
    );
    assert!(
        rss_after < rss_before + (10 << 20),
        "VmRSS grew from {rss_before} to {rss_after} bytes"
    );
    assert!(live <= WORKERS as u64, "{live} instances live");
    // Each trapped instance (panic, big output, stack: 3 in 20) is replaced, and
    // nothing else is created.
    let trapped = (WARM_UP + OBJECTS) * 3 / 20;
    assert!(
        created <= (trapped + WORKERS + 1) as u64,
        "{created} instances created for {trapped} traps"
    );
    // Every direct put the server answered 204 for reached the target.
    let puts = workload.target.puts().len();
    assert_eq!(puts, workload.delivered.load(Ordering::Relaxed));
}

/// Poll until the server holds at least `sockets` sockets (its connections are
/// accepted).
async fn wait_for_sockets(server: &Server, sockets: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.open_fds().1 < sockets {
        assert!(
            Instant::now() < deadline,
            "the connections were not accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Poll until the server has received `requests` object requests (in flight or
/// answered): an accepted connection whose request the server has not read yet is
/// idle, and a shutdown closes it.
async fn wait_for_requests(server: &Server, requests: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = server.metrics().await;
        let received: u64 = text
            .lines()
            .filter(|l| {
                l.starts_with("ais_wasm_requests_in_flight ")
                    || l.starts_with("ais_wasm_objects_total{")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        if received >= requests {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server received {received} of {requests} requests:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A streamed PUT whose body is sent piece by piece through the returned sender.
fn streamed_put(
    client: &reqwest::Client,
    url: String,
) -> (
    futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (body, pieces) = futures::channel::mpsc::channel(4);
    let request = client
        .put(url)
        .body(reqwest::Body::wrap_stream(pieces))
        .send();
    (body, tokio::spawn(request))
}

/// SIGTERM with 24 requests in flight (buffered, direct put, streaming with the
/// body still arriving): every one completes and is delivered, then the process
/// exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_what_is_in_flight() {
    let target = FakeTarget::start().await;
    let mut server = ServerBuilder::new("host/tests/components/hostile")
        .target(&target, "e")
        .env("NUM_WORKERS", WORKERS.to_string())
        .start()
        .await;
    let client = super::harness::client();
    let destination = |i: usize| format!("ais/@#/dst/o{i}");
    let mut buffered = Vec::new();
    let mut streams = Vec::new();
    for i in 0..24 {
        match i % 3 {
            2 => streams.push((i, streamed_put(&client, server.url(&format!("/src/s{i}"))))),
            kind => {
                let mut request = client
                    .put(server.url(&format!("/src/o{i}?etl_args=sleep:300")))
                    .body(payload(i));
                if kind == 1 {
                    let entry = format!("{}/{}", target.url(), path_escape(&destination(i)));
                    request = request.header("Ais-Node-Url", entry);
                }
                buffered.push((i, tokio::spawn(request.send())));
            }
        }
    }
    wait_for_requests(&server, 24).await;
    server.sigterm();
    // The streamed bodies arrive only now, during the shutdown.
    for (i, (body, _)) in &mut streams {
        for piece in payload(*i).chunks(1000) {
            body.send(Ok(Bytes::copy_from_slice(piece))).await.unwrap();
        }
        body.close_channel();
    }

    for (i, request) in buffered {
        let response = request.await.unwrap().expect("completed, not cut off");
        if i % 3 == 1 {
            assert_eq!(response.status(), 204, "request {i}");
            let uname = format!("/{}", path_escape(&destination(i)));
            let put = target
                .puts()
                .into_iter()
                .find(|p| p.target.split('?').next().unwrap().ends_with(&uname))
                .unwrap_or_else(|| panic!("request {i}: 204, but nothing was delivered"));
            assert!(put.body == payload(i), "request {i}: delivered wrong bytes");
        } else {
            assert_eq!(response.status(), 200, "request {i}");
            assert!(response.bytes().await.unwrap() == payload(i), "request {i}");
        }
    }
    for (i, (_, request)) in streams {
        let response = request.await.unwrap().expect("completed, not cut off");
        assert_eq!(response.status(), 200, "request {i}");
        assert!(response.bytes().await.unwrap() == payload(i), "request {i}");
    }
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        (server.wait_exit(Duration::from_secs(30)), server.stderr())
    })
    .await
    .unwrap();
    let status = status.unwrap_or_else(|| panic!("no exit after SIGTERM: {stderr}"));
    assert!(status.success(), "{status}: {stderr}");
}

/// SIGTERM with work that outlives `ETL_WASM_SHUTDOWN_TIMEOUT`: a streamed response
/// already started, direct puts the next hop never acknowledges, and transforms that
/// take longer. The process exits on time, and every one of them fails visibly: no
/// 200 with a truncated body, no 204 for an unacknowledged put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_visibly_what_outlives_the_shutdown_timeout() {
    let target = FakeTarget::start().await;
    target.always(Put::Hang);
    let mut server = ServerBuilder::new("host/tests/components/hostile")
        .target(&target, "e")
        .env("NUM_WORKERS", "2")
        .env("ETL_WASM_SHUTDOWN_TIMEOUT", "1s")
        .start()
        .await;
    let (_, idle_sockets) = server.open_fds();
    let client = super::harness::client();

    // A streamed response under way: its first bytes are back.
    let (mut body, request) = streamed_put(&client, server.url("/src/streamed"));
    body.send(Ok(Bytes::from(vec![b's'; 64 << 10])))
        .await
        .unwrap();
    let mut streamed = request.await.unwrap().unwrap();
    assert_eq!(streamed.status(), 200);
    assert!(!streamed.chunk().await.unwrap().unwrap().is_empty());

    // Direct puts, delivered and never acknowledged.
    let entry = format!("{}/{}", target.url(), path_escape("ais/@#/dst/o"));
    let puts: Vec<_> = (0..2)
        .map(|i| {
            let request = client
                .put(server.url(&format!("/src/p{i}")))
                .header("Ais-Node-Url", &entry)
                .body(payload(i));
            tokio::spawn(request.send())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while target.puts().len() < 2 {
        assert!(Instant::now() < deadline, "the direct puts never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Transforms of 5 s, one running and two waiting for the other worker.
    let slow: Vec<_> = (0..3)
        .map(|i| {
            let request = client
                .put(server.url(&format!("/src/slow{i}?etl_args=sleep:5000")))
                .body(payload(i));
            tokio::spawn(request.send())
        })
        .collect();
    wait_for_sockets(&server, idle_sockets + 6).await;

    server.sigterm();
    let started = Instant::now();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        (server.wait_exit(Duration::from_secs(20)), server.stderr())
    })
    .await
    .unwrap();
    let status = status.unwrap_or_else(|| panic!("no exit after SIGTERM: {stderr}"));
    assert!(status.success(), "{status}: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");

    let ended = loop {
        match streamed.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    assert!(ended.is_err(), "the cut-off stream ended as if complete");
    for request in puts.into_iter().chain(slow) {
        match request.await.unwrap() {
            Err(_) => {}
            Ok(response) => {
                // Only an error status may come back, never a success.
                assert!(
                    !response.status().is_success(),
                    "{} for a request cut off by the shutdown",
                    response.status()
                );
            }
        }
    }
    drop(body);
}
