//! Load and failure: concurrent requests, a 1 GiB stream and a WebSocket message too
//! long to hold in bounded memory, `/health` while every worker is busy (§8.4), a
//! streaming transform failing after its response started (§9.2), and graceful
//! shutdown.

use std::time::{Duration, Instant};

use ais_wasm::held::HELD_IN_MEMORY;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

use super::fake_target::FakeTarget;
use super::harness::{Mountpath, Server, ServerBuilder, client, path_escape};
use super::ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_hpush_requests_are_byte_exact() {
    let server = ServerBuilder::new("examples/echo")
        .arg("--workers")
        .arg("4")
        .start()
        .await;
    let client = client();
    let payload = |i: usize| -> Vec<u8> {
        let len = 1 + (i * 104_729) % (1 << 20);
        (0..len)
            .map(|j| {
                (j as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(i as u32) as u8
            })
            .collect()
    };
    let requests = (0..64).map(|i| {
        let client = client.clone();
        let url = server.url(&format!("/src/obj-{i}"));
        tokio::spawn(async move {
            let response = client.put(url).body(payload(i)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "request {i}");
            let body = response.bytes().await.unwrap();
            assert!(body == payload(i), "request {i}: wrong bytes");
        })
    });
    for request in futures::future::join_all(requests).await {
        request.unwrap();
    }
}

/// 1 GiB through `upper` as a chunked PUT generated on the fly, the response checked
/// on the fly: nothing holds the object, and the server's memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gibibyte_streams_in_bounded_memory() {
    const TOTAL: u64 = 1 << 30;
    const CHUNK: usize = 1 << 20;
    const PERIOD: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz_.-+!?";
    // The test's debug build streamed it in 27 s alone, 3 s short of the default
    // per-object deadline, and past it among the other tests (the server then cut
    // the response off); the deadline is not what is tested here.
    let server = ServerBuilder::new("examples/upper")
        .env("ETL_WASM_TIMEOUT", "300s")
        .start()
        .await;
    let block = Bytes::from(PERIOD.repeat(CHUNK / PERIOD.len()));
    // Upper-cased, long enough to compare any response chunk up to CHUNK bytes at
    // any phase of the period.
    let expected = PERIOD.to_ascii_uppercase().repeat(CHUNK / PERIOD.len() + 1);
    let body = futures::stream::iter(
        (0..TOTAL / CHUNK as u64).map(move |_| Ok::<_, std::io::Error>(block.clone())),
    );
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let mut response = client
        .put(server.url("/src/huge"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut received: u64 = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        for piece in chunk.chunks(CHUNK) {
            let phase = (received % PERIOD.len() as u64) as usize;
            assert!(
                piece == &expected[phase..phase + piece.len()],
                "wrong bytes at offset {received}"
            );
            received += piece.len() as u64;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(received, TOTAL);
    let rate = TOTAL as f64 / (1 << 20) as f64 / elapsed.as_secs_f64();
    assert_streamed_in_bounded_memory(
        &server,
        &format!("1 GiB through upper in {elapsed:.1?} ({rate:.0} MiB/s)"),
        0,
    );
}

/// 256 MiB as one WebSocket message in 4 KiB frames, as a target sends an object,
/// through `hash`: far too long to hold, it streams to the transform as it arrives,
/// and the next request on the connection is answered after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_too_long_to_hold_streams_in_bounded_memory() {
    const FRAMES: usize = 65_536;
    let server = ServerBuilder::new("examples/hash").start().await;
    let mut socket = ws::connect(&server).await;
    let frame = Bytes::from((0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let mut expected = Sha256::new();
    (0..FRAMES).for_each(|_| expected.update(&frame));
    socket.send(ws::control("", "", "", "huge")).await.unwrap();
    ws::send_fragmented(&mut socket, &frame, FRAMES, true).await;
    ws::send_object(&mut socket, ws::control("", "", "", "small"), b"small").await;
    assert_eq!(
        ws::binary(ws::next_reply(&mut socket).await),
        hex::encode(expected.finalize())
    );
    assert_eq!(
        ws::binary(ws::next_reply(&mut socket).await),
        hex::encode(Sha256::digest(b"small"))
    );
    assert_streamed_in_bounded_memory(&server, "256 MiB over WebSocket through hash", 0);
}

/// 256 MiB as one WebSocket message through `upper`, whose reply is held until the
/// transform ends: past 16 MiB it waits in a temporary file, not in memory, and goes
/// out as one message of 1 MiB frames, the next request's reply after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reply_too_long_to_hold_in_memory_waits_in_a_file() {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    const FRAMES: usize = 65_536;
    // Twice --max-output (128 MiB), which bounds only what is held in memory.
    let server = ServerBuilder::new("examples/upper").start().await;
    // The test's client takes a message of any size (tungstenite's default: 64 MiB).
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let url = format!("ws://{}/ws", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .unwrap();
    let frame = Bytes::from((0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let upper = frame.to_ascii_uppercase();
    let mut expected = Sha256::new();
    (0..FRAMES).for_each(|_| expected.update(&upper));
    socket.send(ws::control("", "", "", "huge")).await.unwrap();
    ws::send_fragmented(&mut socket, &frame, FRAMES, true).await;
    ws::send_object(&mut socket, ws::control("", "", "", "small"), b"small").await;
    let reply = ws::binary(ws::next_reply(&mut socket).await);
    assert_eq!(reply.len(), FRAMES * frame.len());
    assert_eq!(Sha256::digest(&reply), expected.finalize());
    drop(reply);
    assert_eq!(ws::binary(ws::next_reply(&mut socket).await), "SMALL");
    // The reply's first 16 MiB are held in memory before the file takes over.
    assert_streamed_in_bounded_memory(
        &server,
        "256 MiB over WebSocket through upper",
        HELD_IN_MEMORY,
    );
}

/// A WebSocket connection holds a bounded number of bytes: 240 messages of 512 KiB
/// pipelined to a transform that takes 5 ms over each are read only as fast as they
/// are transformed once 64 MiB wait, not all 120 MiB at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_connection_holds_a_bounded_number_of_bytes() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "1")
        .start()
        .await;
    // The 64 MiB held and the server's own (about 35 MiB); all of it held would
    // take the server to about 160 MiB.
    assert_pipelined_within(&server, 1, 240, 128 << 20).await;
}

/// And all connections together hold at most `--held-input`: four of them with
/// 60 MiB each to send, each within its own 64 MiB, hold 16 MiB between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_together_hold_at_most_held_input() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "1")
        .env("ETL_WASM_HELD_INPUT", "16MiB")
        .start()
        .await;
    // 16 MiB held, a message each being read, and the server's own; without the
    // bound, 240 MiB would be read at once.
    assert_pipelined_within(&server, 4, 120, 96 << 20).await;
}

/// So do HTTP objects read whole for a buffered transform, waiting for their turn:
/// 64 hpush bodies and 64 hpull objects from the target, 1,000 KiB each (under
/// 1 MiB, where `hostile` prefers its buffered export), sent at once to a transform
/// that takes 5 ms over each (one worker), hold 16 MiB between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_objects_read_whole_together_hold_at_most_held_input() {
    const EACH: usize = 64;
    // Connections closed after each object, both ways: a connection kept open keeps
    // the read buffer it grew (up to 400 KiB each in hyper), which is not what is
    // measured here.
    let target = FakeTarget::start_closing_connections().await;
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "1")
        .env("ETL_WASM_HELD_INPUT", "16MiB")
        .target(&target, "hostile")
        .start()
        .await;
    let object = Bytes::from(vec![b'h'; 1000 << 10]);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut requests = Vec::new();
    for i in 0..EACH {
        let uname = format!("ais/@#/src/o{i}");
        target.put_object(&uname, object.clone());
        let url = |path: &str| server.url(&format!("/{}?etl_args=sleep:5", path_escape(path)));
        requests.push(client.put(url(&format!("src/p{i}"))).body(object.clone()));
        requests.push(client.get(url(&uname)));
    }
    let responses = requests.into_iter().map(|request| {
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.bytes().await.unwrap()
        })
    });
    for (i, body) in futures::future::join_all(responses)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(body.unwrap() == object, "response {i}");
    }
    // 16 MiB held, an object in the guest and its reply, and the server's own (about
    // 35 MiB): 66 MiB. With the bound lifted, all of them are read at once: 216 MiB.
    let what = format!("{} HTTP objects of 1,000 KiB at once", 2 * EACH);
    assert_peak_rss_under(&server, &what, 96 << 20);
}

