//! Hostile guests through the server (tests/components/hostile): the sandbox (no
//! network, no files, no environment), every limit (memory, deadline, stack,
//! buffered output), floods of guest output, and guests that ignore their input,
//! keep writing after their receiver went away, or fail after writing. Each gives a
//! clear error for its object only: the status and a body naming the object and the
//! cause; `/health` stays 200 and the next object is transformed correctly. One
//! worker only, so an instance or a permit that leaked would stall the next object.
//!
//! `engine.rs` proves the same behaviours against the runtime library; these prove
//! that the server reports them as such.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use ais_wasm::runtime::{LOG_BUDGET_PER_OBJECT, LOG_LINES_PER_OBJECT};

use super::fake_target::{FakeTarget, Put, SECRET};
use super::harness::{
    Mountpath, RawResponse, Server, ServerBuilder, client, etl_fqn_param, raw, request,
};
use super::ws;

const HOSTILE: &str = "host/tests/components/hostile";

fn hostile() -> ServerBuilder {
    ServerBuilder::new(HOSTILE)
        .env("NUM_WORKERS", "1")
        .env("ETL_WASM_MAX_MEMORY", "48MiB")
        .env("ETL_WASM_MAX_OUTPUT", "1MiB")
        .env("ETL_WASM_TIMEOUT", "2s")
}

/// `PUT /src/<name>?etl_args=<args>` with `body`.
async fn put(server: &Server, name: &str, args: &str, body: &[u8]) -> RawResponse {
    let target = format!(
        "/src/{name}?etl_args={}",
        super::harness::query_escape(args)
    );
    request(server.addr, "PUT", &target, &[], body).await
}

/// `/health` is 200 within a second, and the next object is echoed byte for byte.
async fn assert_healthy_and_serving(server: &Server) {
    let started = Instant::now();
    let response = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let response = tokio::time::timeout(Duration::from_secs(20), put(server, "next", "", &data))
        .await
        .expect("the next object was not served: did an instance or a permit leak?");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body == data, "the next object came back wrong");
}

