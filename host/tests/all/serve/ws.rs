//! `/ws` (§4.4): a binary JSON control message, then a binary data message unless
//! the control names an FQN; exactly one reply per request, in order.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};

use super::fake_target::{FakeTarget, Put, SECRET};
use super::harness::{Mountpath, Server, ServerBuilder, path_escape, raw};

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(super) async fn connect(server: &Server) -> Socket {
    let (socket, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

/// The control message, compact and with empty keys omitted, as the target sends it.
pub(super) fn control(pipeline: &str, etl_args: &str, fqn: &str, path: &str) -> Message {
    let mut map = serde_json::Map::new();
    for (key, value) in [
        ("pipeline", pipeline),
        ("etl_args", etl_args),
        ("fqn", fqn),
        ("path", path),
    ] {
        if !value.is_empty() {
            map.insert(key.into(), value.into());
        }
    }
    Message::Binary(serde_json::to_vec(&map).unwrap().into())
}

/// `count` copies of `frame` as one message, as gorilla writes an object: the first
/// BINARY, the rest continuations, the last one ending the message if `finished`.
pub(super) async fn send_fragmented(
    socket: &mut Socket,
    frame: &Bytes,
    count: usize,
    finished: bool,
) {
    for i in 0..count {
        let opcode = match i {
            0 => Data::Binary,
            _ => Data::Continue,
        };
        let fin = finished && i + 1 == count;
        let frame = Frame::message(frame.clone(), OpCode::Data(opcode), fin);
        socket.feed(Message::Frame(frame)).await.unwrap();
    }
    socket.flush().await.unwrap();
}

/// One request: its control message, then its data message.
pub(super) async fn send_object(socket: &mut Socket, control: Message, data: &'static [u8]) {
    socket.send(control).await.unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(data)))
        .await
        .unwrap();
}

/// The next data message from `socket` (or its reading half), within a minute.
pub(super) async fn next_reply(
    socket: &mut (impl futures::Stream<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin),
) -> Message {
    let message = tokio::time::timeout(std::time::Duration::from_secs(60), socket.next())
        .await
        .expect("a reply in time")
        .expect("the connection is open")
        .unwrap();
    assert!(
        matches!(message, Message::Binary(_) | Message::Text(_)),
        "{message:?}"
    );
    message
}

pub(super) fn binary(message: Message) -> Bytes {
    match message {
        Message::Binary(bytes) => bytes,
        other => panic!("expected a BINARY reply, got {other:?}"),
    }
}