/// Bodies without a length take their share as they arrive, and wait for more with
/// none held: 8 chunked bodies of 3 MiB for c-md5 (buffered only), each more than all
/// of `--held-input`, sent together 64 KiB at a time so that each holds part of it
/// when it runs short, are all answered, none waiting for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_a_length_beyond_held_input_do_not_wait_for_each_other() {
    let server = ServerBuilder::new("examples/c-md5")
        .env("NUM_WORKERS", "1")
        .env("ETL_WASM_HELD_INPUT", "1MiB")
        .start()
        .await;
    let object: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = hex::encode(md5::Md5::digest(&object));
    let client = client();
    let responses = (0..8).map(|i| {
        let pieces: Vec<Bytes> = object
            .chunks(64 << 10)
            .map(Bytes::copy_from_slice)
            .collect();
        // Paced, so that the server reads the bodies side by side, not one after the
        // other from its socket buffers.
        let body = futures::stream::iter(pieces).then(|piece| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, std::io::Error>(piece)
        });
        let request = client
            .put(server.url(&format!("/src/chunked-{i}")))
            .body(reqwest::Body::wrap_stream(body));
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "request {i}");
            response.bytes().await.unwrap()
        })
    });
    for (i, body) in futures::future::join_all(responses)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(body.unwrap(), digest, "response {i}");
    }
}