fn body(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_has_no_network_no_files_and_no_environment() {
    let target = FakeTarget::start().await;
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "secret", b"root:x:0:0 the object's file");
    let server = hostile()
        .target(&target, "h")
        .env("AIS_WASM_TEST_SECRET", "hunter2")
        .env("ETL_WASM_CONFIG", r#"{"token":"hunter3"}"#)
        .start()
        .await;

    // None of the server's variables: AIS_TARGET_URL carries the ETL's secret.
    let response = put(&server, "env", "env", b"x").await;
    assert_eq!((response.status, body(&response)), (200, String::new()));

    // No TCP, by address or by name, to a listener that would accept.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    for address in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let response = put(&server, "net", &format!("net:{address}"), b"x").await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_ne!(body(&response), "connected", "{address}");
        assert!(!body(&response).is_empty(), "{address}");
    }
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the guest reached the listener"
    );
    // The fake target saw nothing from the guest either.
    assert!(target.requests().is_empty());

    // No files: not the object's own file (it gets the bytes, not the path), not
    // the host's, and no directory to list.
    let own = format!("fs:{}", fqn.display());
    let response = request(
        server.addr,
        "PUT",
        &format!(
            "/src/secret?etl_args={}&{}",
            super::harness::query_escape(&own),
            etl_fqn_param(&fqn)
        ),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(!body(&response).contains("root:x"), "{}", body(&response));
    for args in [
        "fs:/etc/passwd",
        "fs:/proc/self/environ",
        "ls:/",
        "ls:.",
        "ls:/tmp",
    ] {
        let response = put(&server, "fs", args, b"x").await;
        assert_eq!(response.status, 200, "{args}: {response:?}");
        let text = body(&response);
        assert!(
            !text.contains("root:") && !text.contains("hunter") && !text.contains(SECRET),
            "{args}: {text}"
        );
        assert!(
            !text.lines().any(|l| l == "etc" || l == "tmp"),
            "{args}: {text}"
        );
    }
    assert_healthy_and_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_is_a_clear_error_for_its_object_only() {
    let server = hostile().start().await;
    for (args, status, cause) in [
        ("alloc", 500, "exceeded its memory limit of 50331648 bytes"),
        ("loop", 504, "exceeded its deadline of 2s"),
        ("stack", 500, "call stack exhausted"),
        ("big:2000000", 500, "returned more than 1048576 bytes"),
        ("panic", 500, "boom"),
        ("abort", 500, "the transform crashed"),
        ("bad-input", 422, "rejected the object: nope"),
        ("failed", 500, "the transform failed: nope"),
    ] {
        let started = Instant::now();
        let response = put(&server, args, args, b"x").await;
        assert_eq!(response.status, status, "{args}: {response:?}");
        let text = body(&response);
        assert!(text.starts_with(&format!("src/{args}: ")), "{args}: {text}");
        assert!(text.contains(cause), "{args}: {cause:?} not in {text:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{args}");
        assert_healthy_and_serving(&server).await;
    }
    // Over WebSocket, the same causes as TEXT, and the connection keeps serving.
    let mut socket = ws::connect(&server).await;
    for (args, cause) in [("loop", "exceeded its deadline"), ("alloc", "memory limit")] {
        ws::send_object(&mut socket, ws::control("", args, "", "w"), b"x").await;
        let reply = ws::text(ws::next_reply(&mut socket).await);
        assert!(reply.contains("w: ") && reply.contains(cause), "{reply}");
    }
    ws::send_object(&mut socket, ws::control("", "", "", "w"), b"fine").await;
    assert_eq!(ws::binary(ws::next_reply(&mut socket).await), "fine");
    // One streamed write over the output limit: the limit named, not the wasm
    // backtrace the host's refusal comes wrapped in.
    let response = put(
        &server,
        "big-write",
        "big-write:2000000",
        &vec![b'b'; 2 << 20],
    )
    .await;
    assert_eq!(response.status, 500, "{response:?}");
    let text = body(&response);
    assert!(text.contains("returned more than 1048576 bytes"), "{text}");
    // A streaming guest past its deadline while its output goes on to a next hop,
    // which waits for the rest of it: the deadline missed is the guest's, not that
    // of the put it held up.
    // (Twice: where the guest runs, and so which deadline is noticed first, depends
    // on how long its calls have lately taken.)
    let stage = FakeTarget::start().await;
    stage.always(Put::NoContent(Some(0)));
    for _ in 0..2 {
        let response = request(
            server.addr,
            "PUT",
            "/src/onward?etl_args=loop",
            &[("Ais-Node-Url", &stage.url())],
            &vec![b'l'; 2 << 20],
        )
        .await;
        assert_eq!(response.status, 504, "{response:?}");
        let text = body(&response);
        assert!(text.contains("exceeded its deadline of 2s"), "{text}");
    }
}

/// `--timeout` is one budget for the object: a body that takes most of it to arrive
/// leaves the guest the rest (each took under the 2 s, together over it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_counts_the_time_the_object_took_to_arrive() {
    let server = hostile().start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "PUT /src/slow?etl_args=sleep:1500 HTTP/1.1\r\nHost: x\r\n\
                Content-Length: 2\r\nConnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(b"a").await.unwrap();
    // A client sending slowly (the case, not a wait for readiness).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    socket.write_all(b"b").await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("exceeded its deadline of 2s"), "{answer}");
}

/// `objects_total` counts a streamed object by how it ended, not by how it began: a
/// guest failing after its first bytes went out with a 200 is `failed`, one over the
/// output limit before any is `output_limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_objects_are_counted_by_how_they_ended() {
    let server = hostile().start().await;
    let data = vec![b's'; 2 << 20];
    // It fails after 64 KiB: its 200 goes out with them, and the body breaks off. The
    // server then closes the connection on the rest of the request body, unread, so a
    // client still sending it may see the reset before the 200 (README, Limitations).
    let url = server.url("/src/midway?etl_args=fail-midway");
    match client().put(url).body(data.clone()).send().await {
        Ok(response) => {
            assert_eq!(response.status(), 200);
            assert!(
                response.bytes().await.is_err(),
                "the body ended as if whole"
            );
        }
        Err(error) => assert!(error.is_request(), "{error:?}"),
    }
    let response = put(&server, "big", "big-write:2000000", &data).await;
    assert_eq!(response.status, 500, "{response:?}");
    let metrics = server.metrics().await;
    for (outcome, count) in [("failed", 1), ("output_limit", 1)] {
        let line = format!(
            "ais_wasm_objects_total{{transport=\"hpush\",outcome=\"{outcome}\"}} {count}\n"
        );
        assert!(metrics.contains(&line), "{line:?} not in {metrics}");
    }
    assert!(!metrics.contains("outcome=\"ok\""), "{metrics}");
    assert!(
        metrics.contains("\nais_wasm_requests_in_flight 0\n"),
        "{metrics}"
    );
}