pub(super) fn text(message: Message) -> String {
    match message {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a TEXT reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_mode_control_then_data() {
    let server = ServerBuilder::new("examples/upper").start().await;
    let mut socket = connect(&server).await;
    send_object(
        &mut socket,
        control("", "", "", "imgs/cat 1.jpg"),
        b"over websocket",
    )
    .await;
    assert_eq!(binary(next_reply(&mut socket).await), "OVER WEBSOCKET");
    // A zero-byte object still has its data message.
    socket.send(control("", "", "", "empty")).await.unwrap();
    socket.send(Message::Binary(Bytes::new())).await.unwrap();
    assert_eq!(binary(next_reply(&mut socket).await), "");
    // gorilla fragments a message into ~4 KiB frames; it is reassembled.
    socket.send(control("", "", "", "frag")).await.unwrap();
    send_fragmented(&mut socket, &Bytes::from(vec![b'f'; 4096]), 4, true).await;
    assert_eq!(binary(next_reply(&mut socket).await), vec![b'F'; 4 * 4096]);
}

/// The server guesses a request's length from the last ones, and has the kernel wake
/// it only once that many bytes arrived; a shorter request, or a pause, must not
/// leave it waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_shorter_than_the_last_ones_and_one_after_a_pause_are_answered() {
    let server = ServerBuilder::new("examples/upper").start().await;
    let mut socket = connect(&server).await;
    let frame = Bytes::from(vec![b'w'; 4096]);
    // One at a time, as a target at concurrency 1: nothing else arrives to wake the
    // server while it waits for the rest of a request.
    let steady = [(16, false); 5];
    for (frames, paused) in steady
        .into_iter()
        .chain([(16, true), (5, false), (1, false)])
    {
        if paused {
            // Idle far longer than the server waits for a guessed length.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        socket.send(control("", "", "", "obj")).await.unwrap();
        send_fragmented(&mut socket, &frame, frames, true).await;
        let reply = binary(next_reply(&mut socket).await);
        assert!(reply.len() == frames * 4096 && reply.iter().all(|&b| b == b'W'));
    }
}

/// A client may send its first frames in the same write as the upgrade request, before
/// the 101 arrives: hyper reads them with the request, and they must not be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_with_the_upgrade_request_are_read() {
    let server = ServerBuilder::new("examples/upper").start().await;
    let mut request = UPGRADE.to_vec();
    request.extend(frame(0x2, br#"{"path":"early"}"#));
    request.extend(frame(0x2, b"sent early"));
    request.extend(frame(0x8, &1000u16.to_be_bytes()));
    // The reply, then the close's answer, then the end of the connection.
    let response = raw(server.addr, &request).await;
    assert_eq!(response.status, 101, "{response:?}");
    let mut expected = vec![0x82, 10];
    expected.extend_from_slice(b"SENT EARLY");
    expected.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
    assert_eq!(response.body, expected);
}

/// A peer that breaks the protocol gets the replies it is owed, then a close that
/// says how it broke it (RFC 6455 §7.1.7, §7.4.1), and the connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_breaking_the_protocol_gets_its_replies_then_a_close_saying_why() {
    let server = ServerBuilder::new("examples/upper").start().await;
    let unmasked = [0x82, 1, b'x'].to_vec();
    for (violation, code) in [
        (unmasked, 1002u16),
        (frame(0x0, b"continues nothing"), 1002),
        (frame(0x1, b"\xff"), 1007),
    ] {
        let mut request = UPGRADE.to_vec();
        request.extend(frame(0x2, br#"{"path":"owed"}"#));
        request.extend(frame(0x2, b"owed"));
        request.extend(violation);
        let response = raw(server.addr, &request).await;
        assert_eq!(response.status, 101, "{response:?}");
        let mut expected = [0x82, 4].to_vec();
        expected.extend_from_slice(b"OWED");
        expected.extend_from_slice(&[0x88, 2]);
        expected.extend_from_slice(&code.to_be_bytes());
        assert_eq!(response.body, expected, "close {code}");
    }
}

/// An upgrade request, for a client that writes its frames itself.
const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A client's frame, whole: masked with a zero key, which leaves the payload as it is.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fqn_control_has_no_data_message() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let mountpath = Mountpath::new();
    let name = "dir/a b@c%d#e?fü";
    let fqn = mountpath.store("src", name, b"file over websocket");
    // `fqn` is PathEscape'd once (§4.4, §5.3).
    let escaped = path_escape(fqn.to_str().unwrap());
    assert!(escaped.contains("%2F%25ob%2F"), "{escaped}");
    let mut socket = connect(&server).await;
    socket.send(control("", "", &escaped, name)).await.unwrap();
    // The next request follows directly: the FQN request took no data message.
    send_object(&mut socket, control("", "", "", "next"), b"body").await;
    assert_eq!(binary(next_reply(&mut socket).await), "file over websocket");
    assert_eq!(binary(next_reply(&mut socket).await), "body");
}

/// 500 requests sent back to back on one connection, answered in order (the target
/// matches replies by position only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_pipelined_messages_are_answered_in_order() {
    let server = ServerBuilder::new("examples/upper").start().await;
    let payload = |i: usize| -> Vec<u8> {
        // Distinct, and of varying sizes so they finish out of order.
        let mut p = format!("request {i}: ").into_bytes();
        p.extend(std::iter::repeat_n(
            b'a' + (i % 26) as u8,
            (i * 7919) % 70_000,
        ));
        p
    };
    pipelined(connect(&server).await, 500, payload).await;
}

/// `count` requests pipelined on `socket` (upper), each reply checked in order.
async fn pipelined(
    socket: Socket,
    count: usize,
    payload: impl Fn(usize) -> Vec<u8> + Copy + Send + 'static,
) -> Socket {
    let (mut sink, mut stream) = socket.split();
    let sender = tokio::spawn(async move {
        for i in 0..count {
            sink.send(control("", "", "", &format!("obj/{i}")))
                .await
                .unwrap();
            sink.send(Message::Binary(payload(i).into())).await.unwrap();
        }
        sink
    });
    for i in 0..count {
        let reply = binary(next_reply(&mut stream).await);
        assert!(
            reply == payload(i).to_ascii_uppercase(),
            "reply {i} is not request {i}'s: {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(20)])
        );
    }
    sender.await.unwrap().reunite(stream).unwrap()
}

/// 100 requests of 64 KiB, distinct in each round.
async fn pipelined_round(socket: Socket, round: usize) -> Socket {
    let payload = move |i: usize| {
        format!("round {round} request {i} ")
            .repeat(3000)
            .into_bytes()
    };
    pipelined(socket, 100, payload).await
}

/// Two sessions start on one serving thread; kept saturated with pipelined requests,
/// one moves to the other thread mid-stream (requests already read past the move
/// go with it), and every reply still comes in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moved_off_a_saturated_thread_answers_in_order() {
    let server = ServerBuilder::new("examples/upper").start().await;
    let mut sessions = vec![connect(&server).await, connect(&server).await];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let moved = |metrics: &str| {
        let moves = metrics
            .lines()
            .find_map(|line| line.strip_prefix("ais_wasm_ws_sessions_moved_total "))
            .expect("the metric of sessions moved");
        moves != "0"
    };
    assert!(!moved(&server.metrics().await), "moved before any request");
    let mut round = 0;
    loop {
        let rounds = sessions.into_iter().map(|s| pipelined_round(s, round));
        sessions = futures::future::join_all(rounds).await;
        round += 1;
        if moved(&server.metrics().await) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session moved in {round} rounds"
        );
    }
    // After the move, both sessions still answer in order.
    let rounds = sessions.into_iter().map(|s| pipelined_round(s, round));
    futures::future::join_all(rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_put_is_answered_with_a_text_byte_count() {
    let target = FakeTarget::start().await;
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "w")
        .start()
        .await;
    let mut socket = connect(&server).await;
    let dest = format!(
        "{}/{}?owt=3&uuid=Zx9kQ2mLp",
        target.url(),
        path_escape("ais/@#/dst/imgs/cat 1.jpg")
    );
    send_object(
        &mut socket,
        control(&dest, " a b ", "", "imgs/cat 1.jpg"),
        b"23 bytes of the object.",
    )
    .await;
    assert_eq!(text(next_reply(&mut socket).await), "23");
    let puts = target.puts();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].target,
        format!(
            "/v1/etl/_object/w/{SECRET}/ais%2F@%23%2Fdst%2Fimgs%2Fcat%201.jpg?owt=3&uuid=Zx9kQ2mLp&etl_args=a+b"
        )
    );
    assert_eq!(puts[0].body, "23 bytes of the object.");

    // A stage hop gets the object name escaped as a path (§6.3, case 1).
    let stage = FakeTarget::start().await;
    stage.always(Put::NoContent(Some(4)));
    send_object(
        &mut socket,
        control(&stage.url(), "", "", "dir/a b#c?d%e@ü"),
        b"data",
    )
    .await;
    assert_eq!(text(next_reply(&mut socket).await), "4");
    let put = &stage.puts()[0];
    assert_eq!(put.target, "/dir/a%20b%23c%3Fd%25e@%C3%BC");
    let decoded = percent_encoding::percent_decode_str(&put.target[1..]).decode_utf8_lossy();
    assert_eq!(decoded, "dir/a b#c?d%e@ü");

    // The last stage of a pipeline to a local destination answers 200 with its
    // output, passed back as BINARY for the target to store; an empty output too,
    // which a TEXT reply would have the target count as delivered and not write
    // (§6.4, §13 Q2, Q3).
    for output in [&b"stage output"[..], b""] {
        stage.always(Put::OkBody(Bytes::from_static(output)));
        send_object(&mut socket, control(&stage.url(), "", "", "o"), b"data").await;
        assert_eq!(binary(next_reply(&mut socket).await), output);
    }
}

