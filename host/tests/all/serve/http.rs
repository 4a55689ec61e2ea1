//! The HTTP endpoints (§4) and where an object's bytes come from (§5): request body,
//! `etl_fqn`, the target's object endpoint, and `POST /download`.

use bytes::Bytes;
use futures::SinkExt;
use md5::Digest;
use reqwest::StatusCode;

use super::fake_target::{FakeTarget, SECRET};
use super::harness::{
    Mountpath, ServerBuilder, client, closed_port, etl_fqn_param, path_escape, raw,
};
use super::ws;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_running() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let response = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_body_with_content_length() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let data = pattern(300_000, 1);
    // Exactly what a target sends in body mode (§4.2).
    let mut request = format!(
        "PUT /src/obj HTTP/1.1\r\nHost: {}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        data.len()
    )
    .into_bytes();
    request.extend_from_slice(&data);
    let response = raw(server.addr, &request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, data);
    assert_eq!(
        response.header("content-length"),
        Some(data.len().to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_body_chunked() {
    let server = ServerBuilder::new("examples/upper").start().await;
    let pieces: Vec<Bytes> = ["hello ", "chunked ", "world"]
        .iter()
        .map(|s| Bytes::from(s.repeat(5000)))
        .collect();
    let expected: Vec<u8> = pieces.concat().to_ascii_uppercase();
    let stream = futures::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
    let response = client()
        .put(server.url("/src/obj"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_zero_length_chunked_body_is_an_empty_object() {
    // A 0-byte object in body mode: chunked with just the last chunk (§4.2).
    for component in ["examples/echo", "examples/upper", "examples/md5"] {
        let server = ServerBuilder::new(component).start().await;
        let request = format!(
            "PUT /src/empty HTTP/1.1\r\nHost: {}\r\nUser-Agent: Go-http-client/1.1\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
            server.addr
        );
        let response = raw(server.addr, request.as_bytes()).await;
        assert_eq!(response.status, 200, "{component}");
        let expected: &[u8] = match component {
            "examples/md5" => b"d41d8cd98f00b204e9800998ecf8427e",
            _ => b"",
        };
        assert_eq!(response.body, expected, "{component}");
    }
}

/// A body that breaks the chunked framing is a 400 that says how, not only hyper's
/// "error reading a body from connection".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_says_what_is_wrong() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let request = format!(
        "PUT /src/bad HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        server.addr
    );
    let response = raw(server.addr, request.as_bytes()).await;
    assert_eq!(response.status, 400, "{response:?}");
    let body = String::from_utf8_lossy(&response.body);
    assert!(
        body.contains(
            "reading the request body failed: error reading a body from connection: Invalid \
             chunk size line"
        ),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_fqn_mode_reads_the_double_encoded_file() {
    // The encoder reproduces the §5.3 worked example byte for byte.
    assert_eq!(
        etl_fqn_param("/data/mp1/@ais/src/%ob/imgs/cat 1.jpg".as_ref()),
        "etl_fqn=%252Fdata%252Fmp1%252F%40ais%252Fsrc%252F%2525ob%252Fimgs%252Fcat%25201.jpg"
    );
    let mountpath = Mountpath::new();
    let data = pattern(200_000, 2);
    let fqn = mountpath.store("src", "imgs/cat 1.jpg", &data);
    for component in ["examples/echo", "examples/upper"] {
        let server = ServerBuilder::new(component).start().await;
        let expected = match component {
            "examples/upper" => data.to_ascii_uppercase(),
            _ => data.clone(),
        };
        // §14: the request exactly as a target sends it, etl_args included.
        let request = format!(
            "PUT /src/imgs/cat%201.jpg?etl_args=%7B%22a%22%3A+1%7D&{} HTTP/1.1\r\nHost: {}\r\n\
             User-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            etl_fqn_param(&fqn),
            server.addr
        );
        let response = raw(server.addr, request.as_bytes()).await;
        assert_eq!(response.status, 200, "{component}: {:?}", response);
        assert!(response.body == expected, "{component}: wrong bytes");

        // A missing file is 404 (§7.1).
        let missing = mountpath.fqn("src", "imgs/none.jpg");
        let response = client()
            .put(server.url(&format!("/src/imgs/none.jpg?{}", etl_fqn_param(&missing))))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{component}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpull_with_fqn_reads_the_file_unless_the_latest_version_is_asked_for() {
    let target = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/upper")
        .target(&target, "up")
        .start()
        .await;
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "imgs/cat 1.jpg", b"pulled from disk");
    // §4.3: the uname is one escaped segment.
    let escaped = "ais%2F@%23%2Fsrc%2Fimgs%2Fcat%201.jpg";
    let url = server.url(&format!("/{escaped}?{}", etl_fqn_param(&fqn)));
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), "PULLED FROM DISK");
    assert!(target.requests().is_empty(), "{:?}", target.requests());

    // Unless the request asks for the latest version (§5.5, §13 Q8): the file may be
    // older, and the target finds the latest when asked for it.
    target.put_object("ais/@#/src/imgs/cat 1.jpg", "newer, from the remote");
    let url = server.url(&format!(
        "/{escaped}?{}&latest-ver=true",
        etl_fqn_param(&fqn)
    ));
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), "NEWER, FROM THE REMOTE");
    let seen: Vec<String> = target.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        seen,
        [format!(
            "/v1/etl/_object/up/{SECRET}/{escaped}?latest-ver=true"
        )]
    );

    // With no target to ask, the file is all there is.
    let alone = ServerBuilder::new("examples/upper").start().await;
    let url = alone.url(&format!(
        "/{escaped}?{}&latest-ver=true",
        etl_fqn_param(&fqn)
    ));
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), "PULLED FROM DISK");
}