/// A streaming guest that spins, on the one thread serving connections (its input
/// arrives over one, so it runs there): `/health` still answers at once, since the
/// guest yields every tick and resumes only after the thread has polled for I/O.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_streaming_guest_leaves_its_thread_answering() {
    let server = hostile()
        .env("ETL_WASM_SERVE_THREADS", "1")
        .env("ETL_WASM_TIMEOUT", "20s")
        .start()
        .await;
    // A chunked body, of no announced size, streams; it is never ended.
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "PUT /src/spin?etl_args=loop HTTP/1.1\r\nHost: x\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let chunk = format!("{:x}\r\n{}\r\n", 100_000, "s".repeat(100_000));
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(chunk.as_bytes()).await.unwrap();
    // Each answered in a tick or two (a plain yield let the guest run 0.6 s at a time),
    // from the guest's first read on.
    for _ in 0..10 {
        let started = Instant::now();
        let response = client().get(server.url("/health")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(250), "/health took {took:?}");
    }
    drop(socket);
}

/// Lines the server logged for `object` (guest output and the notice of what was
/// dropped).
fn lines_for(log: &str, object: &str) -> usize {
    let tag = format!("object={object} ");
    log.lines().filter(|l| l.contains(&tag)).count()
}

/// Guest output is logged line by line, tagged with its object, up to
/// `LOG_BUDGET_PER_OBJECT` bytes and `LOG_LINES_PER_OBJECT` lines per object; the
/// rest is counted and dropped, and a guest that never stops writing neither blocks
/// the server nor grows its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_guest_output_is_bounded_attributed_and_never_blocks() {
    let server = hostile().env("RUST_LOG", "warn,guest=info").start().await;
    // 2 × 20,000 lines of 100 bytes: 60 times the budget each.
    for name in ["flood-1", "flood-2"] {
        let response = put(&server, name, "flood:20000", b"payload").await;
        assert_eq!((response.status, body(&response)), (200, "payload".into()));
    }
    // Empty lines: cheap for the byte budget, so the line count is capped too.
    let response = put(&server, "newlines", "newlines:60000", b"payload").await;
    assert_eq!((response.status, body(&response)), (200, "payload".into()));
    // Writing until the deadline stops it; /health answers meanwhile.
    let chatter = {
        let addr = server.addr;
        tokio::spawn(async move {
            request(addr, "PUT", "/src/chatter?etl_args=chatter", &[], b"x").await
        })
    };
    while !chatter.is_finished() {
        let started = Instant::now();
        let response = client().get(server.url("/health")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let response = chatter.await.unwrap();
    assert_eq!(response.status, 504, "{response:?}");
    assert_healthy_and_serving(&server).await;

    let log = server.stderr();
    // 100-byte lines: the whole ones that fit the budget, a partial one per stream,
    // and the notice of what was dropped.
    let lines_of_100 = LOG_BUDGET_PER_OBJECT / 100 + 2 + 1;
    for (object, most) in [
        ("src/flood-1", lines_of_100),
        ("src/flood-2", lines_of_100),
        ("src/chatter", lines_of_100),
        ("src/newlines", LOG_LINES_PER_OBJECT + 1),
    ] {
        let lines = lines_for(&log, object);
        eprintln!("{object}: {lines} log lines");
        assert!(
            lines >= 100 && lines <= most,
            "{object}: {lines} lines logged, at most {most} expected"
        );
        assert!(
            log.lines().any(|l| l.contains(&format!("object={object} "))
                && l.contains("was dropped")
                && l.contains("dropped_bytes=")),
            "{object}: no notice of the dropped output"
        );
    }
    assert!(log.len() < 1 << 20, "the server logged {} bytes", log.len());
}

/// A streaming guest that returns without reading: its object is empty (what it
/// produced), whether the input was a large body or a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_never_reads_its_input() {
    let server = hostile().start().await;
    // Large enough (over 1 MiB) for the streaming export.
    let response = put(&server, "never-read", "never-read", &vec![b'n'; 8 << 20]).await;
    assert_eq!(
        (response.status, response.body.len()),
        (200, 0),
        "{response:?}"
    );
    assert_healthy_and_serving(&server).await;
    // A chunked body (unknown size also streams), left unread.
    let mut chunked = format!(
        "PUT /src/chunked?etl_args=never-read HTTP/1.1\r\nHost: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 << 10).as_bytes());
        chunked.extend_from_slice(&vec![b'c'; 64 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = raw(server.addr, &chunked).await;
    assert_eq!(
        (response.status, response.body.len()),
        (200, 0),
        "{response:?}"
    );
    assert_healthy_and_serving(&server).await;
    // A file, opened and never read.
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "big", &vec![b'f'; 4 << 20]);
    let response = request(
        server.addr,
        "PUT",
        &format!("/src/big?etl_args=never-read&{}", etl_fqn_param(&fqn)),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        (response.status, response.body.len()),
        (200, 0),
        "{response:?}"
    );
    assert_healthy_and_serving(&server).await;
}

/// A streaming guest that writes forever, whatever becomes of its output: the host
/// stops it at its first write after the receiver went away (a client that
/// disconnected, a next hop that reset, a WebSocket reply at its size limit), long
/// before its deadline, and its instance is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_keeps_writing_after_its_receiver_went_away() {
    let target = FakeTarget::start().await;
    let server = hostile()
        .target(&target, "h")
        .env("ETL_WASM_TIMEOUT", "120s")
        .env("ETL_WASM_REPLY_SPACE", "8MiB")
        .start()
        .await;

    // The client reads 1 MiB of an endless response, then disconnects.
    let started = Instant::now();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "PUT /src/spew?etl_args=spew HTTP/1.1\r\nHost: {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while received.len() < 1 << 20 {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the response ended");
            received.extend_from_slice(&buf[..n]);
        }
        assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
        // Dropped here: the connection closes with the response unfinished.
    }
    // The only worker is free again well before the 120 s deadline.
    assert_healthy_and_serving(&server).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let log = server.wait_for_log("writing the result failed").await;
    assert!(log.contains("object=src/spew"), "{log}");

    // The next hop resets mid-body: the streamed one-shot body gets the 503
    // contract (§7.3), and the guest is stopped.
    let started = Instant::now();
    let response = put_to_a_resetting_hop(&server, &target, "spew").await;
    assert_eq!(response.status, 503, "{response:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_healthy_and_serving(&server).await;

    // Over WebSocket a reply is held whole, past --max-output in a file: it stops at
    // the space such files may take.
    let mut socket = ws::connect(&server).await;
    socket.send(ws::control("", "spew", "", "w")).await.unwrap();
    socket
        .send(Message::Binary(Bytes::from(vec![b'x'; 2 << 20])))
        .await
        .unwrap();
    let reply = ws::text(ws::next_reply(&mut socket).await);
    assert!(
        reply.contains("w: the WebSocket replies in progress would take more than 8388608 bytes"),
        "{reply}"
    );
    assert_healthy_and_serving(&server).await;
}