/// A data message too long to hold streams through the transform into the direct
/// put, and cannot be read again: a transient failure of that put is its TEXT
/// diagnostic after one attempt, where a held message's put is retried. One of 1 MiB
/// is held, though its transform streams, because a direct put follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_message_is_put_once_and_a_held_one_retried() {
    let target = FakeTarget::start().await;
    target.always(Put::Reset);
    let server = ServerBuilder::new("examples/upper")
        .target(&target, "w")
        .env("AIS_DIRECT_PUT_RETRIES", "2")
        .start()
        .await;
    let dest = format!("{}/{}", target.url(), path_escape("ais/@#/dst/o"));
    let mut socket = connect(&server).await;
    // 20 MiB in 4 KiB frames, more than is held, then a small object.
    socket.send(control(&dest, "", "", "big")).await.unwrap();
    send_fragmented(&mut socket, &Bytes::from(vec![b'q'; 4096]), 5120, true).await;
    send_object(&mut socket, control(&dest, "", "", "small"), b"small").await;
    socket.send(control(&dest, "", "", "mid")).await.unwrap();
    send_fragmented(&mut socket, &Bytes::from(vec![b'q'; 4096]), 256, true).await;
    let streamed = text(next_reply(&mut socket).await);
    assert!(streamed.contains("cannot be replayed"), "{streamed}");
    for _ in ["small", "mid"] {
        let held = text(next_reply(&mut socket).await);
        assert!(held.contains("after 3 attempts"), "{held}");
    }
    assert_eq!(target.puts().len(), 7, "one attempt, then three twice");
}