/// A file is read only in its object's turn: one connection's 200 FQN requests for a
/// 2 MiB file, pipelined to a transform that takes 5 ms over each (one worker), never
/// hold 200 copies of it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fqn_requests_read_their_files_only_in_their_turn() {
    const REQUESTS: usize = 200;
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "1")
        .start()
        .await;
    let mountpath = Mountpath::new();
    let data = vec![b'f'; 2 << 20];
    let fqn = mountpath.store("src", "two-mib", &data);
    let escaped = path_escape(fqn.to_str().unwrap());
    let (mut sink, mut replies) = ws::connect(&server).await.split();
    for i in 0..REQUESTS {
        let control = ws::control("", "sleep:5", &escaped, &format!("o{i}"));
        sink.feed(control).await.unwrap();
    }
    sink.flush().await.unwrap();
    for i in 0..REQUESTS {
        let reply = ws::next_reply(&mut replies).await;
        assert!(reply.into_data() == data, "reply {i}");
    }
    // The server's own (about 35 MiB), the file in the guest and its reply; all of
    // them read at once would take 400 MiB.
    let what = format!("{REQUESTS} FQN requests of 2 MiB over one WebSocket");
    assert_peak_rss_under(&server, &what, 96 << 20);
}

/// `connections` WebSocket connections each pipeline `messages` objects of 512 KiB to
/// a transform that takes 5 ms over each, and read the replies as they come: every
/// one comes back whole and in order, and the server's peak RSS stays under `bound`.
async fn assert_pipelined_within(server: &Server, connections: usize, messages: usize, bound: u64) {
    let object = Bytes::from(vec![b'h'; 512 << 10]);
    let mut sessions = Vec::new();
    for _ in 0..connections {
        let (mut sink, mut replies) = ws::connect(server).await.split();
        let sent = object.clone();
        let sender = tokio::spawn(async move {
            for i in 0..messages {
                let control = ws::control("", "sleep:5", "", &format!("o{i}"));
                sink.feed(control).await.unwrap();
                sink.feed(Message::Binary(sent.clone())).await.unwrap();
            }
            sink.flush().await.unwrap();
            sink
        });
        let object = object.clone();
        sessions.push(tokio::spawn(async move {
            for i in 0..messages {
                let reply = ws::next_reply(&mut replies).await;
                assert!(reply == Message::Binary(object.clone()), "reply {i}");
            }
            sender.await.unwrap()
        }));
    }
    for session in sessions {
        let _sink = session.await.unwrap();
    }
    let mib = connections * messages / 2;
    let what = format!("{mib} MiB pipelined over {connections} WebSocket connection(s)");
    assert_peak_rss_under(server, &what, bound);
}

/// Issue 5's bound on the server's memory for a streamed object, start-up and
/// compiling included.
/// The server's peak RSS (a debug build: 34 MiB after 1 GiB over HTTP) stayed under
/// 64 MiB, plus `held` bytes the test expects held.
fn assert_streamed_in_bounded_memory(server: &Server, what: &str, held: u64) {
    assert_peak_rss_under(server, what, (64 << 20) + held);
}

/// The server's peak RSS (VmHWM) stayed under `bound`; printed either way.
fn assert_peak_rss_under(server: &Server, what: &str, bound: u64) {
    let rss = server.peak_rss();
    eprintln!(
        "{what}; server peak RSS (VmHWM) {:.1} MiB",
        rss as f64 / (1 << 20) as f64
    );
    assert!(
        rss < bound,
        "{what}: server peak RSS {rss} bytes, bound {bound}"
    );
}

/// Threads of `pid` that are running or runnable.
fn running_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // The state follows the parenthesised thread name.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('R'))
        })
        .count()
}

/// §8.4: `/health` answers (here within 1 s) while every worker spins in a guest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_all_workers_are_busy() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "2")
        .env("ETL_WASM_TIMEOUT", "300s")
        .start()
        .await;
    let client = client();
    let mut spinning = Vec::new();
    for i in 0..2 {
        let request = client
            .put(server.url(&format!("/src/spin-{i}?etl_args=loop")))
            .body("spin");
        spinning.push(tokio::spawn(request.send()));
    }
    // Ready when both guests spin: two of the server's threads always runnable.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut streak = 0;
    while streak < 5 {
        assert!(
            Instant::now() < deadline,
            "the two looping transforms never both ran"
        );
        streak = if running_threads(server.pid()) >= 2 {
            streak + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(1),
            client.get(server.url("/health")).send(),
        )
        .await
        .expect("/health answered within 1 s")
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "Running");
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("/health with both workers busy: slowest of 20 answers {slowest:?}");
    // The workers really are all taken: an ordinary transform waits its turn.
    let waiting = tokio::time::timeout(
        Duration::from_millis(500),
        client.put(server.url("/src/echo")).body("x").send(),
    )
    .await;
    assert!(
        waiting.is_err(),
        "a third transform ran beside two spinning ones"
    );
    assert!(spinning.iter().all(|r| !r.is_finished()));
}

