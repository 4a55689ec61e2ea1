//! Bad component sources fail start-up with one clear line that says what was wrong
//! and what to do.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

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

/// `ais-wasm run` of the hello example succeeded.
fn assert_said_hello(output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(output.stdout, b"Hello World!");
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
    assert_says(
        &start(
            dir.path(),
            &[
                ("ETL_WASM_PATH", echo.to_str().unwrap()),
                ("ETL_WASM_SHA256", "abcd"),
            ],
        ),
        &["ETL_WASM_SHA256 \"abcd\" is not a sha256 (64 hex digits)"],
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
            // The cause, not only reqwest's "error sending request".
            "Connection refused",
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
    assert_said_hello(&output);
}

/// A component over HTTPS from a server whose certificate only a CA of its own
/// signed: trusted once the system's roots name that CA (`SSL_CERT_FILE`, as a
/// container's trust store would), and refused with a certificate error before.
#[test]
fn component_over_https_is_verified_against_the_system_roots() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
    .unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/hello.wasm", listener.local_addr().unwrap());
    let wasm = std::fs::read(component("examples/hello")).unwrap();
    let tls = Arc::new(tls);
    let serve = move |stream: std::net::TcpStream| -> std::io::Result<()> {
        let connection =
            rustls::ServerConnection::new(tls.clone()).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(connection, stream);
        // The request's head, to its blank line.
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            stream.read_exact(&mut byte)?;
            request.push(byte[0]);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            wasm.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&wasm)?;
        stream.conn.send_close_notify();
        stream.flush()
    };
    // The first client refuses the certificate (its handshake fails here, which the
    // client's own error shows); the second is served.
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let _ = serve(stream.unwrap());
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"x").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let no_more = dir.path().join("no-more-roots");
    std::fs::create_dir(&no_more).unwrap();
    let run = |trusted: bool| {
        let mut command = ais_wasm(&dir.path().join("cache"));
        command.env("ETL_WASM_URL", &url).arg("run").arg(&input);
        match trusted {
            true => command
                .env("SSL_CERT_FILE", &ca_file)
                .env("SSL_CERT_DIR", &no_more),
            false => command
                .env_remove("SSL_CERT_FILE")
                .env_remove("SSL_CERT_DIR"),
        };
        command.output().unwrap()
    };
    let refused = run(false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("certificate"), "{stderr}");
    let trusted = run(true);
    // Asserted first: a client that never connected would leave the server waiting.
    assert_said_hello(&trusted);
    server.join().unwrap();
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
    assert_said_hello(&output);
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

/// An interface exported under its name but not with the functions, or the types,
/// the host calls is named as the fault, not taken as absent: a lifecycle without
/// `init` would have its init skipped, and a buffered one would be "no transform".
#[test]
fn component_exporting_an_interface_not_as_the_host_defines_it() {
    let dir = tempfile::tempdir().unwrap();
    let mismatch = |interface: &str| {
        format!("the component exports {interface}, but not as this host defines it")
    };
    let buffered = mismatch("aistore:etl/buffered@0.1.0");
    let lifecycle = mismatch("aistore:etl/lifecycle@0.1.0");
    let rebuild = "build it against the aistore:etl WIT package that ships with this ais-wasm";
    for (text, says) in [
        (
            format!(
                "(component {})",
                u32_function("transform", "aistore:etl/buffered@0.1.0")
            ),
            [&buffered, "type mismatch with parameters", rebuild],
        ),
        (
            format!(
                "(component {})",
                u32_function("transform-object", "aistore:etl/buffered@0.1.0")
            ),
            [&buffered, "does not have export `transform`", rebuild],
        ),
        (
            echo_with(&u32_function("initialise", "aistore:etl/lifecycle@0.1.0")),
            [&lifecycle, "does not have export `init`", rebuild],
        ),
    ] {
        let path = component_from_text(dir.path(), &text);
        assert_says(
            &start(dir.path(), &[("ETL_WASM_PATH", path.to_str().unwrap())]),
            &says,
        );
    }
    // The same buffered transform, without that lifecycle, is one.
    let path = component_from_text(dir.path(), &echo_with(""));
    let input = dir.path().join("object");
    std::fs::write(&input, b"as it was").unwrap();
    let output = ais_wasm(&dir.path().join("cache"))
        .args(["run", "-o"])
        .arg(dir.path().join("out"))
        .arg(&input)
        .env("ETL_WASM_PATH", &path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let result = std::fs::read(dir.path().join("out/object")).unwrap();
    assert_eq!(result, b"as it was");
}

/// A component's items that export, as `interface`, one function `name` from u32
/// to u32.
fn u32_function(name: &str, interface: &str) -> String {
    format!(
        r#"(core module $u32 (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $u32 (instantiate $u32))
            (func $u32 (param "x" u32) (result u32) (canon lift (core func $u32 "f")))
            (instance $u32 (export "{name}" (func $u32)))
            (export "{interface}" (instance $u32))"#
    )
}

/// A component whose aistore:etl/buffered@0.1.0 returns the object as it is, and
/// which has `more` items.
fn echo_with(more: &str) -> String {
    format!(
        r#"(component
            (core module $m
              (memory (export "memory") 1)
              ;; Each list where the last ended, from offset 64 on.
              (global $next (mut i32) (i32.const 64))
              (func (export "realloc") (param i32 i32 i32 i32) (result i32)
                (global.get $next)
                (global.set $next (i32.add (global.get $next) (local.get 3))))
              ;; The result, ok and the data's own list, at offset 0.
              (func (export "transform") (param i32 i32 i32 i32 i32 i32) (result i32)
                (i32.store8 (i32.const 0) (i32.const 0))
                (i32.store (i32.const 4) (local.get 0))
                (i32.store (i32.const 8) (local.get 1))
                i32.const 0))
            (core instance $i (instantiate $m))
            (type $e (variant (case "bad-input" string) (case "failed" string)))
            (export $error "transform-error" (type $e))
            (func $transform
              (param "data" (list u8)) (param "path" string) (param "args" string)
              (result (result (list u8) (error $error)))
              (canon lift (core func $i "transform") (memory (core memory $i "memory"))
                (realloc (core func $i "realloc"))))
            (instance $buffered (export "transform" (func $transform)))
            (export "aistore:etl/buffered@0.1.0" (instance $buffered))
            {more})"#
    )
}

/// A component in the text format, written to `dir`.
fn component_from_text(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("component.wasm");
    std::fs::write(&path, wat::parse_str(text).unwrap()).unwrap();
    path
}