/// A message past 256 KiB goes to a transform that streams it anyway as it arrives,
/// before its last frame: here the transform fails without reading, and its TEXT
/// reply comes while the message is unfinished. The rest is skipped, and the next
/// request is answered in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_streams_to_its_transform_before_its_last_frame() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .start()
        .await;
    let mut socket = connect(&server).await;
    socket
        .send(control("", "fail-midway", "", "long"))
        .await
        .unwrap();
    // 384 KiB of a message whose last frame is not sent yet.
    send_fragmented(&mut socket, &Bytes::from(vec![1; 4096]), 96, false).await;
    let failed = text(next_reply(&mut socket).await);
    assert!(failed.contains("failed after writing 64 KiB"), "{failed}");
    let last = Frame::message(
        Bytes::from_static(b"end"),
        OpCode::Data(Data::Continue),
        true,
    );
    socket.send(Message::Frame(last)).await.unwrap();
    send_object(&mut socket, control("", "", "", "next"), b"small").await;
    assert_eq!(binary(next_reply(&mut socket).await), "small");
}

/// Object `name` as `frames` frames of 4 KiB of `byte`, as a target sends it; its reply.
async fn reply_to_frames(socket: &mut Socket, name: &str, byte: u8, frames: usize) -> Message {
    socket.send(control("", "", "", name)).await.unwrap();
    send_fragmented(socket, &Bytes::from(vec![byte; 4096]), frames, true).await;
    next_reply(socket).await
}

/// A reply whose temporary file cannot be written (a full disk; here a file size
/// limit) is a TEXT diagnostic naming `TMPDIR`; its space is given back, and the
/// connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_file_cannot_be_written_is_a_text_diagnostic() {
    let server = ServerBuilder::new("examples/upper")
        .file_size_limit(4 << 20)
        .start()
        .await;
    let mut socket = connect(&server).await;
    let reply = text(reply_to_frames(&mut socket, "big", b'f', 5120).await);
    assert!(
        reply.contains("big: the result could not be held in a temporary file: File too large")
            && reply.contains("give the pod space in its temporary directory (TMPDIR)"),
        "{reply}"
    );
    send_object(&mut socket, control("", "", "", "small"), b"small").await;
    assert_eq!(binary(next_reply(&mut socket).await), "SMALL");
    assert!(
        (server.metrics().await).contains("\nais_wasm_reply_space_bytes 0\n"),
        "the failed reply's space is given back"
    );
}

