//! Direct put (§6): parsing `Ais-Node-Url`, composing the next hop's URL (§6.3),
//! mapping its answer (§6.4), local retries and the 503 contract (§7.3, §7.4).

use ais_wasm::runtime::STREAM_AT_OR_ABOVE;
use bytes::Bytes;

use super::fake_target::{FakeTarget, Get, Put, SECRET};
use super::harness::{
    Mountpath, RawResponse, Server, ServerBuilder, closed_port, etl_fqn_param, path_escape, raw,
    request,
};

/// The destination entry a target appends for an offline job (§6.1).
fn destination(target: &FakeTarget, uname: &str) -> String {
    format!(
        "{}/{}?owt=3&uuid=Zx9kQ2mLp",
        target.url(),
        path_escape(uname)
    )
}

/// hpush of `src/<object>` (with any query in `object`) to be put at `dst/<object>`
/// on `target`.
async fn put_to(server: &Server, target: &FakeTarget, object: &str, body: &[u8]) -> RawResponse {
    let name = object.split('?').next().unwrap();
    let entry = destination(target, &format!("ais/@#/dst/{name}"));
    let path = format!("/src/{object}");
    request(server.addr, "PUT", &path, &[("Ais-Node-Url", &entry)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ais_node_url_is_400() {
    let target = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "e")
        .start()
        .await;
    let good = target.url();
    for value in [
        format!(",{good}"),
        format!("{good},"),
        format!("{good},,{good}"),
        format!("{good},   ,{good}"),
        ",,".to_string(),
        "not a url".to_string(),
        "ftp://127.0.0.1:1/x".to_string(),
        "http://".to_string(),
        "http://fe80::1:8000".to_string(),
        // More than host:port (found by fuzz/fuzz_targets/put_url.rs).
        format!("{good}\\@evil.example:1"),
        format!("http://user@{}", target.addr),
    ] {
        let response = request(
            server.addr,
            "PUT",
            "/src/obj",
            &[("Ais-Node-Url", &value)],
            b"data",
        )
        .await;
        assert_eq!(response.status, 400, "{value:?}");
        let body = String::from_utf8_lossy(&response.body);
        assert!(
            body.contains("Invalid pipeline header"),
            "{value:?}: {body}"
        );
    }
    // Header names are case-insensitive (§5.1); blank means no pipeline (§6.1).
    let response = request(
        server.addr,
        "PUT",
        "/src/obj",
        &[("ais-node-url", ",")],
        b"x",
    )
    .await;
    assert_eq!(response.status, 400);
    let response = request(
        server.addr,
        "PUT",
        "/src/obj",
        &[("Ais-Node-Url", "  ")],
        b"x",
    )
    .await;
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"x"[..])
    );
    assert!(target.requests().is_empty());
}

