//! Chains of ais-wasm servers (§6.5): each stage forwards its output to the next
//! with a PUT, the last one to the destination target or back up the chain.

use md5::Digest;

use super::fake_target::{FakeTarget, Put, SECRET};
use super::harness::{Mountpath, RawResponse, ServerBuilder, etl_fqn_param, path_escape, request};

/// upper → md5 → upper: distinguishable from any shorter or reordered chain.
fn expected(data: &[u8]) -> Vec<u8> {
    hex::encode(md5::Md5::digest(data.to_ascii_uppercase()))
        .to_ascii_uppercase()
        .into_bytes()
}

/// §6.5: offline, A → B → C, destination on another target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stages_deliver_to_the_destination_target() {
    let target = FakeTarget::start().await;
    let a = ServerBuilder::new("examples/upper")
        .target(&target, "A")
        .start()
        .await;
    let b = ServerBuilder::new("examples/md5")
        .target(&target, "B")
        .start()
        .await;
    let c = ServerBuilder::new("examples/upper")
        .target(&target, "C")
        .start()
        .await;
    let mountpath = Mountpath::new();
    let data = b"The quick brown fox jumps over the lazy dog".repeat(1000);
    let fqn = mountpath.store("src", "dir/x y", &data);
    let dest = format!(
        "{}/{}?owt=3&uuid=J0b",
        target.url(),
        path_escape("ais/@#/dst/dir/x y")
    );
    let response = request(
        a.addr,
        "PUT",
        &format!("/src/dir/x%20y?{}", etl_fqn_param(&fqn)),
        &[(
            "Ais-Node-Url",
            &format!("{},{},{dest}", b.stage(), c.stage()),
        )],
        b"",
    )
    .await;
    assert_eq!(response.status, 204, "{response:?}\n{}", a.stderr());
    assert!(response.body.is_empty());
    let result = expected(&data);
    assert_eq!(
        response.header("ais-direct-put-length"),
        Some(result.len().to_string().as_str())
    );
    // Only the destination is a fake: the stages talked to each other directly.
    let seen = target.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(
        seen[0].target,
        format!("/v1/etl/_object/C/{SECRET}/ais%2F@%23%2Fdst%2Fdir%2Fx%20y?owt=3&uuid=J0b")
    );
    assert_eq!(seen[0].body, result);
    assert_eq!(seen[0].header("ais-node-url"), None);
}

/// §7.3, §13 Q20: the last stage's direct put to the destination is reset, and its
/// body, the stage before's output, is one-shot to it: it answers 503 with
/// `Ais-Etl-Retry-Reason`. The stage before sends a result it holds again; one that
/// streamed a one-shot body of its own passes the 503 on, for the target to replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_past_the_next_stage_is_retried_where_it_can_be() {
    let target = FakeTarget::start().await;
    let last = ServerBuilder::new("examples/upper")
        .target(&target, "B")
        .start()
        .await;
    let dest = format!("{}/{}", target.url(), path_escape("ais/@#/dst/o"));
    let pipeline = format!("{},{dest}", last.stage());
    let data = b"a small object, held whole by echo".to_vec();
    for (first, status) in [("examples/echo", 204), ("examples/upper", 503)] {
        let first = ServerBuilder::new(first)
            .target(&target, "A")
            .env("AIS_DIRECT_PUT_RETRIES", "1")
            .start()
            .await;
        let before = target.puts().len();
        target.script([Put::Reset]);
        let headers = [("Ais-Node-Url", pipeline.as_str())];
        let response = request(first.addr, "PUT", "/src/o", &headers, &data).await;
        assert_eq!(response.status, status, "{response:?}\n{}", first.stderr());
        let puts = &target.puts()[before..];
        if status == 204 {
            assert_eq!(puts.len(), 2, "{puts:?}");
            assert_eq!(puts[1].body, data.to_ascii_uppercase());
            assert_eq!(response.header("ais-etl-retry-reason"), None);
        } else {
            assert_eq!(puts.len(), 1, "{puts:?}");
            let reason = response.header("ais-etl-retry-reason");
            assert_eq!(reason, Some("direct-put-transient"), "{response:?}");
        }
    }
}

/// `data` put to a server of component `a` for a pipeline on to one of `b`, inline.
async fn inline(a: &str, b: &str, data: &[u8]) -> RawResponse {
    let a = ServerBuilder::new(a).start().await;
    let b = ServerBuilder::new(b).start().await;
    let stage = b.stage();
    request(a.addr, "PUT", "/src/x", &[("Ais-Node-Url", &stage)], data).await
}

/// §6.5: inline, A → B; B's output comes back through A as a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stages_inline_return_the_last_output() {
    let data = b"inline pipeline input".repeat(100);
    let response = inline("examples/upper", "examples/md5", &data).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.body,
        hex::encode(md5::Md5::digest(data.to_ascii_uppercase())).into_bytes()
    );
}

/// A streaming stage passing its output to a streaming stage, inline, with an object
/// larger than the sockets and queues between them hold: B answers while it still
/// reads A's upload, and stops reading when its answer is not read, so A passes the
/// answer on before its own transform ends (waiting for that first, both stalled
/// until the deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streaming_stages_inline_pass_a_large_object_as_it_comes() {
    let data: Vec<u8> = (0..32 << 20).map(|i| b"abcdefgh\n"[i % 9]).collect();
    let response = inline("examples/upper", "examples/upper", &data).await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body[..200.min(response.body.len())])
    );
    assert!(
        response.body == data.to_ascii_uppercase(),
        "{} bytes",
        response.body.len()
    );
}

/// §4.4 and §6.5 over WebSocket: the next stage's body, streamed back in many
/// chunks, is the BINARY reply, whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stages_inline_over_websocket_reply_with_the_last_output() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    use super::ws;

    let a = ServerBuilder::new("examples/echo").start().await;
    let b = ServerBuilder::new("examples/upper").start().await;
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| b"abcdefgh\n"[i as usize % 9])
        .collect();
    let mut socket = ws::connect(&a).await;
    socket
        .send(ws::control(&b.stage(), "", "", "src/x"))
        .await
        .unwrap();
    socket
        .send(Message::Binary(data.clone().into()))
        .await
        .unwrap();
    let reply = ws::binary(ws::next_reply(&mut socket).await);
    assert!(reply == data.to_ascii_uppercase(), "{} bytes", reply.len());
}