/// A reply past what is held in memory goes to a temporary file; where none can be
/// made (a read-only root file system, say), or with `--reply-space 0`, it is held in
/// memory as a whole, up to `--max-output`. The server says once that it has no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_with_no_room_for_a_temporary_file_is_held_in_memory() {
    for (setting, value) in [
        ("TMPDIR", "/nonexistent/tmp"),
        ("ETL_WASM_REPLY_SPACE", "0"),
    ] {
        let server = ServerBuilder::new("examples/upper")
            .env(setting, value)
            .env("ETL_WASM_MAX_OUTPUT", "20MiB")
            .start()
            .await;
        let mut socket = connect(&server).await;
        let frames = (ais_wasm::held::HELD_IN_MEMORY as usize >> 12) + 16;
        for name in ["big", "bigger"] {
            let reply = binary(reply_to_frames(&mut socket, name, b'b', frames).await);
            assert!(reply.len() == frames * 4096 && reply.iter().all(|&b| b == b'B'));
        }
        let reply = text(reply_to_frames(&mut socket, "over", b'b', 6144).await);
        assert!(
            reply.contains(
                "over: the result is larger than 20971520 bytes, the most a \
                 WebSocket reply may hold in memory; raise ETL_WASM_MAX_OUTPUT (--max-output)"
            ),
            "{setting}: {reply}"
        );
        if setting == "TMPDIR" {
            let log = server.wait_for_log("give the pod a writable TMPDIR").await;
            assert_eq!(
                log.matches("cannot create a temporary file").count(),
                1,
                "{log}"
            );
        }
    }
}

/// Replies held in files share `--reply-space`: one that would outgrow it is a TEXT
/// diagnostic, and the space of a reply sent, or failed, is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_in_files_share_the_reply_space() {
    let server = ServerBuilder::new("examples/upper")
        .env("ETL_WASM_REPLY_SPACE", "24MiB")
        .start()
        .await;
    let mut socket = connect(&server).await;
    let reply = text(reply_to_frames(&mut socket, "too-big", b's', 8192).await);
    assert!(
        reply.contains(
            "too-big: the WebSocket replies in progress would take more than \
             25165824 bytes of temporary disk space; raise ETL_WASM_REPLY_SPACE"
        ),
        "{reply}"
    );
    // 20 MiB, twice: each fits only in the space given back before it.
    for name in ["first", "second"] {
        let reply = binary(reply_to_frames(&mut socket, name, b's', 5120).await);
        assert!(
            reply.len() == 5120 * 4096 && reply.iter().all(|&b| b == b'S'),
            "{name}"
        );
    }
    // The space is given back right after a reply's last write, so polled.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let metrics = loop {
        let metrics = server.metrics().await;
        if metrics.contains("\nais_wasm_reply_space_bytes 0\n") {
            break metrics;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        metrics.contains("ais_wasm_objects_total{transport=\"ws\",outcome=\"output_limit\"} 1\n"),
        "{metrics}"
    );
}