/// §6.3 and the §14 example: `T.path + N.path` with `N.path` as received, `N`'s
/// query kept, `etl_args` appended; the target's empty 200 becomes our 204 with the
/// byte count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_hop_answering_200_empty_is_204_with_the_length() {
    let target = FakeTarget::start().await;
    for (component, data, sent) in [
        (
            "examples/echo",
            &b"thirty-nine bytes of transformed object"[..],
            &b"thirty-nine bytes of transformed object"[..],
        ),
        ("examples/upper", b"streamed", b"STREAMED"),
    ] {
        let server = ServerBuilder::new(component)
            .target(&target, "etl1")
            .start()
            .await;
        let before = target.puts().len();
        let response = request(
            server.addr,
            "PUT",
            "/src/dir/cat%201.jpg?etl_args=jpeg+q",
            &[(
                "Ais-Node-Url",
                &destination(&target, "ais/@#/dst/dir/cat 1.jpg"),
            )],
            data,
        )
        .await;
        assert_eq!(response.status, 204, "{component}: {response:?}");
        assert!(response.body.is_empty());
        let length = sent.len().to_string();
        assert_eq!(
            response.header("ais-direct-put-length"),
            Some(length.as_str()),
            "{component}"
        );
        let puts = target.puts();
        assert_eq!(puts.len(), before + 1, "{component}");
        let put = &puts[before];
        assert_eq!(
            put.target,
            format!(
                "/v1/etl/_object/etl1/{SECRET}/ais%2F@%23%2Fdst%2Fdir%2Fcat%201.jpg?owt=3&uuid=Zx9kQ2mLp&etl_args=jpeg+q"
            ),
            "{component}"
        );
        assert_eq!(put.body, sent, "{component}");
        assert_eq!(put.header("ais-node-url"), None, "{component}");
        match component {
            // Buffered output has a known length; streamed output is chunked (§6.3).
            "examples/echo" => assert_eq!(put.header("content-length"), Some("39")),
            _ => assert_eq!(put.header("transfer-encoding"), Some("chunked")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_bytes_delivered_is_204_without_a_length() {
    let target = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "e")
        .start()
        .await;
    let response = put_to(&server, &target, "empty", b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(response.header("ais-direct-put-length"), None);
    assert_eq!(target.puts().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_answering_200_with_a_body_is_returned() {
    let target = FakeTarget::start().await;
    target.always(Put::OkBody(Bytes::from_static(b"the final stage's output")));
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "e")
        .start()
        .await;
    let response = put_to(&server, &target, "o", b"input").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"the final stage's output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_answering_204_is_propagated() {
    let target = FakeTarget::start().await;
    target.script([Put::NoContent(Some(77)), Put::NoContent(None)]);
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "e")
        .start()
        .await;
    // A later stage delivered it: its count is passed on (§6.4), not ours.
    for expected in [Some("77"), None] {
        let response = request(
            server.addr,
            "PUT",
            "/src/o",
            &[("Ais-Node-Url", &target.url())],
            b"five!",
        )
        .await;
        assert_eq!(response.status, 204);
        assert!(response.body.is_empty());
        assert_eq!(response.header("ais-direct-put-length"), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_hop_answering_200_empty_is_an_empty_result() {
    // §6.4 (SHOULD) and §13 Q3: an empty 200 from a stage is an empty output, not
    // "stored"; only a target's empty 200 means delivered.
    let stage = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/echo").start().await;
    let response = request(
        server.addr,
        "PUT",
        "/src/o",
        &[("Ais-Node-Url", &stage.url())],
        b"x",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.is_empty());
}

/// A refused connection is transient, as in FastAPI (§7.4): a stage's pod may be
/// restarting. Retried locally when the source can be read again or the result is
/// held; a one-shot streamed body gets the 503 contract (§7.3). When retries run
/// out: 502, without the retry header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_refusing_connections_is_retried_then_502() {
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "o", b"data");
    let nowhere = closed_port();
    for component in ["examples/echo", "examples/upper"] {
        let server = ServerBuilder::new(component)
            .env(
                "AIS_TARGET_URL",
                format!("http://{nowhere}/v1/etl/_object/e/{SECRET}"),
            )
            .env("AIS_DIRECT_PUT_RETRIES", "1")
            .env("ETL_WASM_DIRECT_PUT_BACKOFF", "10ms")
            .start()
            .await;
        for (target, entry) in [
            (
                format!("/src/o?{}", etl_fqn_param(&fqn)),
                format!("http://{nowhere}/ais%2F@%23%2Fdst%2Fo"),
            ),
            ("/src/o".to_string(), format!("http://{nowhere}")),
        ] {
            let case = format!("{component} {target}");
            let response = request(
                server.addr,
                "PUT",
                &target,
                &[("Ais-Node-Url", &entry)],
                b"data",
            )
            .await;
            let body = String::from_utf8_lossy(&response.body);
            assert!(
                body.contains("the next hop refused the connection"),
                "{case}: {body}"
            );
            let one_shot = component == "examples/upper" && target == "/src/o";
            if one_shot {
                assert_eq!(response.status, 503, "{case}: {response:?}");
                assert_eq!(
                    response.header("ais-etl-retry-reason"),
                    Some("direct-put-transient"),
                    "{case}"
                );
            } else {
                assert_eq!(response.status, 502, "{case}: {response:?}");
                assert!(body.contains("after 2 attempts"), "{case}: {body}");
                assert_eq!(response.header("ais-etl-retry-reason"), None, "{case}");
            }
        }
    }
    // Retries end with the object's time too: of 4 attempts, 0.4, 0.8 and 1.6 s apart,
    // only 2 fit in 1 s.
    let server = ServerBuilder::new("examples/echo")
        .env("ETL_WASM_TIMEOUT", "1s")
        .env("ETL_WASM_DIRECT_PUT_BACKOFF", "400ms")
        .start()
        .await;
    let entry = format!("http://{nowhere}");
    let response = request(
        server.addr,
        "PUT",
        "/src/o",
        &[("Ais-Node-Url", &entry)],
        b"x",
    )
    .await;
    assert_eq!(response.status, 502, "{response:?}");
    let body = String::from_utf8_lossy(&response.body);
    assert!(body.contains("after 2 attempts"), "{body}");
}

/// A next stage that comes up while its first put is refused gets the object: by a
/// local retry when the result is held (echo) or its source re-read (an FQN), and by
/// the target's replay of the 503 for a one-shot streamed body (upper).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_coming_up_after_a_refusal_gets_the_object() {
    let mountpath = Mountpath::new();
    let data = b"restarted stage".repeat(1000);
    let fqn = mountpath.store("src", "o", &data);
    for (component, fqn) in [
        ("examples/echo", None),
        ("examples/upper", Some(&fqn)),
        ("examples/upper", None),
    ] {
        let case = format!("{component}, fqn {}", fqn.is_some());
        let down = FakeTarget::down();
        // The stage answers 204 with the length (§6.4), as a later stage does.
        let server = ServerBuilder::new(component)
            .env("AIS_DIRECT_PUT_RETRIES", "3")
            .env("ETL_WASM_DIRECT_PUT_BACKOFF", "2s")
            .start()
            .await;
        let entry = format!("http://{}", down.addr);
        let path = match fqn {
            Some(fqn) => format!("/src/o?{}", etl_fqn_param(fqn)),
            None => "/src/o".to_string(),
        };
        let headers = [("Ais-Node-Url", entry.as_str())];
        let delivered = Put::NoContent(Some(data.len() as u64));
        let (response, stage) = if component == "examples/upper" && fqn.is_none() {
            // The target replays a 503 with the retry header (§7.3).
            let response = request(server.addr, "PUT", &path, &headers, &data).await;
            assert_eq!(response.status, 503, "{case}: {response:?}");
            let stage = down.come_up(delivered);
            let replayed = request(server.addr, "PUT", &path, &headers, &data).await;
            (replayed, stage)
        } else {
            let answer = tokio::spawn({
                let (addr, path, entry, data) =
                    (server.addr, path.clone(), entry.clone(), data.clone());
                async move { request(addr, "PUT", &path, &[("Ais-Node-Url", &entry)], &data).await }
            });
            server.wait_for_log("retrying the direct put").await;
            let stage = down.come_up(delivered);
            (answer.await.unwrap(), stage)
        };
        assert_eq!(response.status, 204, "{case}: {response:?}");
        let length = data.len().to_string();
        assert_eq!(
            response.header("ais-direct-put-length"),
            Some(length.as_str())
        );
        let expected = match component {
            "examples/upper" => data.to_ascii_uppercase(),
            _ => data.clone(),
        };
        let puts = stage.puts();
        assert_eq!(puts.len(), 1, "{case}");
        assert!(
            puts[0].body == expected,
            "{case}: the stage got other bytes"
        );
    }
}

/// A replayable source (an FQN, re-read per attempt) is retried locally after a
/// reset; the delivered object is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_with_an_fqn_is_retried() {
    let target = FakeTarget::start().await;
    let mountpath = Mountpath::new();
    let data: Vec<u8> = (0..3 << 20).map(|i| b"abcdefgh"[i % 8]).collect();
    let fqn = mountpath.store("src", "big", &data);
    for component in ["examples/upper", "examples/echo"] {
        let server = ServerBuilder::new(component)
            .target(&target, "e")
            .env("AIS_DIRECT_PUT_RETRIES", "3")
            .start()
            .await;
        let before = target.puts().len();
        target.script([Put::Reset, Put::Reset]);
        let response = put_to(
            &server,
            &target,
            &format!("big?{}", etl_fqn_param(&fqn)),
            b"",
        )
        .await;
        assert_eq!(response.status, 204, "{component}: {response:?}");
        let length = data.len().to_string();
        assert_eq!(
            response.header("ais-direct-put-length"),
            Some(length.as_str())
        );
        let puts = &target.puts()[before..];
        assert_eq!(puts.len(), 3, "{component}: two resets, then success");
        let expected = match component {
            "examples/upper" => data.to_ascii_uppercase(),
            _ => data.clone(),
        };
        assert!(
            puts[2].body == expected,
            "{component}: the delivered object"
        );
    }
}

/// A buffered transform holds its result in memory, so even a one-shot request body
/// is retried locally (§7.3: only streaming handlers use the 503 contract).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_with_a_buffered_result_is_retried_locally() {
    let target = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "e")
        .env("AIS_DIRECT_PUT_RETRIES", "1")
        .start()
        .await;
    // Below the size from which echo (both shapes) streams.
    let data = vec![b'b'; STREAM_AT_OR_ABOVE as usize / 2];
    let entry = destination(&target, "ais/@#/dst/o");
    target.script([Put::Reset]);
    let response = request(
        server.addr,
        "PUT",
        "/src/o",
        &[("Ais-Node-Url", &entry)],
        &data,
    )
    .await;
    assert_eq!(response.status, 204, "{response:?}");
    let puts = target.puts();
    assert_eq!(puts.len(), 2);
    assert!(puts[1].body == data);

    target.always(Put::Reset);
    let response = request(
        server.addr,
        "PUT",
        "/src/o",
        &[("Ais-Node-Url", &entry)],
        &data,
    )
    .await;
    assert_eq!(response.status, 502, "{response:?}");
    assert_eq!(response.header("ais-etl-retry-reason"), None);
    assert_eq!(target.puts().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_after_all_retries_is_502() {
    let target = FakeTarget::start().await;
    target.always(Put::Reset);
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "o", &vec![b'z'; 2 << 20]);
    let server = ServerBuilder::new("examples/upper")
        .target(&target, "e")
        .env("AIS_DIRECT_PUT_RETRIES", "2")
        .start()
        .await;
    let response = put_to(&server, &target, &format!("o?{}", etl_fqn_param(&fqn)), b"").await;
    assert_eq!(response.status, 502, "{response:?}");
    assert_eq!(response.header("ais-etl-retry-reason"), None);
    assert_eq!(target.puts().len(), 3, "one attempt and two retries");
}

/// §7.3: a streaming transform of a one-shot request body cannot be retried
/// locally: 503 + `Ais-Etl-Retry-Reason: direct-put-transient`, after one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_with_a_one_shot_streaming_body_is_503() {
    let target = FakeTarget::start().await;
    target.always(Put::Reset);
    let server = ServerBuilder::new("examples/upper")
        .target(&target, "e")
        .env("AIS_DIRECT_PUT_RETRIES", "3")
        .start()
        .await;
    for size in [100, 4 << 20] {
        let before = target.puts().len();
        let response = put_to(&server, &target, "o", &vec![b'q'; size]).await;
        assert_eq!(response.status, 503, "{size}: {response:?}");
        assert_eq!(
            response.header("ais-etl-retry-reason"),
            Some("direct-put-transient"),
            "{size}"
        );
        assert_eq!(target.puts().len(), before + 1, "{size}: no local retry");
    }
    // The same through a chunked body (a streaming upstream stage). Sent raw: the
    // answer comes before the body is read to its end, and then the connection
    // closes; an HTTP client that stops at its failed write never sees it.
    let mut chunked = format!(
        "PUT /src/o HTTP/1.1\r\nHost: {}\r\nAis-Node-Url: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr,
        destination(&target, "ais/@#/dst/o")
    )
    .into_bytes();
    for _ in 0..8 {
        chunked.extend_from_slice(format!("{:x}\r\n", 512 << 10).as_bytes());
        chunked.extend_from_slice(&vec![b'c'; 512 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = raw(server.addr, &chunked).await;
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.header("ais-etl-retry-reason"),
        Some("direct-put-transient")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_error_status_and_body_are_forwarded() {
    let target = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "e")
        .start()
        .await;
    for (status, body) in [
        (507, "out of space"),
        (500, "internal error downstream"),
        (503, "busy"),
        (404, "no such bucket"),
    ] {
        target.script([Put::Status(status, Bytes::from(body))]);
        let response = put_to(&server, &target, "o", b"payload").await;
        assert_eq!(response.status, status);
        assert_eq!(String::from_utf8_lossy(&response.body), body);
        assert_eq!(response.header("ais-etl-retry-reason"), None);
    }
    assert_eq!(target.puts().len(), 4, "error statuses are never retried");
}

/// A redirect from a next hop or from the target's GET is not followed: followed,
/// a 301-303 turns the PUT into a GET (and the object counts as delivered
/// unwritten); passed on, any status below 400 is a success to the target. 502, and
/// so for a next hop's success other than 200 and 204, which says nothing of where
/// the object went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_nor_other_successes_passed_on() {
    let target = FakeTarget::start().await;
    let elsewhere = FakeTarget::start().await;
    elsewhere.put_object("ais/@#/src/o", "served elsewhere");
    // Streamed (upper) and held (echo) results: reqwest replays only a held body.
    for component in ["examples/echo", "examples/upper"] {
        let server = ServerBuilder::new(component)
            .target(&target, "e")
            .start()
            .await;
        let moved = |status| Put::Redirect(status, destination(&elsewhere, "ais/@#/dst/o"));
        let created = |status| Put::Status(status, Bytes::from_static(b"created"));
        for (status, answer) in [301, 302, 303, 307, 308]
            .map(|status| (status, moved(status)))
            .into_iter()
            .chain([201, 202, 206].map(|status| (status, created(status))))
        {
            let case = format!("{component}, {status}");
            target.script([answer]);
            let response = put_to(&server, &target, "o", b"payload").await;
            assert_eq!(response.status, 502, "{case}: {response:?}");
            let body = String::from_utf8_lossy(&response.body);
            assert!(
                body.contains(&format!("answered {status}, which says neither")),
                "{case}: {body}"
            );
        }
        for status in [302, 307] {
            let case = format!("{component}, target GET {status}");
            let location = format!("{}/ais%2F@%23%2Fsrc%2Fo", elsewhere.etl_url("e"));
            target.fail_object("ais/@#/src/moved", Get::Redirect(status, location));
            let response = request(server.addr, "GET", "/ais%2F@%23%2Fsrc%2Fmoved", &[], b"").await;
            assert_eq!(response.status, 502, "{case}: {response:?}");
            let body = String::from_utf8_lossy(&response.body);
            assert!(
                body.contains(&format!("the target answered {status}")),
                "{case}: {body}"
            );
        }
    }
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

/// Case 1 (§6.3): a stage hop gets the current object's path escaped exactly as it
/// arrived (so it decodes to the same name), `etl_args`, and the rest of the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_hop_gets_the_path_as_received_and_the_rest_of_the_list() {
    let stage = FakeTarget::start().await;
    stage.always(Put::NoContent(Some(5)));
    let mountpath = Mountpath::new();
    let fqn = mountpath.store("src", "a%b?c#d", b"from an fqn");
    let server = ServerBuilder::new("examples/echo").start().await;
    let rest = "http://10.0.0.9:51082/ais%2F@%23%2Fdst%2Fo?owt=3&uuid=J";
    let header = format!("  {} , {rest} ", stage.url());
    // Request paths as a target serializes them (§5.2) and an hpull uname (§4.3).
    let paths = [
        ("PUT", "/src/imgs/cat%201.jpg".to_string(), String::new()),
        ("PUT", "/src/a(1).jpg".to_string(), String::new()),
        ("PUT", "/src/a%20b%281%29.jpg".to_string(), String::new()),
        (
            "PUT",
            "/src/dir/%C3%BC/%C3%B1.bin".to_string(),
            String::new(),
        ),
        ("PUT", "/src/a@b".to_string(), String::new()),
        ("PUT", "/src/a;b,c=d&e$f:g".to_string(), String::new()),
        ("PUT", "/src/x'y!z*".to_string(), String::new()),
        ("PUT", "/src/a%2520b".to_string(), String::new()),
        ("PUT", "/src/a//b/./c/../d/".to_string(), String::new()),
        (
            "GET",
            format!("/{}", path_escape("ais/@#/src/a%b?c#d")),
            format!("?{}", etl_fqn_param(&fqn)),
        ),
    ];
    for (method, path, query) in &paths {
        let before = stage.puts().len();
        let target = format!(
            "{path}{query}{}etl_args=x+y",
            if query.is_empty() { "?" } else { "&" }
        );
        let body: &[u8] = if *method == "PUT" { b"hello" } else { b"" };
        let response = request(
            server.addr,
            method,
            &target,
            &[("Ais-Node-Url", &header)],
            body,
        )
        .await;
        assert_eq!(response.status, 204, "{method} {target}: {response:?}");
        assert_eq!(response.header("ais-direct-put-length"), Some("5"));
        let put = &stage.puts()[before];
        let (sent_path, sent_query) = put.target.split_once('?').unwrap();
        assert_eq!(sent_query, "etl_args=x+y", "{method} {target}");
        if path.contains("/./") {
            // Dot segments cannot travel as such through a URL parser; the path
            // must still decode to the same name (§4.6).
            let decode = |p: &str| percent_encoding::percent_decode_str(p).collect::<Vec<u8>>();
            assert_eq!(decode(sent_path), decode(path), "{sent_path}");
        } else {
            assert_eq!(sent_path, path, "{method} {target}");
        }
        assert_eq!(put.header("ais-node-url"), Some(rest));
    }
}
