//! Bad component sources fail start-up with one clear line that says what was wrong
//! and what to do.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;

use crate::support::{ais_wasm, component};

/// Start `ais-wasm run` with the given source variables and return its stderr.
fn start(dir: &Path, env: &[(&str, &str)]) -> String {
    let input = dir.join("in");
    std::fs::write(&input, b"x").unwrap();
    let mut command = ais_wasm(&dir.join("cache"));
    command.arg("run").arg(&input).envs(env.iter().copied());
    let output = command.output().unwrap();
    assert!(!output.status.success(), "start-up succeeded with {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_says(stderr: &str, needles: &[&str]) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} missing in {line:?}");
    }
}

#[test]
fn payload_that_is_not_base64() {
    let dir = tempfile::tempdir().unwrap();
    assert_says(
        &start(dir.path(), &[("ETL_WASM_PAYLOAD", "%%% not base64 %%%")]),
        &["not valid base64", "ais-wasm payload"],
    );
}

#[test]
fn payload_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let text = base64::engine::general_purpose::STANDARD.encode(b"hello, I am text");
    assert_says(
        &start(dir.path(), &[("ETL_WASM_PAYLOAD", &text)]),
        &["not WebAssembly", "expected a WASI 0.2 component"],
    );
    let core = base64::engine::general_purpose::STANDARD.encode(b"\0asm\x01\0\0\0");
    assert_says(
        &start(dir.path(), &[("ETL_WASM_PAYLOAD", &core)]),
        &["core WebAssembly module", "wasm32-wasip2"],
    );
}

#[test]
fn component_of_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let command = component("host/tests/components/command");
    assert_says(
        &start(dir.path(), &[("ETL_WASM_PATH", command.to_str().unwrap())]),
        &[
            "exports neither aistore:etl/buffered@0.1.0 nor aistore:etl/streaming@0.1.0",
            "wasi:cli/run",
            "buffered-transform",
        ],
    );
}

#[test]
fn hash_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let echo = component("examples/echo");
    let zeros = "0".repeat(64);
    assert_says(
        &start(
            dir.path(),
            &[
                ("ETL_WASM_PATH", echo.to_str().unwrap()),
                ("ETL_WASM_SHA256", &zeros),
            ],
        ),
        &["ETL_WASM_SHA256 does not match", "update the pin"],
    );
}

#[test]
fn missing_file_unreachable_url_and_no_source() {
    let dir = tempfile::tempdir().unwrap();
    assert_says(
        &start(dir.path(), &[("ETL_WASM_PATH", "/nonexistent/x.wasm")]),
        &["cannot read the component file /nonexistent/x.wasm"],
    );
    // Port 1 on loopback refuses connections. The path is never shown: an AIStore
    // URL carries the ETL's secret there.
    let refused = start(
        dir.path(),
        &[("ETL_WASM_URL", "http://127.0.0.1:1/s3cr3t/x.wasm")],
    );
    assert_says(
        &refused,
        &[
            "cannot download the component from http://127.0.0.1:1",
            "ETL_WASM_URL",
        ],
    );
    assert!(!refused.contains("s3cr3t"), "{refused}");
    assert_says(
        &start(dir.path(), &[("ETL_WASM_URL", "ftp://example/x.wasm")]),
        &["http or https"],
    );
    assert_says(&start(dir.path(), &[]), &["no component given"]);
    assert_says(
        &start(
            dir.path(),
            &[
                ("ETL_WASM_PATH", "/a.wasm"),
                ("ETL_WASM_URL", "http://127.0.0.1:1/"),
            ],
        ),
        &["more than one component source"],
    );
}

#[test]
fn component_from_a_url_with_a_pin() {
    let wasm = std::fs::read(component("examples/hello")).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    let (origin, server) = serve_once(wasm);
    let url = format!("{origin}/hello.wasm");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"x").unwrap();
    let output = ais_wasm(&dir.path().join("cache"))
        .env("ETL_WASM_URL", &url)
        .env("ETL_WASM_SHA256", &sha)
        .arg("run")
        .arg(&input)
        .output()
        .unwrap();
    server.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"Hello World!");
}

/// A component URL that redirects (as release downloads do) is followed; the
/// protocol's own calls follow none (`serve::direct_put::redirects_are_not_followed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_url_that_redirects_is_followed() {
    use crate::serve::fake_target::{FakeTarget, Get};
    let origin = FakeTarget::start().await;
    origin.put_file(
        "/hello.wasm",
        std::fs::read(component("examples/hello")).unwrap(),
    );
    let location = format!("{}/hello.wasm", origin.url());
    origin.fail_object("/latest.wasm", Get::Redirect(302, location));
    let url = format!("{}/latest.wasm", origin.url());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"x").unwrap();
    let mut command = ais_wasm(&dir.path().join("cache"));
    command.env("ETL_WASM_URL", &url).arg("run").arg(&input);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"Hello World!");
}

/// A component from a URL that is not one: the error names the URL's origin, never
/// its path, where an AIStore URL carries the ETL's secret.
#[test]
fn a_component_url_is_shown_without_its_path() {
    let (origin, server) = serve_once(b"not a component".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{origin}/v1/etl/s3cr3t/x.wasm");
    let stderr = start(dir.path(), &[("ETL_WASM_URL", &url)]);
    server.join().unwrap();
    assert_says(
        &stderr,
        &[&format!("the component at {origin}"), "not WebAssembly"],
    );
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

/// An HTTP server on loopback that answers one request, whatever it asks, with `body`;
/// its origin, and the thread to join once the request was made.
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).unwrap();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
    });
    (origin, server)
}
