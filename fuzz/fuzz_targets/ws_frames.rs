//! WebSocket frames off the wire (`frames::Frames`), against fastwebsockets' own
//! reader of the same bytes, which the server used before: never panics; the same
//! frames, payloads unmasked alike, and an error where it has one. Three differences
//! are the RFC's: an unmasked frame is refused, a CLOSE or PONG frame over 125 bytes
//! too (fastwebsockets checks only PING), and TEXT is not checked for UTF-8 frame by
//! frame (the server checks whole messages). Each payload is read in two pieces
//! (`Header::split`).
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ais_wasm_fuzz::frames::{FrameError, Frames};
use bytes::BytesMut;
use fastwebsockets::{OpCode, Role, WebSocketError};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

/// Runs a future over an in-memory reader, which never waits.
fn ready<T>(future: impl Future<Output = T>) -> T {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a read of bytes in memory waited"),
    }
}

fuzz_target!(|wire: &[u8]| {
    let mut ours = Frames::new(wire, LIMIT);
    let (mut theirs, _) =
        fastwebsockets::after_handshake_split(wire, tokio::io::sink(), Role::Server);
    theirs.set_auto_close(false);
    theirs.set_auto_pong(false);
    // fastwebsockets refuses a frame of its limit or more; `Frames` one over it.
    theirs.set_max_message_size(LIMIT + 1);
    let mut read = 0;
    loop {
        let mine = ready(async {
            let header = ours.header().await?;
            let mut payload = BytesMut::from(&b"before"[..]);
            // Read in two pieces, as the server reads a frame too long to hold: the
            // mask must carry over from one to the other.
            let (first, rest) = header.split(header.len / 3);
            ours.payload(&first, &mut payload).await?;
            ours.payload(&rest, &mut payload).await?;
            assert_eq!(&payload[..6], b"before");
            read += header.wire + header.len;
            Ok::<_, FrameError>((header.fin, header.opcode, payload.split_off(6)))
        });
        let reference = ready(theirs.read_frame(&mut |_| async { Ok::<_, std::io::Error>(()) }));
        match (mine, reference) {
            (Ok((fin, opcode, payload)), Ok(frame)) => {
                assert_eq!((fin, opcode), (frame.fin, frame.opcode));
                assert_eq!(&payload[..], &frame.payload[..]);
                assert!(read <= wire.len());
            }
            (Err(FrameError::Ended), Err(WebSocketError::UnexpectedEOF)) => return,
            (Err(FrameError::Unmasked), Ok(_)) => return,
            (Err(FrameError::LongControl(_)), Ok(frame)) => {
                assert!(matches!(frame.opcode, OpCode::Close | OpCode::Pong));
                return;
            }
            (Ok((_, OpCode::Text, _)), Err(WebSocketError::InvalidUTF8)) => return,
            (Err(error), Err(_)) => {
                assert!(error.close_code().is_some(), "{error}");
                return;
            }
            (mine, reference) => panic!(
                "frames read differently: {:?} against {:?}",
                mine.map(|(fin, opcode, payload)| (fin, opcode, payload.len())),
                reference.map(|frame| (frame.fin, frame.opcode, frame.payload.len())),
            ),
        }
    }
});
