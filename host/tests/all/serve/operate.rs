//! Issue 7, operating the server: readiness while the component loads, Prometheus
//! metrics, hot swap (SIGHUP and the admin endpoint), and a port in use.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::harness::{ServerBuilder, client, port_for_a_child};
use crate::support::{ais_wasm, component};

/// A port that cannot be had stops the start with the address and what the flag
/// takes.
#[test]
fn a_port_in_use_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (status, stderr) = ServerBuilder::new("examples/echo")
        .arg("--listen")
        .arg(&address)
        .start_expecting_failure();
    assert!(!status.success());
    for needle in [
        format!("cannot listen on {address}"),
        "HOST:PORT, a free port".into(),
        "Address already in use".into(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} missing: {stderr}");
    }
}

/// Every serving thread takes descriptors: the soft open-file limit is raised to the
/// hard one at start, and threads that cannot all start are an error saying what to
/// lower, not a panic.
#[tokio::test]
async fn serving_threads_within_the_open_file_limit() {
    let server = ServerBuilder::new("examples/echo")
        .open_file_limit(64, 4096)
        .env("ETL_WASM_SERVE_THREADS", "100")
        .start()
        .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files"));
    let soft: Vec<&str> = open_files.unwrap().split_whitespace().collect();
    assert_eq!(&soft[3..5], ["4096", "4096"], "{limits}");
    assert_eq!(
        put(&server.url("/b/o"), b"served").await,
        (200, b"served".to_vec())
    );

    for (threads, limit, needle) in [
        (
            "100",
            64,
            "cannot start the serving threads: lower --serve-threads",
        ),
        (
            "5000",
            4096,
            "--serve-threads/ETL_WASM_SERVE_THREADS must be from 1 to 1024",
        ),
    ] {
        let (status, stderr) = ServerBuilder::new("examples/echo")
            .open_file_limit(limit, limit)
            .env("ETL_WASM_SERVE_THREADS", threads)
            .start_expecting_failure();
        assert_eq!(status.code(), Some(1), "{threads}: {stderr}");
        assert!(stderr.contains(needle), "{threads}: {stderr}");
        assert!(!stderr.contains("panicked"), "{threads}: {stderr}");
    }
}

/// TLS settings for calls to AIStore that cannot be what was meant stop the start: a
/// client certificate without its key (or the reverse), a CA file with no certificate.
#[test]
fn half_set_tls_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("not-a-certificate");
    std::fs::write(&text, "just text\n").unwrap();
    for (name, cause) in [
        ("AIS_CRT", "only one of AIS_CRT and AIS_CRT_KEY is set"),
        ("AIS_CRT_KEY", "only one of AIS_CRT and AIS_CRT_KEY is set"),
        ("AIS_CLIENT_CA", "holds no PEM certificate"),
    ] {
        let (status, stderr) = ServerBuilder::new("examples/echo")
            .env(name, &text)
            .start_expecting_failure();
        assert!(!status.success(), "{name}");
        assert!(stderr.contains(cause), "{name}: {stderr}");
    }
}

/// An empty variable is an unset one, whichever setting it is (a templated pod spec's
/// `value: ""`): the server starts with its defaults, and an empty admin token is no
/// token.
#[tokio::test]
async fn empty_variables_are_unset_ones() {
    let mut server = ServerBuilder::new("examples/echo");
    for name in [
        "NUM_WORKERS",
        "ETL_WASM_TIMEOUT",
        "ETL_WASM_ADMIN_TOKEN",
        "ETL_FQN_ROOTS",
        "AIS_TARGET_URL",
        "ETL_WASM_SERVE_THREADS",
    ] {
        server = server.env(name, "");
    }
    let server = server.start().await;
    assert_eq!(
        put(&server.url("/b/o"), b"fine").await,
        (200, b"fine".to_vec())
    );
    let reload = client().post(server.url("/admin/reload")).bearer_auth("");
    assert_eq!(reload.send().await.unwrap().status(), 405);
}

/// `AIS_TARGET_URL` takes objects' names appended: one that is not an http(s) URL, or
/// has a query or fragment that would take them, stops the start, its secret unsaid.
#[test]
fn an_unusable_target_url_stops_the_start() {
    for url in [
        "garbage",
        "ftp://t:8080/v1/etl/_object/e/Wq7secret",
        "http://t:8080/v1/etl/_object/e/Wq7secret?q=1",
        "http://t:8080/v1/etl/_object/e/Wq7secret#x",
    ] {
        let (status, stderr) = ServerBuilder::new("examples/echo")
            .env("AIS_TARGET_URL", url)
            .start_expecting_failure();
        assert!(!status.success(), "{url}");
        assert!(
            stderr.contains("AIS_TARGET_URL must be an http or https URL with neither query"),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains("Wq7secret"), "{url}: {stderr}");
    }
}