/// A peer that does not read its replies: its connection keeps finished ones in
/// memory up to 128 MiB, the rest in temporary files, and all come out whole and in
/// order once it reads (held in memory, 30 of 16 MB took 480 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_a_peer_does_not_read_wait_on_disk_past_their_memory() {
    const REPLIES: usize = 30;
    const SIZE: usize = 16_000_000;
    let server = ServerBuilder::new("host/tests/components/hostile")
        .env("NUM_WORKERS", "1")
        .env("ETL_WASM_MAX_OUTPUT", "32MiB")
        .start()
        .await;
    let before = server.rss();
    let mut socket = connect(&server).await;
    for i in 0..REPLIES {
        let control = control("", &format!("big:{SIZE}"), "", &format!("o{i}"));
        send_object(&mut socket, control, b"x").await;
    }
    let done = format!("ais_wasm_objects_total{{transport=\"ws\",outcome=\"ok\"}} {REPLIES}\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let metrics = server.metrics().await;
        let on_disk: u64 = (metrics.lines())
            .find_map(|line| line.strip_prefix("ais_wasm_reply_space_bytes "))
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(0);
        // What memory and the sockets do not hold: at least 200 MB.
        if metrics.contains(&done) && on_disk > 200_000_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let grown = server.rss().saturating_sub(before);
    assert!(grown < 300 << 20, "the server grew by {} MiB", grown >> 20);
    for i in 0..REPLIES {
        let reply = binary(next_reply(&mut socket).await);
        assert!(
            reply.len() == SIZE && reply.iter().all(|&b| b == b'x'),
            "o{i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_text_replies_and_the_connection_stays() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let mut socket = connect(&server).await;
    // Invalid pipeline (§6.1).
    send_object(&mut socket, control(",", "", "", "o"), b"x").await;
    let reply = text(next_reply(&mut socket).await);
    assert!(reply.contains("Invalid pipeline header"), "{reply}");
    // Missing FQN: a TEXT diagnostic, never a close (§13 Q1).
    socket
        .send(control("", "", "%2Fno%2F@ais%2Fb%2F%25ob%2Fsuch-file", "o"))
        .await
        .unwrap();
    let reply = text(next_reply(&mut socket).await);
    assert!(reply.contains("does not exist"), "{reply}");
    // An FQN that is not an object path: refused the same way (§11).
    socket
        .send(control("", "", "%2Fetc%2Fpasswd", "o"))
        .await
        .unwrap();
    let reply = text(next_reply(&mut socket).await);
    assert!(reply.contains("is not an AIStore object path"), "{reply}");
    // The connection still serves.
    send_object(&mut socket, control("", "", "", "o"), b"still here").await;
    assert_eq!(binary(next_reply(&mut socket).await), "still here");
}

/// The target writes Go strings as they are, so an object's name need not be UTF-8;
/// and a control message that cannot be read at all still ends with its data message
/// if it has one. Either way every request gets one reply, and the next its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_messages_that_are_not_utf8_or_not_json_keep_replies_in_step() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let stage = FakeTarget::start().await;
    stage.always(Put::NoContent(Some(4)));
    let mut socket = connect(&server).await;
    let raw_control = |json: &[u8]| Message::Binary(Bytes::copy_from_slice(json));
    send_object(&mut socket, raw_control(b"{\"path\":\"caf\xe9\"}"), b"cafe").await;
    // The name reaches the next hop byte for byte.
    let pipeline = format!("{{\"pipeline\":\"{}\",\"path\":\"caf", stage.url());
    let with_stage = [pipeline.as_bytes(), b"\xe9\"}"].concat();
    send_object(&mut socket, raw_control(&with_stage), b"data").await;
    // Not JSON, with and without a data message.
    send_object(&mut socket, raw_control(b"{\"path\":"), b"lost").await;
    socket
        .send(raw_control(b"{\"fqn\":\"%2Fx\",\"path\":"))
        .await
        .unwrap();
    send_object(&mut socket, control("", "", "", "o"), b"in step").await;

    assert_eq!(binary(next_reply(&mut socket).await), "cafe");
    assert_eq!(text(next_reply(&mut socket).await), "4");
    assert_eq!(stage.puts()[0].target, "/caf%E9");
    for _ in 0..2 {
        let reply = text(next_reply(&mut socket).await);
        assert!(reply.starts_with("Invalid control message: "), "{reply}");
    }
    assert_eq!(binary(next_reply(&mut socket).await), "in step");
}

/// A connection dropped in the middle of a message too long to hold, which streams
/// to its transform as it arrives: the transform stops, failing its object, and the
/// server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_in_a_streamed_message_stops_its_transform() {
    let server = ServerBuilder::new("examples/hash").start().await;
    let mut socket = connect(&server).await;
    socket.send(control("", "", "", "cut")).await.unwrap();
    // 20 MiB, more than is held, and no final frame.
    send_fragmented(&mut socket, &Bytes::from(vec![7; 4096]), 5120, false).await;
    drop(socket);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = server.metrics().await;
        let ws: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("ais_wasm_objects_total{transport=\"ws\""))
            .collect();
        if !ws.is_empty() {
            assert_eq!(ws.len(), 1, "{metrics}");
            assert!(
                ws[0].ends_with(" 1") && !ws[0].contains("\"ok\""),
                "{}",
                ws[0]
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transform did not stop:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Its input breaks off, or it is stopped first as abandoned, the connection gone.
    let log = server.stderr();
    assert!(
        log.contains("the object's WebSocket message broke off")
            || log.contains("transform stopped, instance replaced: nobody waits for the result"),
        "{log}"
    );

    let mut socket = connect(&server).await;
    send_object(&mut socket, control("", "", "", "next"), b"abc").await;
    assert_eq!(
        binary(next_reply(&mut socket).await),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// A message sent as one frame longer than is held: read in pieces as it arrives and
/// streamed to its transform, the client's mask carried from piece to piece, rather
/// than a buffer as long as the frame announces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_in_one_frame_longer_than_held_streams_piece_by_piece() {
    use sha2::Digest;
    let server = ServerBuilder::new("examples/hash").start().await;
    let mut socket = connect(&server).await;
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let expected = hex::encode(sha2::Sha256::digest(&data));
    socket.send(control("", "", "", "one-frame")).await.unwrap();
    let frame = Frame::message(Bytes::from(data), OpCode::Data(Data::Binary), true);
    socket.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(binary(next_reply(&mut socket).await), expected);
}

/// The target never pings or closes (§4.4), but a peer that does is answered: a pong
/// at once, a close after every request sent before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_a_close_are_answered_in_turn() {
    let server = ServerBuilder::new("examples/echo").start().await;
    let mut socket = connect(&server).await;
    socket.send(control("", "", "", "o")).await.unwrap();
    // Between a control message and its data: the pong is owed first.
    socket
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(b"first")))
        .await
        .unwrap();
    let pong = socket.next().await.unwrap().unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"are you there")));
    assert_eq!(binary(next_reply(&mut socket).await), "first");
    send_object(&mut socket, control("", "", "", "o"), b"last").await;
    socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        })))
        .await
        .unwrap();
    assert_eq!(binary(next_reply(&mut socket).await), "last");
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected the close answered, got {other:?}"),
    }
    assert!(socket.next().await.is_none(), "the connection is closed");
}