/// A client that goes away while its guest computes (a target's `obj_timeout` ends
/// its request so) has the guest stopped at its next epoch tick, not at its 120 s
/// deadline: the only worker serves the next object at once, and the instance is
/// replaced. Buffered and streaming over HTTP; over WebSocket, a connection closed
/// without a close frame, as a target closes it, with a running object and one
/// waiting for its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_whose_client_went_away_is_stopped() {
    let target = FakeTarget::start().await;
    let server = hostile()
        .target(&target, "h")
        .env("ETL_WASM_TIMEOUT", "120s")
        .env("RUST_LOG", "warn,ais_wasm::cmd::serve=info")
        .start()
        .await;
    let started = Instant::now();
    let mut stopped = 0;
    // A one-byte body is buffered, one of unknown length streamed.
    for (shape, framing, body) in [
        ("buffered", "Content-Length: 1", "x"),
        (
            "streaming",
            "Transfer-Encoding: chunked",
            "1\r\nx\r\n0\r\n\r\n",
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "PUT /src/{shape}?etl_args=loop HTTP/1.1\r\nHost: {}\r\n{framing}\r\n\r\n{body}",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        busy_instances(&server, 1).await;
        drop(stream);
        assert_healthy_and_serving(&server).await;
        stopped += 1;
        let log = server.wait_for_log(&format!("object=src/{shape}")).await;
        assert!(
            log.contains("transform stopped, instance replaced: nobody waits for the result"),
            "{shape}: {log}"
        );
    }
    // A next hop that resets the upload of a streamed result: the guest, which
    // writes no more, is stopped, and the upload's failure stays the cause (the 503
    // contract for a one-shot body, §7.3).
    let response = put_to_a_resetting_hop(&server, &target, "write-loop").await;
    assert_eq!(response.status, 503, "{response:?}");
    assert_healthy_and_serving(&server).await;
    stopped += 1;

    // Ended without a close frame, as a target ends it; here by a half-close, after
    // which the peer could still read: no reply comes, where a TEXT one would say
    // "delivered".
    let mut socket = ws::connect(&server).await;
    for name in ["running", "waiting"] {
        ws::send_object(&mut socket, ws::control("", "loop", "", name), b"x").await;
    }
    busy_instances(&server, 1).await;
    match socket.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(stream) => stream.shutdown().await.unwrap(),
        _ => unreachable!("ws://"),
    }
    let after = tokio::time::timeout(
        Duration::from_secs(60),
        futures::StreamExt::next(&mut socket),
    );
    match after.await.expect("the connection's end") {
        None | Some(Err(_)) => {}
        Some(Ok(message)) => panic!("a reply for an abandoned object: {message:?}"),
    }
    drop(socket);
    assert_healthy_and_serving(&server).await;
    stopped += 1;
    server.wait_for_log("object=running").await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let (_, discarded, live) = server.pool_stats().await;
    assert_eq!((discarded, live), (stopped, 1));
    assert!(
        !server.stderr().contains("object=waiting"),
        "{}",
        server.stderr()
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("\nais_wasm_requests_in_flight 0\n"),
        "{metrics}"
    );
}

