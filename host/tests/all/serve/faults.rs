//! Faults around the server, with the fake target: a next hop that is down, resets,
//! answers 5xx or never answers; a target GET (hpull) that fails the same ways or is
//! refused; and clients that disconnect mid-upload or mid-download. Each gives a
//! clear error for its object, the server stays healthy, and nothing leaks: one
//! worker only, so a lost permit would stall the next object, and the pool's
//! counters are checked.
//! `direct_put.rs` covers the protocol details of these answers; this covers what
//! they leave behind.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fake_target::{FakeTarget, Get, Put};
use super::harness::{Mountpath, RawResponse, Server, ServerBuilder, closed_port, request};

/// `ETL_WASM_TIMEOUT` of these servers.
const DEADLINE: Duration = Duration::from_secs(2);

fn server(component: &str, target: &FakeTarget) -> ServerBuilder {
    ServerBuilder::new(component)
        .target(target, "f")
        .env("NUM_WORKERS", "1")
        .env("ETL_WASM_TIMEOUT", format!("{}ms", DEADLINE.as_millis()))
        .env("AIS_DIRECT_PUT_RETRIES", "1")
        .env("RUST_LOG", "warn,ais_wasm::cmd::serve=info")
}

/// `/health` answers, the next object is transformed correctly, and no instance is
/// held beyond the one worker's.
async fn assert_healthy(server: &Server, component: &str) {
    let response = super::harness::client()
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let data = b"next object ".repeat(10_000);
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        request(server.addr, "PUT", "/src/next", &[], &data),
    )
    .await
    .expect("the next object was not served: did a permit leak?");
    let expected = match component {
        "examples/upper" => data.to_ascii_uppercase(),
        _ => data,
    };
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body == expected, "the next object came back wrong");
    let (created, discarded, live) = server.pool_stats().await;
    assert!(live <= 1, "created {created}, discarded {discarded}");
}