/// §5.3, §13 Q9: an object stored in chunks (a multipart upload) has only its first
/// chunk in its file, which the target names all the same. Its completed manifest
/// beside it (`%ut`) gives it away, and the object is read whole from the target
/// instead, over every transport, by a buffered or a streaming transform. Without a
/// target to read it from, the object fails, saying so, rather than being
/// transformed cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_stored_in_chunks_is_read_whole_from_the_target() {
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "big/obj 1", b"the first chunk");
    let manifest = mountpath.root().join("@ais/src/%ut/big/obj 1");
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(&manifest, b"a manifest").unwrap();
    let whole = "the first chunk, and then the rest of the object";
    let target = FakeTarget::start().await;
    target.put_object("ais/@#/src/big/obj 1", whole);
    let uname = path_escape("ais/@#/src/big/obj 1");
    for (component, expected) in [
        ("examples/upper", whole.to_ascii_uppercase()),
        ("examples/md5", hex::encode(md5::Md5::digest(whole))),
    ] {
        let server = ServerBuilder::new(component)
            .target(&target, "chunks")
            .start()
            .await;
        let fqn_param = etl_fqn_param(&fqn);
        let hpush = client().put(server.url(&format!("/src/big/obj%201?{fqn_param}")));
        let hpull = client().get(server.url(&format!("/{uname}?{fqn_param}")));
        for (transport, request) in [("hpush", hpush), ("hpull", hpull)] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{component} {transport}");
            let body = response.bytes().await.unwrap();
            assert_eq!(body, expected, "{component} {transport}");
        }
        let mut socket = ws::connect(&server).await;
        let escaped = path_escape(fqn.to_str().unwrap());
        socket
            .send(ws::control("", "", &escaped, "big/obj 1"))
            .await
            .unwrap();
        let reply = ws::binary(ws::next_reply(&mut socket).await);
        assert_eq!(reply, expected, "{component} ws");
    }
    let fetched = target.requests().len();
    assert_eq!(fetched, 6, "{:?}", target.requests());

    let alone = ServerBuilder::new("examples/upper").start().await;
    let url = alone.url(&format!("/src/big/obj%201?{}", etl_fqn_param(&fqn)));
    let response = client().put(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let message = response.text().await.unwrap();
    assert!(
        message.contains("holds only the first chunk of an object stored in chunks")
            && message.contains("set AIS_TARGET_URL"),
        "{message}"
    );
}