/// Waits until `count` instances are busy with an object.
async fn busy_instances(server: &Server, count: usize) {
    let line = format!("ais_wasm_instances{{state=\"busy\"}} {count}\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.metrics().await.contains(&line) {
        assert!(Instant::now() < deadline, "never {line:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An empty one-shot chunked body, the streaming guest told `args`, its result put
/// to a next hop that resets mid-body.
async fn put_to_a_resetting_hop(server: &Server, target: &FakeTarget, args: &str) -> RawResponse {
    target.always(Put::Reset);
    let hop = format!("{}/ais%2F@%23%2Fdst%2Fo", target.url());
    request(
        server.addr,
        "PUT",
        &format!("/src/{args}?etl_args={args}"),
        &[("Ais-Node-Url", &hop), ("Transfer-Encoding", "chunked")],
        b"0\r\n\r\n",
    )
    .await
}

/// A WebSocket reply is held until the transform ends: a streaming guest that fails
/// after writing gets its failure as TEXT, never the part it wrote as BINARY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_guest_failing_after_writing_sends_no_partial_reply() {
    let server = hostile().start().await;
    let mut socket = ws::connect(&server).await;
    // Streamed (1 MiB and up), and within --max-output.
    let data = Bytes::from(vec![b'x'; 1 << 20]);
    socket
        .send(ws::control("", "fail-midway", "", "w"))
        .await
        .unwrap();
    socket.send(Message::Binary(data.clone())).await.unwrap();
    socket.send(ws::control("", "", "", "w")).await.unwrap();
    socket.send(Message::Binary(data.clone())).await.unwrap();
    let reply = ws::text(ws::next_reply(&mut socket).await);
    assert!(
        reply.contains("w: the transform failed: failed after writing 64 KiB"),
        "{reply}"
    );
    assert!(ws::binary(ws::next_reply(&mut socket).await) == data);
    assert_healthy_and_serving(&server).await;
}