fn assert_error(response: &RawResponse, status: u16, object: &str, cause: &str, case: &str) {
    assert_eq!(response.status, status, "{case}: {response:?}");
    let body = String::from_utf8_lossy(&response.body);
    assert!(body.starts_with(&format!("{object}: ")), "{case}: {body}");
    assert!(body.contains(cause), "{case}: {cause:?} not in {body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hop_down_resetting_failing_or_too_slow() {
    let target = FakeTarget::start().await;
    let closed = closed_port();
    let down = format!("http://{closed}/ais%2F@%23%2Fdst%2Fo");
    let hop = format!("{}/ais%2F@%23%2Fdst%2Fo", target.url());
    // Buffered (echo) and streaming (upper, a one-shot request body).
    for component in ["examples/echo", "examples/upper"] {
        let server = server(component, &target).start().await;
        // Refused and reset are both transient (§7.4): retried when the result is
        // held, the 503 contract for a one-shot streamed body (§7.3).
        let transient = match component {
            "examples/echo" => (502, "the direct put failed after 2 attempts: the"),
            _ => (503, "the request body cannot be replayed: the"),
        };
        let cases = [
            ("down", None, &down, transient),
            ("reset", Some(Put::Reset), &hop, transient),
            // The hop's body passes verbatim (§7.1): a next stage names the object.
            (
                "5xx",
                Some(Put::Status(
                    500,
                    Bytes::from_static(b"src/o: downstream broke"),
                )),
                &hop,
                (500, "downstream broke"),
            ),
            // One with no body is named, or the user would read "ETL error: " alone.
            (
                "404, no body",
                Some(Put::Status(404, Bytes::new())),
                &hop,
                (404, "src/o: the next hop answered 404: with no body"),
            ),
            (
                "slow",
                Some(Put::Hang),
                &hop,
                (
                    504,
                    "the direct put to the next hop did not finish within the per-object \
                     deadline of 2s",
                ),
            ),
        ];
        for (case, put, entry, (status, cause)) in cases {
            let case = format!("{component}, hop {case}");
            if let Some(put) = put {
                target.always(put);
            }
            let started = Instant::now();
            let response = request(
                server.addr,
                "PUT",
                "/src/o",
                &[("Ais-Node-Url", entry)],
                &vec![b'd'; 100_000],
            )
            .await;
            assert_error(&response, status, "src/o", cause, &case);
            let elapsed = started.elapsed();
            assert!(elapsed < DEADLINE * 5, "{case}: answered after {elapsed:?}");
            assert_healthy(&server, component).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_get_failing_for_hpull() {
    let target = FakeTarget::start().await;
    target.fail_object(
        "ais/@#/src/500",
        Get::Status(500, Bytes::from_static(b"disk broke")),
    );
    target.fail_object(
        "ais/@#/src/503",
        Get::Status(503, Bytes::from_static(b"busy")),
    );
    target.fail_object("ais/@#/src/reset", Get::Reset);
    target.fail_object("ais/@#/src/slow", Get::Hang);
    // The references' whole-object read (echo) and a streaming read (upper).
    for component in ["examples/echo", "examples/upper"] {
        let server = server(component, &target).start().await;
        for (name, status, cause) in [
            (
                "500",
                500,
                "the target answered 500 for the object: disk broke",
            ),
            ("503", 503, "the target answered 503 for the object: busy"),
            ("reset", 502, "the target cannot be reached"),
            (
                "slow",
                504,
                "reading the object, or waiting for room in ETL_WASM_HELD_INPUT to hold it, did \
                 not finish",
            ),
        ] {
            let case = format!("{component}, target GET {name}");
            let uname = format!("ais/@#/src/{name}");
            let started = Instant::now();
            let path = format!("/{}", super::harness::path_escape(&uname));
            let response = request(server.addr, "GET", &path, &[], b"").await;
            assert_error(&response, status, &uname, cause, &case);
            assert!(started.elapsed() < DEADLINE * 5, "{case}");
            // Never the 503 contract: the target cannot replay an hpull (§7.3).
            assert_eq!(response.header("ais-etl-retry-reason"), None, "{case}");
            assert_healthy(&server, component).await;
        }
    }
    // Refused: nothing listens at AIS_TARGET_URL.
    let closed = closed_port();
    let server = server("examples/upper", &target)
        .env(
            "AIS_TARGET_URL",
            format!("http://{closed}/v1/etl/_object/f/s"),
        )
        .start()
        .await;
    let response = request(server.addr, "GET", "/ais%2F@%23%2Fsrc%2Fo", &[], b"").await;
    assert_error(
        &response,
        502,
        "ais/@#/src/o",
        "the target cannot be reached",
        "target GET refused",
    );
    assert_healthy(&server, "examples/upper").await;
}

/// Send `head` and `sent` bytes of a body announced longer, then close.
async fn upload_and_vanish(server: &Server, head: &str, sent: usize) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'u'; sent]).await.unwrap();
    stream.flush().await.unwrap();
}

/// Read the response head and `bytes` of the body, then close.
async fn download_and_vanish(server: &Server, request: &str, bytes: usize) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while received.len() < bytes {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the response ended early");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_disconnecting_mid_upload_or_mid_download() {
    let target = FakeTarget::start().await;
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "big", &vec![b'b'; 64 << 20]);
    for component in ["examples/echo", "examples/upper"] {
        let server = server(component, &target)
            .env("ETL_WASM_TIMEOUT", "120s")
            .start()
            .await;
        let addr = server.addr;
        // Mid-upload: 1 MiB of an announced 16 MiB, or of a chunked body.
        upload_and_vanish(
            &server,
            &format!("PUT /src/up HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 16777216\r\n\r\n"),
            1 << 20,
        )
        .await;
        assert_healthy(&server, component).await;
        upload_and_vanish(
            &server,
            &format!(
                "PUT /src/up HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n\
                 100000\r\n"
            ),
            1 << 20,
        )
        .await;
        assert_healthy(&server, component).await;
        // Mid-download: 1 MiB of the transformed 64 MiB file, then gone; the
        // transform is stopped long before its 120 s deadline.
        let started = Instant::now();
        download_and_vanish(
            &server,
            &format!(
                "PUT /src/big?{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n",
                super::harness::etl_fqn_param(&fqn)
            ),
            1 << 20,
        )
        .await;
        assert_healthy(&server, component).await;
        assert!(started.elapsed() < Duration::from_secs(60), "{component}");
    }
}