/// AIStore writes objects with mode 0640 in directories of 0750, owned by the user
/// aisnode runs as, and gives ETL pods no say in theirs. A file this server may not
/// read is read from the target instead, whether the file or a directory on its way
/// keeps it out, over every transport, with one warning that says why; without a
/// target it is 403, saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_file_the_server_may_not_read_is_read_from_the_target() {
    use std::os::unix::fs::PermissionsExt;
    let mountpath = Mountpath::new();
    let locked = mountpath.store("src", "locked", b"on disk");
    let behind = mountpath.store("src", "sealed/obj", b"on disk");
    let mode = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(&locked, 0o000);
    mode(behind.parent().unwrap(), 0o000);
    let target = FakeTarget::start().await;
    target.put_object("ais/@#/src/locked", "locked, from the target");
    target.put_object("ais/@#/src/sealed/obj", "sealed, from the target");
    let server = ServerBuilder::new("examples/upper")
        .target(&target, "denied")
        .bound_by_file_permissions()
        .start()
        .await;
    for (fqn, name, expected) in [
        (&locked, "locked", "LOCKED, FROM THE TARGET"),
        (&behind, "sealed/obj", "SEALED, FROM THE TARGET"),
    ] {
        let fqn_param = etl_fqn_param(fqn);
        let uname = path_escape(&format!("ais/@#/src/{name}"));
        let hpush = client().put(server.url(&format!("/src/{name}?{fqn_param}")));
        let hpull = client().get(server.url(&format!("/{uname}?{fqn_param}")));
        for (transport, request) in [("hpush", hpush), ("hpull", hpull)] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{name} {transport}");
            assert_eq!(
                response.text().await.unwrap(),
                expected,
                "{name} {transport}"
            );
        }
        let mut socket = ws::connect(&server).await;
        let escaped = path_escape(fqn.to_str().unwrap());
        socket
            .send(ws::control("", "", &escaped, name))
            .await
            .unwrap();
        let reply = ws::binary(ws::next_reply(&mut socket).await);
        assert_eq!(reply, expected, "{name} ws");
    }
    assert_eq!(target.requests().len(), 6, "{:?}", target.requests());
    let log = server.wait_for_log("cannot be read by this server").await;
    assert_eq!(
        log.matches("cannot be read by this server").count(),
        1,
        "{log}"
    );
    assert!(log.contains("from the target instead"), "{log}");

    let alone = ServerBuilder::new("examples/upper")
        .bound_by_file_permissions()
        .start()
        .await;
    let url = alone.url(&format!("/src/locked?{}", etl_fqn_param(&locked)));
    let response = client().put(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let message = response.text().await.unwrap();
    for hint in [
        "cannot be read by this server (uid ",
        "mode 0640",
        "set AIS_TARGET_URL",
    ] {
        assert!(message.contains(hint), "{hint:?} in {message}");
    }
    // For the temporary directory's removal.
    mode(behind.parent().unwrap(), 0o755);
}