/// Poll `check` until it holds, or fail after `deadline`.
async fn eventually(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !check().await {
        assert!(
            Instant::now() < end,
            "{what} did not happen within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put(url: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let response = client().put(url).body(body.to_vec()).send().await.unwrap();
    (
        response.status().as_u16(),
        response.bytes().await.unwrap().to_vec(),
    )
}

/// `/health` answers 503 until the component is loaded, then 200 `Running`. A SIGHUP
/// meanwhile is refused, as the admin endpoint refuses a reload then: the process
/// lives on.
#[tokio::test]
async fn health_is_503_until_the_component_is_ready() {
    // The component comes from a URL that answers only when the test allows it.
    let wasm = std::fs::read(component("examples/echo")).unwrap();
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/echo.wasm", origin.local_addr().unwrap());
    let (release, released) = std::sync::mpsc::channel::<()>();
    let origin = std::thread::spawn(move || {
        let (mut stream, _) = origin.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).unwrap();
        released.recv().unwrap();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            wasm.len()
        )
        .unwrap();
        stream.write_all(&wasm).unwrap();
    });
    let port = port_for_a_child();
    let cache = tempfile::tempdir().unwrap();
    let mut child = ais_wasm(cache.path())
        .env("ETL_WASM_URL", &url)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    let status = || async {
        client()
            .get(&health)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok()
    };
    eventually("the port opening", Duration::from_secs(20), async || {
        status().await.is_some()
    })
    .await;
    assert_eq!(
        status().await,
        Some(503),
        "not ready while the component downloads"
    );
    let (code, _) = put(&format!("http://127.0.0.1:{port}/b/o"), b"early").await;
    assert_eq!(code, 503, "objects wait for readiness too");
    // SAFETY: kill(2) on the child's pid, which it still is (not yet waited for).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(status().await, Some(503), "a SIGHUP while loading");
    assert!(
        child.try_wait().unwrap().is_none(),
        "a SIGHUP while loading"
    );
    release.send(()).unwrap();
    eventually("readiness", Duration::from_secs(30), async || {
        status().await == Some(200)
    })
    .await;
    assert_eq!(
        put(&format!("http://127.0.0.1:{port}/b/o"), b"now").await,
        (200, b"now".to_vec())
    );
    origin.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

/// An object's name and an `etl_fqn` come from the request: a newline or NUL in
/// them stays within its log line, escaped, and starts no line of the sender's
/// making.
#[tokio::test]
async fn a_request_cannot_forge_log_lines() {
    let server = ServerBuilder::new("examples/echo")
        .env("RUST_LOG", "info")
        .start()
        .await;
    let forged = "%0A2026-11-24T06:59:43.287327Z%20ERROR%20FORGED%00";
    for path in [
        format!("/b/o{forged}?etl_fqn=x"),
        format!("/b/o?etl_fqn=x{}", forged.replace('%', "%25")),
    ] {
        let (code, _) = put(&server.url(&path), b"x").await;
        assert_eq!(code, 403, "{path}");
    }
    server.wait_for_log("is not an AIStore object path").await;
    let log = server.wait_for_log("ERROR FORGED\\x00").await;
    assert!(
        !log.lines()
            .any(|line| line.starts_with("2026-11-24T06:59:43.287327Z")),
        "{log}"
    );
    assert!(!log.contains('\0'), "{log:?}");
}

#[tokio::test]
async fn metrics_count_objects_bytes_errors_and_the_pool() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(put(&server.url("/b/o"), b"12345").await.0, 200);
    }
    assert_eq!(
        put(&server.url("/b/o?etl_args=bad-input"), b"x").await.0,
        422
    );
    assert_eq!(put(&server.url("/b/o?etl_args=panic"), b"x").await.0, 500);
    let text = server.metrics().await;
    for line in [
        r#"ais_wasm_objects_total{transport="hpush",outcome="ok"} 3"#,
        r#"ais_wasm_objects_total{transport="hpush",outcome="bad_input"} 1"#,
        r#"ais_wasm_objects_total{transport="hpush",outcome="trap"} 1"#,
        r#"ais_wasm_bytes_in_total{transport="hpush"} 17"#,
        r#"ais_wasm_bytes_out_total{transport="hpush"} 15"#,
        r#"ais_wasm_object_duration_seconds_count{transport="hpush"} 5"#,
        r#"ais_wasm_instances_discarded_total 1"#,
        r#"ais_wasm_compile_cache_total{result="miss"} 1"#,
        r#"ais_wasm_instances{state="busy"} 0"#,
        "ais_wasm_requests_in_flight 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

/// SIGHUP swaps in the component the source now holds; an object in flight finishes
/// on the old one; a component that fails validation is refused and the current one
/// keeps serving.
#[tokio::test]
async fn sighup_swaps_the_component_and_keeps_the_old_one_when_the_new_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transform.wasm");
    std::fs::copy(component("examples/upper"), &path).unwrap();
    let server = ServerBuilder::with_component(&path)
        .env("RUST_LOG", "info")
        .start()
        .await;
    assert_eq!(
        put(&server.url("/b/o"), b"abc").await,
        (200, b"ABC".to_vec())
    );

    // An upload in flight on the old component: its body is still arriving.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let in_flight = tokio::spawn(
        client()
            .put(server.url("/b/slow"))
            .body(reqwest::Body::wrap_stream(tokio_stream(receiver)))
            .send(),
    );
    sender.send(Ok(b"first half, ".to_vec())).await.unwrap();

    std::fs::copy(component("examples/hello"), &path).unwrap();
    server.signal(libc::SIGHUP);
    let url = server.url("/b/o");
    eventually("the swap", Duration::from_secs(30), async || {
        put(&url, b"abc").await.1 == b"Hello World!"
    })
    .await;

    sender.send(Ok(b"second half".to_vec())).await.unwrap();
    drop(sender);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(
        response.bytes().await.unwrap(),
        "FIRST HALF, SECOND HALF".as_bytes()
    );

    std::fs::write(&path, b"not a component").unwrap();
    server.signal(libc::SIGHUP);
    eventually("the refusal", Duration::from_secs(30), async || {
        server.stderr().contains("hot swap failed")
    })
    .await;
    assert_eq!(put(&url, b"abc").await.1, b"Hello World!");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"ais_wasm_reloads_total{result="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ais_wasm_reloads_total{result="failed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_admin_endpoint_is_off_by_default_and_needs_its_token() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let response = client()
        .post(server.url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405, "off without a token");

    let server = ServerBuilder::new("examples/echo")
        .env("ETL_WASM_ADMIN_TOKEN", "s3cret")
        .start()
        .await;
    let reload = |token: &'static str| {
        client()
            .post(server.url("/admin/reload"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(reload("wrong").await.unwrap().status(), 401);
    // The scheme's case is the client's (RFC 9110 §11.1).
    let lower = client()
        .post(server.url("/admin/reload"))
        .header("authorization", "bearer s3cret")
        .send();
    assert_eq!(lower.await.unwrap().status(), 200);
    let response = reload("s3cret").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("now serving the component with sha256")
    );
}

/// Hot swaps while long calls are in flight: every swap succeeds and every object is
/// transformed. The objects begun before a swap finish on the component they began
/// with, and `NUM_WORKERS` bounds them all together, so the instances alive stay
/// within the allocator's slots (3 x workers + 2) however many swaps come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_during_long_calls_keep_within_the_instance_slots() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "1")
        .env("ETL_WASM_ADMIN_TOKEN", "s3cret")
        .start()
        .await;
    let mut calls = Vec::new();
    for swap in 1..=5 {
        let url = server.url("/long?etl_args=sleep:2000");
        calls.push(tokio::spawn(client().put(url).body("x").send()));
        let in_flight = format!("\nais_wasm_requests_in_flight {swap}\n");
        eventually("the call", Duration::from_secs(30), async || {
            server.metrics().await.contains(&in_flight)
        })
        .await;
        let response = client()
            .post(server.url("/admin/reload"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(
            status,
            200,
            "swap {swap}: {}",
            response.text().await.unwrap()
        );
    }
    let url = server.url("/after?etl_args=sleep:2000");
    calls.push(tokio::spawn(client().put(url).body("x").send()));
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap(), "x");
    }
}