/// An object larger than the instance's memory could ever hold, for a transform that
/// only buffers: refused with 413 before it is read, whatever brings it; the server
/// serves on. The size it says is the announced one, or none for a chunked body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_larger_than_a_buffered_instance_are_refused_unread() {
    use futures::SinkExt;

    const MEMORY: usize = 4 << 20;
    let target = FakeTarget::start().await;
    let mountpath = Mountpath::new();
    let big = vec![b'b'; MEMORY + 1];
    target.put_object("ais/@#/src/big", big.clone());
    let fqn = mountpath.store("src", "big", &big);
    // c-md5 exports the buffered shape only.
    let server = server("examples/c-md5", &target)
        .env("ETL_WASM_MAX_MEMORY", "4MiB")
        .start()
        .await;
    let announced = format!(
        "{} bytes, more than the {MEMORY} bytes of memory",
        MEMORY + 1
    );
    let unannounced = format!("is more than the {MEMORY} bytes of memory");
    let addr = server.addr;
    let chunked =
        format!("PUT /src/chunked HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n");
    let fqn_path = format!("/src/fqn?{}", super::harness::etl_fqn_param(&fqn));
    let cases = [
        (
            "hpush",
            "PUT",
            "/src/pushed".to_string(),
            &big[..],
            &announced,
        ),
        ("hpush-fqn", "PUT", fqn_path, &b""[..], &announced),
        (
            "hpull",
            "GET",
            "/ais%2F@%23%2Fsrc%2Fbig".to_string(),
            &b""[..],
            &announced,
        ),
    ];
    for (case, method, path, body, cause) in cases {
        let response = request(addr, method, &path, &[], body).await;
        assert_eq!(response.status, 413, "{case}: {response:?}");
        let text = String::from_utf8_lossy(&response.body);
        assert!(text.contains(cause.as_str()), "{case}: {text}");
        assert!(
            text.contains("export aistore:etl/streaming"),
            "{case}: {text}"
        );
    }
    // Chunked: read up to the limit, then refused; the rest is read past.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let piece = vec![b'c'; 1 << 20];
    for _ in 0..8 {
        let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
        stream.write_all(&chunk).await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let (status, body) = answer(&mut stream, "chunked").await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 413, "chunked: {body}");
    assert!(body.contains(&unannounced), "chunked: {body}");
    // WebSocket: a TEXT diagnostic, and the connection serves on.
    let mut socket = super::ws::connect(&server).await;
    socket
        .send(super::ws::control("", "", "", "ws"))
        .await
        .unwrap();
    let message = tokio_tungstenite::tungstenite::Message::Binary(big.clone().into());
    socket.send(message).await.unwrap();
    let reply = super::ws::text(super::ws::next_reply(&mut socket).await);
    assert!(reply.contains(&announced), "ws: {reply}");
    socket
        .send(super::ws::control("", "", "", "ws"))
        .await
        .unwrap();
    let small = tokio_tungstenite::tungstenite::Message::Binary(Bytes::from_static(b"small"));
    socket.send(small).await.unwrap();
    let digest = super::ws::binary(super::ws::next_reply(&mut socket).await);
    assert_eq!(digest.len(), 32, "{digest:?}");
    // Over HTTP too, with the one worker.
    let response = request(addr, "PUT", "/src/small", &[], b"small").await;
    assert_eq!(response.status, 200, "{response:?}");
}

/// An answer given before the request body was read: a 413 decided from the announced
/// length, or a streaming transform that finished without reading its input. The rest
/// of the body is read and thrown away, so that the client writes all of it, and the
/// connection serves on. Closed with the body unread, the connection is reset, and a
/// Go client (the target) often fails its write before it reads the answer, and sends
/// the object again (§7.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_was_read_leaves_the_connection_whole() {
    const BODY: usize = 64 << 20;
    let target = FakeTarget::start().await;
    // c-md5 exports the buffered shape only.
    let md5 = server("examples/c-md5", &target)
        .env("ETL_WASM_MAX_MEMORY", "4MiB")
        .start()
        .await;
    let hostile = server("host/tests/components/hostile", &target)
        .start()
        .await;
    for (server, path, status, next, answer) in [
        (
            &md5,
            "/src/big",
            413,
            "/src/next",
            "8b1a9953c4611296a827abf8c47804d7",
        ),
        (
            &hostile,
            "/src/unread?etl_args=never-read",
            200,
            "/src/next",
            "Hello",
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (got, written) = put_while_answered(&mut stream, path, &vec![b'u'; BODY]).await;
        assert_eq!(got.0, status, "{path}: {}", String::from_utf8_lossy(&got.1));
        written.unwrap_or_else(|e| panic!("{path}: the body was not all written: {e}"));
        // The same connection, for the next object.
        let (got, written) = put_while_answered(&mut stream, next, b"Hello").await;
        written.unwrap();
        assert_eq!(
            (got.0, &got.1[..]),
            (200, answer.as_bytes()),
            "after {path}"
        );
    }
}