/// `ETL_DIRECT_FQN` (§9.3): an FQN file goes to the streaming export whatever its
/// size; a request body still goes by size. The hostile fixture tells the shapes
/// apart: args `never-read` is an empty result when streamed, bad input when buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_fqn_streams_files_of_any_size() {
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "small", b"a small file");
    let by_fqn = format!("/src/small?etl_args=never-read&{}", etl_fqn_param(&fqn));
    for (direct_fqn, fqn_status) in [("0", 422), ("1", 200), ("true", 200)] {
        let server = ServerBuilder::new("host/tests/components/hostile")
            .env("ETL_DIRECT_FQN", direct_fqn)
            .start()
            .await;
        let response = client().put(server.url(&by_fqn)).send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            fqn_status,
            "ETL_DIRECT_FQN={direct_fqn}"
        );
        if fqn_status == 200 {
            assert!(response.bytes().await.unwrap().is_empty());
        }
        let response = client()
            .put(server.url("/src/small?etl_args=never-read"))
            .body("a small body")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            422,
            "ETL_DIRECT_FQN={direct_fqn}, body"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpull_without_fqn_gets_the_object_from_the_target() {
    let target = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/upper")
        .target(&target, "up")
        .start()
        .await;
    let uname = "ais/@#/src/dir/a b@c%d#e?fü";
    target.put_object(uname, "object from the target");
    let escaped = path_escape(uname);
    assert_eq!(
        escaped,
        "ais%2F@%23%2Fsrc%2Fdir%2Fa%20b@c%25d%23e%3Ff%C3%BC"
    );

    let response = client()
        .get(server.url(&format!("/{escaped}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), "OBJECT FROM THE TARGET");
    // latest-ver=true is forwarded on the fetch (§5.5, §13 Q8).
    let response = client()
        .get(server.url(&format!("/{escaped}?latest-ver=true&etl_args=x")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let prefix = format!("/v1/etl/_object/up/{SECRET}/");
    let seen: Vec<String> = target.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        seen,
        [
            format!("{prefix}{escaped}"),
            format!("{prefix}{escaped}?latest-ver=true"),
        ]
    );
    assert!(target.requests().iter().all(|r| r.method == "GET"));

    // An upstream error status is passed on as is (§4.3); a name that is not UTF-8
    // is asked for byte for byte.
    let response = client()
        .get(server.url("/ais%2F@%23%2Fsrc%2Fmissing%E9"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Its body quotes the request's path, with the ETL's secret masked (§11).
    let body = response.text().await.unwrap();
    assert!(body.contains("/v1/etl/_object/up/***/ais/"), "{body}");
    assert!(!body.contains(SECRET), "{body}");
    let last = target.requests().last().unwrap().target.clone();
    assert_eq!(last, format!("{prefix}ais%2F@%23%2Fsrc%2Fmissing%E9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpull_from_an_unreachable_target_is_502() {
    let closed = closed_port();
    let server = ServerBuilder::new("examples/echo")
        .env(
            "AIS_TARGET_URL",
            format!("http://{closed}/v1/etl/_object/e/{SECRET}"),
        )
        .start()
        .await;
    let response = client()
        .get(server.url("/ais%2F@%23%2Fsrc%2Fo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_transforms_the_original_url() {
    let target = FakeTarget::start().await;
    target.put_file("/files/a%20b", "downloaded bytes");
    let server = ServerBuilder::new("examples/upper").start().await;
    let original = format!("{}/files/a%20b?x=1", target.url());
    // §14: exactly what a target sends (keys sorted, Content-Length: 0).
    let request = format!(
        "POST /download?etl_args=k%3Dv&object_to=dir%2Fobj+1&original_url={} HTTP/1.1\r\n\
         Host: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        url::form_urlencoded::byte_serialize(original.as_bytes()).collect::<String>(),
        server.addr
    );
    let response = raw(server.addr, request.as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, b"DOWNLOADED BYTES");
    let seen = target.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/files/a%20b?x=1");

    // A failing source is the request's fault (§4.5).
    let response = client()
        .post(server.url(&format!(
            "/download?object_to=o&original_url={}",
            url::form_urlencoded::byte_serialize(format!("{}/files/none", target.url()).as_bytes())
                .collect::<String>()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_without_its_parameters_is_400() {
    let server = ServerBuilder::new("examples/echo").start().await;
    for query in [
        "",
        "?object_to=o",
        "?original_url=http%3A%2F%2Fx%2Fy",
        "?obj_to=o&orig_url=http%3A%2F%2Fx%2Fy",
        "?object_to=&original_url=http%3A%2F%2Fx%2Fy",
    ] {
        let response = client()
            .post(server.url(&format!("/download{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let client = client();
    for (method, path) in [
        ("DELETE", "/src/obj"),
        ("POST", "/src/obj"),
        ("PATCH", "/src/obj"),
        ("OPTIONS", "/src/obj"),
        ("POST", "/health"),
        ("DELETE", "/health"),
        ("POST", "/ws"),
        ("PUT", "/download"),
        ("DELETE", "/"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        if method == "PUT" {
            // PUT /download is an object named "download", like PUT /health (§4.1).
            assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        } else {
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            if path != "/ws" {
                let allow = response.headers().get("allow").cloned();
                assert_eq!(allow.unwrap(), "GET, PUT", "{method} {path}");
                let body = response.text().await.unwrap();
                assert!(body.contains("PUT (hpush) or GET (hpull)"), "{body}");
            }
        }
    }
    // PUT /health is an object called "health" (§4.1).
    let response = client
        .put(server.url("/health"))
        .body("not a probe")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "not a probe");
}

/// Names with spaces, unicode, `@`, `%`, `#`, `?`: their files are found through
/// double-encoded FQNs, in hpush and hpull alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_names_in_fqns() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let mountpath = Mountpath::new();
    let names = [
        "cat 1.jpg",
        "dir/ü/ñ.bin",
        "a@b",
        "100%.txt",
        "a%20b",
        "x#y",
        "q?r=s&t",
        "a+b;c,d=e$f:g",
        "two  spaces",
    ];
    for (i, name) in names.iter().enumerate() {
        let data = format!("content of {name} #{i}");
        let fqn = mountpath.store("src", name, data.as_bytes());
        let uname = path_escape(&format!("ais/@#/src/{name}"));
        for request in [
            format!("PUT /src/o{i}?{} HTTP/1.1", etl_fqn_param(&fqn)),
            format!("GET /{uname}?{} HTTP/1.1", etl_fqn_param(&fqn)),
        ] {
            let request = format!(
                "{request}\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                server.addr
            );
            let response = raw(server.addr, request.as_bytes()).await;
            assert_eq!(response.status, 200, "{name:?}: {request}");
            assert_eq!(response.body, data.as_bytes(), "{name:?}");
        }
    }
}

/// §5.2, §13 Q4: a target puts an object's name into the hpush URL unescaped. One
/// holding `?` arrives with the rest of its name ahead of the real query
/// (`/src/q?r?etl_fqn=...`): its file is still read, and the transform sees the whole
/// name. One holding `#` arrives cut there, without its query: nothing can recover it,
/// so it is transformed as empty, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpush_names_holding_what_a_target_leaves_unescaped() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .start()
        .await;
    let stage = ServerBuilder::new("host/tests/components/hostile")
        .start()
        .await;
    let mountpath = Mountpath::new();
    let send = async |target: String, headers: &str| {
        let request = format!(
            "PUT {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Go-http-client/1.1\r\n\
             {headers}Content-Length: 0\r\nConnection: close\r\n\r\n",
            server.addr
        );
        raw(server.addr, request.as_bytes()).await
    };
    let to_the_stage = format!("Ais-Node-Url: {}\r\n", stage.stage());
    for name in ["q?r", "a?b?c=d&e", "dir/ü?x/y"] {
        let data = format!("content of {name}");
        let fqn = etl_fqn_param(&mountpath.store("src", name, data.as_bytes()));
        // As Go writes the URL the target builds: the name raw, only its non-ASCII
        // escaped.
        let sent = name.replace('ü', "%C3%BC");
        // Without etl_args `etl_fqn` would be lost, with them (sorted first) they
        // would. The next stage is sent the same name.
        for (query, headers, expected) in [
            (fqn.clone(), "", data.clone()),
            (format!("etl_args=path&{fqn}"), "", format!("src/{name}")),
            (
                format!("etl_args=path&{fqn}"),
                &*to_the_stage,
                format!("src/{name}"),
            ),
        ] {
            let response = send(format!("/src/{sent}?{query}"), headers).await;
            assert_eq!(response.status, 200, "{name:?} {query}: {response:?}");
            assert_eq!(
                response.body,
                expected.as_bytes(),
                "{name:?} {query} {headers}"
            );
        }
    }

    // A client other than a target may leave a `?` unescaped in etl_args.
    let request = format!(
        "PUT /src/plain?etl_args=path:?x HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n",
        server.addr
    );
    let response = raw(server.addr, request.as_bytes()).await;
    assert_eq!(response.body, b"src/plain", "{response:?}");

    let metrics = stage.metrics().await;
    let objects = r#"ais_wasm_objects_total{transport="hpush",outcome="ok"} 3"#;
    assert!(metrics.contains(objects), "{metrics}");

    // An empty body from a stage (not Go's client) is an empty output, nothing odd.
    let request = format!(
        "PUT /src/empty HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.addr
    );
    assert_eq!(raw(server.addr, request.as_bytes()).await.status, 200);
    let response = send("/src/x".to_string(), "").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.is_empty());
    let log = server.wait_for_log("an empty body without etl_fqn").await;
    let warned: Vec<_> = log
        .lines()
        .filter(|l| l.contains("an empty body without etl_fqn"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(warned[0].contains("src/x"), "{log}");
    assert!(
        warned[0].contains("Do-not-Allow-Passing-FQN-to-ETL"),
        "{log}"
    );
}