/// §9.2: once a streamed 200 has started, a failure must abort the body; a clean
/// end would make a truncated object look complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_transform_failing_mid_body_aborts_the_response() {
    let target = FakeTarget::start().await;
    // The target announces 8 MiB and breaks off after 3 MiB: the transform has
    // streamed output by then, and fails on its next read.
    let data = vec![b'm'; 8 << 20];
    target.put_broken_object("ais/@#/src/broken", data.clone(), 3 << 20);
    target.put_broken_object("ais/@#/src/at-once", data.clone(), 0);
    target.put_broken_object("ais/@#/src/early", data, 1000);
    let server = ServerBuilder::new("examples/upper")
        .target(&target, "up")
        .start()
        .await;
    let mut response = client()
        .get(server.url("/ais%2F@%23%2Fsrc%2Fbroken"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = 0usize;
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                assert!(chunk.iter().all(|&b| b == b'M'));
                received += chunk.len();
            }
            Ok(None) => panic!("the response ended cleanly after {received} of 8 MiB"),
            Err(error) => break error,
        }
    };
    assert!(received > 0 && received < 8 << 20, "{received}");
    eprintln!("aborted after {received} bytes: {error}");

    // Failing before any output: a proper error status instead, the target's fault
    // (502) whether its answer broke off before its body or as the guest read it,
    // never the 4xx of a bad request, which the target would not retry.
    for name in ["at-once", "early"] {
        let response = client()
            .get(server.url(&format!("/ais%2F@%23%2Fsrc%2F{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{name}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("the target cannot be reached"),
            "{name}: {body}"
        );
    }
}

/// SIGTERM while a request is in flight: the request completes, the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish() {
    let mut server = ServerBuilder::new("examples/upper").start().await;
    let (mut body, chunks) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let piece = Bytes::from(vec![b's'; 64 << 10]);
    let request = tokio::spawn(
        client()
            .put(server.url("/src/slow"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send(),
    );
    body.send(Ok(piece.clone())).await.unwrap();
    // The response has started: the first 64 KiB went through the transform.
    let mut response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    server.sigterm();
    let sender = tokio::spawn(async move {
        for _ in 0..7 {
            body.send(Ok(piece.clone())).await.unwrap();
        }
    });
    let mut received = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    sender.await.unwrap();
    assert_eq!(received.len(), 8 * (64 << 10));
    assert!(received.iter().all(|&b| b == b'S'));

    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(30));
        (status, server.stderr())
    })
    .await
    .unwrap();
    match status {
        (Some(status), stderr) => assert!(status.success(), "{status}: {stderr}"),
        (None, stderr) => panic!("the server did not exit after SIGTERM: {stderr}"),
    }
}

/// SIGTERM while a guest never finishes: the process still exits, once
/// `ETL_WASM_SHUTDOWN_TIMEOUT` has passed (a stuck guest must not keep it alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stuck_guest_exits_after_the_shutdown_timeout() {
    let mut server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "2")
        .env("ETL_WASM_TIMEOUT", "300s")
        .env("ETL_WASM_SHUTDOWN_TIMEOUT", "1s")
        .start()
        .await;
    let stuck: Vec<_> = (0..2)
        .map(|i| {
            let request = client()
                .put(server.url(&format!("/src/stuck-{i}?etl_args=loop")))
                .body("spin");
            tokio::spawn(request.send())
        })
        .collect();
    // Ready when both guests spin: two of the server's threads always runnable.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut streak = 0;
    while streak < 5 {
        assert!(
            Instant::now() < deadline,
            "the looping transforms never ran"
        );
        streak = if running_threads(server.pid()) >= 2 {
            streak + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.sigterm();
    let started = Instant::now();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(20));
        (status, server.stderr())
    })
    .await
    .unwrap();
    let status = status.unwrap_or_else(|| panic!("still running 20 s after SIGTERM: {stderr}"));
    assert!(status.success(), "{status}: {stderr}");
    assert!(started.elapsed() >= Duration::from_secs(1), "{stderr}");
    // The stuck requests' connections were cut, not answered.
    for request in stuck {
        assert!(request.await.unwrap().is_err());
    }
}