/// A streaming transform waiting for input that stops coming: the deadline that passes
/// is the input's, and the answer says so (as when the object is read before the
/// call), not that the transform took too long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_that_stops_coming_is_what_ran_out_of_time() {
    let target = FakeTarget::start().await;
    // upper streams objects of 1 MiB and more.
    let server = server("examples/upper", &target).start().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "PUT /src/stalled HTTP/1.1\r\nHost: ais\r\nContent-Length: 2000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b's'; 1000]).await.unwrap();
    let (status, body) = answer(&mut stream, "stalled").await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains(
            "src/stalled: reading the object failed: it did not all arrive within the \
             per-object deadline of 2s"
        ),
        "{body}"
    );
    assert!(!body.contains("the transform exceeded"), "{body}");
}

/// PUTs `body` on `stream`, written while the answer is read: the answer's status and
/// body, and how the writing ended.
async fn put_while_answered(
    stream: &mut tokio::net::TcpStream,
    path: &str,
    body: &[u8],
) -> ((u16, Vec<u8>), std::io::Result<()>) {
    let (mut read, mut write) = stream.split();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: ais\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let writing = async {
        write.write_all(head.as_bytes()).await?;
        write.write_all(body).await
    };
    let both = async { tokio::join!(answer(&mut read, path), writing) };
    tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .expect("the answer, and the writing of the body, within 60 s")
}

/// The answer read off `read`: its status and body.
async fn answer(read: &mut (impl tokio::io::AsyncRead + Unpin), what: &str) -> (u16, Vec<u8>) {
    let mut bytes = Vec::new();
    loop {
        if let Some(answer) = answer_in(&bytes) {
            return answer;
        }
        let mut buffer = [0; 4096];
        match read.read(&mut buffer).await {
            Ok(0) | Err(_) => panic!("{what}: the answer broke off: {bytes:?}"),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A whole answer at the start of `bytes`: its status and body (by `Content-Length`,
/// or chunked).
fn answer_in(bytes: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut rest = &bytes[end + 4..];
    if let Some(length) = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let length: usize = length.trim().parse().unwrap();
        return (rest.len() >= length).then(|| (status, rest[..length].to_vec()));
    }
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
        if rest.len() < eol + 2 + size + 2 {
            return None;
        }
        if size == 0 {
            return Some((status, body));
        }
        body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
}

/// A next hop that answers 200 and stops halfway through its body: the rest is due
/// within the deadline, chunk by chunk. Over HTTP the body breaks off; over a
/// WebSocket the reply is a TEXT diagnostic, and the replies queued behind it go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hop_stalling_in_its_answer() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let target = FakeTarget::start().await;
    target.always(Put::OkBodyThenStall(Bytes::from_static(b"half")));
    let hop = format!("{}/ais%2F@%23%2Fdst%2Fo", target.url());
    let server = server("examples/echo", &target).start().await;

    let started = Instant::now();
    let response = super::harness::client()
        .put(server.url("/src/o"))
        .header("Ais-Node-Url", &hop)
        .body("object")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "a broken-off body passed");
    assert!(started.elapsed() < DEADLINE * 5, "{:?}", started.elapsed());

    let mut socket = super::ws::connect(&server).await;
    let pipelined = super::ws::control(&hop, "", "", "src/o");
    socket.send(pipelined).await.unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(b"object")))
        .await
        .unwrap();
    super::ws::send_object(
        &mut socket,
        super::ws::control("", "", "", "src/next"),
        b"next",
    )
    .await;
    let reply = super::ws::text(super::ws::next_reply(&mut socket).await);
    assert!(
        reply.contains("the next hop's answer did not finish within the per-object deadline"),
        "{reply}"
    );
    assert_eq!(
        super::ws::binary(super::ws::next_reply(&mut socket).await),
        "next"
    );
    assert!(started.elapsed() < DEADLINE * 10, "{:?}", started.elapsed());
    drop(socket.close(None).await);
    let _ = socket.next().await;
}