fn tokio_stream(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// Structured logs: every line of a request, the guest's own output included, names
/// the ETL, the transport and the object (in a span made at the object's first line,
/// on whichever thread logs it).
#[tokio::test]
async fn json_logs_attribute_guest_output_to_etl_transport_and_object() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("RUST_LOG", "info")
        .env("ETL_WASM_LOG_FORMAT", "json")
        .env("ETL_NAME", "hostile-etl")
        .start()
        .await;
    assert_eq!(
        put(&server.url("/bucket/obj%201?etl_args=flood:1"), b"x")
            .await
            .0,
        200
    );
    eventually("the guest's line", Duration::from_secs(10), async || {
        server.stderr().contains("yyyy")
    })
    .await;
    let stderr = server.stderr();
    let line = stderr.lines().find(|l| l.contains("yyyy")).unwrap();
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let span = &json["span"];
    assert_eq!(span["etl"], "hostile-etl", "{line}");
    assert_eq!(span["transport"], "hpush", "{line}");
    assert_eq!(span["object"], "bucket/obj 1", "{line}");
    assert_eq!(json["target"], "guest", "{line}");

    // The host's own line about a failed object, over WebSocket.
    let mut socket = super::ws::connect(&server).await;
    socket
        .send(super::ws::control("", "bad-input", "", "bucket/refused"))
        .await
        .unwrap();
    socket
        .send(Message::Binary(b"x".to_vec().into()))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("nope"), "{reply:?}");
    eventually("the refusal's line", Duration::from_secs(10), async || {
        server.stderr().contains("bucket/refused")
    })
    .await;
    let stderr = server.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("bucket/refused"))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let span = &json["span"];
    assert_eq!(span["etl"], "hostile-etl", "{line}");
    assert_eq!(span["transport"], "ws", "{line}");
    assert_eq!(span["object"], "bucket/refused", "{line}");
    assert_eq!(
        json["fields"]["status"], "422 Unprocessable Entity",
        "{line}"
    );
}