/// A pong does not wait for the replies owed before it: a peer that pings to learn
/// whether the server is alive hears back while a long transform runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_is_answered_while_a_transform_runs() {
    let server = ServerBuilder::new("host/tests/components/hostile")
        .start()
        .await;
    let mut socket = connect(&server).await;
    send_object(&mut socket, control("", "sleep:2000", "", "slow"), b"slow").await;
    socket
        .send(Message::Ping(Bytes::from_static(b"alive?")))
        .await
        .unwrap();
    // The pong first, though the reply was owed first; the reply after its 2 s.
    let pong = tokio::time::timeout(std::time::Duration::from_secs(60), socket.next());
    let pong = pong.await.expect("a pong in time").unwrap().unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"alive?")));
    assert_eq!(binary(next_reply(&mut socket).await), "slow");
}

/// An upgrade without a key is refused with a status that says why; without the
/// upgrade headers, `GET /ws` is an hpull of the object named "ws" (§4.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upgrade_is_refused_and_a_plain_get_is_an_object() {
    let target = FakeTarget::start().await;
    target.put_object("ws", "an object named ws");
    let server = ServerBuilder::new("examples/echo")
        .target(&target, "echo")
        .start()
        .await;
    let refused = raw(
        server.addr,
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.header("sec-websocket-version"), Some("13"));
    let body = String::from_utf8_lossy(&refused.body);
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");
    let plain = reqwest::get(format!("http://{}/ws", server.addr))
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.text().await.unwrap(), "an object named ws");
}
