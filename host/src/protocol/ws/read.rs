//! A WebSocket connection's reading side: its frames joined into messages, or passed
//! on piece by piece once a message is too long to hold; its control frames answered.

use std::io;

use bytes::{Bytes, BytesMut};
use fastwebsockets::OpCode;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use super::coalesce::Pacer;
use super::frames::{FrameError, Frames, Header, NOT_UTF8, PROTOCOL_ERROR};
use super::{Pending, Reply};

/// The target reads replies of up to 16 GiB, and sends objects as large (§4.4): the
/// longest frame accepted.
const MAX_MESSAGE: usize = 16 << 30;

/// A frame longer than this is read in pieces of this length, each passed on like a
/// frame of its own. A payload is otherwise read whole, into a buffer reserved from
/// its header's length: a frame announcing gigabytes would take them at once.
const PIECE: usize = 64 << 10;

/// A streamed message's frames are passed on together, up to this many bytes, as
/// long as the next can be read without waiting: each hand-over can wake its
/// transform, on another thread, and gorilla's 4 KiB frames passed on one by one woke
/// it 7-11 times as often per object as a held message did.
const BATCH: usize = 256 << 10;

/// The connection's reading side. gorilla fragments a message into frames of about
/// 4 KiB; they are joined here, into one buffer sized from the connection's recent
/// requests, or passed on in batches once a message is too long to hold. A ping's
/// pong goes to the writer at once; a close's answer is queued behind the replies
/// owed before it.
pub(super) struct Reader<S> {
    pub(super) frames: Frames<S>,
    /// Frames longer than this are read in pieces this long (`PIECE`).
    piece: usize,
    /// A streamed message is passed on in pieces of at most this many bytes (`BATCH`).
    batch: usize,
    /// What is left of a frame read in pieces, its header not on the wire.
    pub(super) rest_of_frame: Option<Header>,
    pub(super) replies: mpsc::Sender<Pending>,
    /// The payloads of pings, for the writer to answer.
    pongs: mpsc::Sender<Bytes>,
    /// Told of every frame and request, so that the socket wakes the reader once a
    /// request is likely whole.
    pub(super) pacer: Pacer,
    /// The close code owed to a peer that broke the protocol: the connection's last
    /// frame, after the replies owed before it (RFC 6455 §7.1.7).
    pub(super) violation: Option<u16>,
    /// The connection ended without a close frame, as a target closes it (§4.4):
    /// nobody is left to read the replies owed.
    pub(super) gone: bool,
    /// A TEXT message being streamed, checked piece by piece (RFC 6455 §8.1).
    text: Option<Utf8Check>,
}

/// Checks a message for UTF-8 piece by piece, whatever bytes the pieces are cut at.
#[derive(Default)]
struct Utf8Check {
    /// The start of a character that the last piece cut: 1 to 3 bytes.
    cut: Vec<u8>,
}

impl Utf8Check {
    /// Whether the message is UTF-8 so far.
    fn piece(&mut self, mut piece: &[u8]) -> bool {
        if !self.cut.is_empty() {
            // A character is at most 4 bytes: its rest is in the first 3 of these.
            let had = self.cut.len();
            let take = piece.len().min(4 - had);
            self.cut.extend_from_slice(&piece[..take]);
            match std::str::from_utf8(&self.cut) {
                Ok(_) => piece = &piece[take..],
                Err(error) if error.valid_up_to() > 0 => {
                    piece = &piece[error.valid_up_to() - had..]
                }
                // Still cut: the piece was shorter than the character's rest.
                Err(error) if error.error_len().is_none() => return true,
                Err(_) => return false,
            }
            self.cut.clear();
        }
        match std::str::from_utf8(piece) {
            Ok(_) => true,
            Err(error) if error.error_len().is_none() => {
                self.cut = piece[error.valid_up_to()..].to_vec();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the message ended on a whole character.
    fn end(&self) -> bool {
        self.cut.is_empty()
    }
}

/// A message as read: whole, or begun and too long to hold, its start here and the
/// rest to come through [`Reader::feed`].
pub(super) enum Message {
    Whole(Bytes),
    Begun(Vec<Bytes>),
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Reads `socket`, passing pings' payloads to `pongs` and a close's answer to
    /// `replies`.
    pub(super) fn new(
        socket: S,
        replies: mpsc::Sender<Pending>,
        pongs: mpsc::Sender<Bytes>,
        pacer: Pacer,
    ) -> Self {
        Reader {
            frames: Frames::new(socket, MAX_MESSAGE),
            piece: PIECE,
            batch: BATCH,
            rest_of_frame: None,
            replies,
            pongs,
            pacer,
            violation: None,
            gone: false,
            text: None,
        }
    }

    /// The header of the next frame of a BINARY or TEXT message (or of its next
    /// piece), its payload still to be read; control frames before it are answered.
    /// `None` when the connection ends or is closed.
    async fn data_frame(&mut self) -> Option<Header> {
        if let Some(rest) = self.rest_of_frame.take() {
            return Some(self.piece_of(rest));
        }
        loop {
            let header = match self.frames.header().await {
                Ok(header) => header,
                Err(error) => return self.ended(error),
            };
            self.pacer.frame(header.wire + header.len);
            match header.opcode {
                OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                    return Some(self.piece_of(header));
                }
                OpCode::Ping => {
                    let payload = self.payload(&header).await?;
                    self.pongs.send(payload).await.ok()?;
                }
                OpCode::Close => {
                    let payload = self.payload(&header).await?;
                    let answer = Reply::Control(OpCode::Close, close_answer(&payload));
                    let _ = self.replies.send(Pending::Ready(answer)).await;
                    return None;
                }
                OpCode::Pong => {
                    self.payload(&header).await?;
                }
            }
        }
    }

    /// `header`, or its first piece if it is longer than a piece (the rest is kept).
    fn piece_of(&mut self, header: Header) -> Header {
        if header.len <= self.piece {
            return header;
        }
        let (piece, rest) = header.split(self.piece);
        self.rest_of_frame = Some(rest);
        piece
    }

    /// The payload of the frame whose header was read last, appended to `to`.
    async fn payload_into(&mut self, header: &Header, to: &mut BytesMut) -> Option<()> {
        match self.frames.payload(header, to).await {
            Ok(()) => Some(()),
            Err(error) => self.ended(error),
        }
    }

    /// The payload of the frame whose header was read last, in a buffer of its own.
    async fn payload(&mut self, header: &Header) -> Option<Bytes> {
        let mut payload = BytesMut::with_capacity(header.len);
        self.payload_into(header, &mut payload).await?;
        Some(payload.freeze())
    }

    /// The next BINARY (or TEXT) message: whole if it ends within `hold` bytes (and
    /// a piece), else begun. `None` when the connection ends, or when the peer breaks
    /// the framing.
    pub(super) async fn message(&mut self, hold: usize) -> Option<Message> {
        let first = self.data_frame().await?;
        if first.opcode == OpCode::Continuation {
            return self.out_of_sequence();
        }
        if first.fin {
            let payload = self.payload(&first).await?;
            return self.whole(first.opcode, payload);
        }
        // Room for the frames the request is guessed to bring (and for the rest of a
        // frame read in pieces), so that the message is not copied as it grows. A
        // request shorter than its guess leaves the rest unused, and pauses the
        // guessing.
        let rest_of_frame = self.rest_of_frame.map_or(0, |rest| rest.len);
        let expected = first.len + rest_of_frame + self.pacer.rest();
        let mut message = BytesMut::with_capacity(expected.min(hold).max(first.len));
        self.payload_into(&first, &mut message).await?;
        loop {
            let frame = self.data_frame().await?;
            if frame.opcode != OpCode::Continuation {
                return self.out_of_sequence();
            }
            let length = message.len() + frame.len;
            // Not grown past `hold`: growing copies the buffer, and could briefly take
            // twice what it holds.
            if length > hold && !frame.fin {
                let next = self.payload(&frame).await?;
                if first.opcode == OpCode::Text {
                    let mut check = Utf8Check::default();
                    if !(check.piece(&message) && check.piece(&next)) {
                        return self.violated(NOT_UTF8, "a TEXT message that is not UTF-8");
                    }
                    self.text = Some(check);
                }
                return Some(Message::Begun(vec![message.freeze(), next]));
            }
            self.payload_into(&frame, &mut message).await?;
            if frame.fin {
                return self.whole(first.opcode, message.freeze());
            }
        }
    }

    /// A message read whole; `None` for a TEXT one that is not UTF-8, after which the
    /// connection is closed (RFC 6455 §8.1).
    fn whole(&mut self, opcode: OpCode, message: Bytes) -> Option<Message> {
        if opcode == OpCode::Text && std::str::from_utf8(&message).is_err() {
            return self.violated(NOT_UTF8, "a TEXT message that is not UTF-8");
        }
        Some(Message::Whole(message))
    }

    /// The frame just read does not continue the message it had to, or continues one
    /// that never began: the connection cannot be followed any more.
    fn out_of_sequence<T>(&mut self) -> Option<T> {
        self.violated(PROTOCOL_ERROR, "a frame out of sequence")
    }

    /// The connection ended, or the peer broke the protocol: nothing more is read.
    fn ended<T>(&mut self, error: FrameError) -> Option<T> {
        match error.close_code() {
            Some(code) => self.violated(code, error),
            None => {
                tracing::debug!("WebSocket connection ended: {error}");
                self.gone = true;
                None
            }
        }
    }

    /// The peer broke the protocol: nothing more is read, and a close with `code`
    /// follows the replies owed.
    pub(super) fn violated<T>(&mut self, code: u16, what: impl std::fmt::Display) -> Option<T> {
        tracing::warn!("a WebSocket peer broke the protocol: {what}; closing the connection");
        self.violation = Some(code);
        None
    }

    /// The rest of a begun message into `feed` as it arrives: the frames that can be
    /// read without waiting together, in one piece of up to `BATCH` bytes. `false`
    /// when the connection ended or broke the framing first. Once `feed` is closed
    /// (the transform stopped reading), frames are skipped to the message's end, where
    /// the next request starts.
    pub(super) async fn feed(&mut self, feed: mpsc::Sender<Fed>) -> bool {
        let mut pending = BytesMut::new();
        loop {
            let frame = match self.data_frame().await {
                Some(frame) if frame.opcode == OpCode::Continuation => frame,
                Some(_) => {
                    self.out_of_sequence::<()>();
                    return false;
                }
                None => return false,
            };
            if pending.capacity() == 0 {
                pending.reserve(self.batch.max(frame.len));
            }
            let start = pending.len();
            if self.payload_into(&frame, &mut pending).await.is_none() {
                return false;
            }
            if let Some(check) = &mut self.text
                && !(check.piece(&pending[start..]) && (!frame.fin || check.end()))
            {
                // Its transform reads an error, not an end.
                self.violated::<()>(NOT_UTF8, "a TEXT message that is not UTF-8");
                return false;
            }
            if frame.fin {
                self.text = None;
            }
            // Kept for the next frame only if that can be read at once and fits: a
            // piece never waits on the socket, nor grows by copying.
            let joins = |next: Header| {
                next.opcode == OpCode::Continuation && pending.len() + next.len <= self.batch
            };
            let next = match self.rest_of_frame {
                None if !frame.fin => self.frames.ready_frame(),
                _ => None,
            };
            if !next.is_some_and(joins) {
                let piece = std::mem::take(&mut pending).freeze();
                let _ = feed
                    .send(Fed {
                        piece,
                        fin: frame.fin,
                    })
                    .await;
            }
            if frame.fin {
                return true;
            }
        }
    }
}

/// The status code that answers a close (RFC 6455 §5.5.1): its own, when it had one
/// an endpoint may send (§7.4); 1002, a protocol error, for one it may not (1005,
/// 999) or a payload of one byte; none for none.
fn close_answer(close: &[u8]) -> Bytes {
    const FOR_PROTOCOL_ERROR: [u8; 2] = PROTOCOL_ERROR.to_be_bytes();
    let sendable = |code| matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    match *close {
        [] => Bytes::new(),
        [high, low, ..] if sendable(u16::from_be_bytes([high, low])) => {
            Bytes::copy_from_slice(&[high, low])
        }
        _ => Bytes::from_static(&FOR_PROTOCOL_ERROR),
    }
}

/// A frame of a streamed message, and whether it is the last.
pub(super) struct Fed {
    piece: Bytes,
    fin: bool,
}

/// A begun message as a body: its start, then the rest as it is fed. It ends only
/// with the message's last frame: a feed that stops before it (the connection broke,
/// the reader was dropped) is an error, never an end, or a truncated object would
/// pass for a whole one.
pub(super) fn streamed(
    head: Vec<Bytes>,
    rest: mpsc::Receiver<Fed>,
) -> BoxStream<'static, io::Result<Bytes>> {
    let rest = futures::stream::unfold(Some(rest), |rest| async move {
        let mut rest = rest?;
        Some(match rest.recv().await {
            Some(Fed { piece, fin: false }) => (Ok(piece), Some(rest)),
            Some(Fed { piece, fin: true }) => (Ok(piece), None),
            None => {
                let broken = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the object's WebSocket message broke off before its last frame: the \
                     connection ended, or its frames went out of sequence",
                );
                (Err(broken), None)
            }
        })
    });
    futures::stream::iter(head.into_iter().map(Ok))
        .chain(rest)
        .boxed()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    use futures::StreamExt;
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;

    use super::{Fed, Message, Pacer, Pending, Reader, Reply, Utf8Check, streamed};

    /// The server's reading side of a connection, and a client at the other end of an
    /// in-memory pipe.
    struct Connection {
        /// Reads frames over 64 bytes in pieces of 64 (`PIECE`, scaled down).
        reader: Reader<DuplexStream>,
        /// What the reader queued for the writer.
        queued: mpsc::Receiver<Pending>,
        /// The pings the reader passed on to be answered.
        pinged: mpsc::Receiver<Bytes>,
        client: WebSocket<DuplexStream>,
    }

    fn connection() -> Connection {
        let (server, client) = tokio::io::duplex(1 << 16);
        let (replies, queued) = mpsc::channel(4);
        let (pongs, pinged) = mpsc::channel(4);
        let mut reader = Reader::new(server, replies, pongs, Pacer::detached());
        reader.piece = 64;
        Connection {
            reader,
            queued,
            pinged,
            client: WebSocket::after_handshake(client, Role::Client),
        }
    }

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Frame<'static> {
        Frame::new(fin, opcode, None, Payload::Owned(payload.to_vec()))
    }

    /// A connection on which the client has sent `frames`.
    async fn sent(frames: &[(bool, OpCode, &[u8])]) -> Connection {
        let mut connection = connection();
        for &(fin, opcode, payload) in frames {
            connection
                .client
                .write_frame(frame(fin, opcode, payload))
                .await
                .unwrap();
        }
        connection
    }

    fn whole(message: Option<Message>) -> Bytes {
        match message {
            Some(Message::Whole(bytes)) => bytes,
            Some(Message::Begun(frames)) => panic!("begun, not whole: {frames:?}"),
            None => panic!("no message"),
        }
    }

    /// What `Reader::feed` passes on of a begun message after its `head`, and whether
    /// the message ended well.
    async fn feed_all(
        reader: &mut Reader<DuplexStream>,
        head: Vec<Bytes>,
    ) -> (bool, Vec<std::io::Result<Bytes>>) {
        let (feed, rest) = mpsc::channel(64);
        let ended = reader.feed(feed).await;
        (ended, streamed(head, rest).collect().await)
    }

    fn begun(message: Option<Message>) -> Vec<Bytes> {
        match message {
            Some(Message::Begun(start)) => start,
            Some(Message::Whole(bytes)) => panic!("whole, not begun: {bytes:?}"),
            None => panic!("no message"),
        }
    }

    #[tokio::test]
    async fn fragments_are_joined_and_a_ping_between_them_is_answered() {
        let Connection {
            mut reader,
            mut pinged,
            ..
        } = sent(&[
            (false, OpCode::Binary, b"frag"),
            (true, OpCode::Ping, b"there?"),
            (false, OpCode::Continuation, b"men"),
            (true, OpCode::Continuation, b"ted"),
            (true, OpCode::Binary, b"whole"),
        ])
        .await;
        assert_eq!(whole(reader.message(64).await), "fragmented");
        assert_eq!(pinged.try_recv().unwrap(), "there?");
        assert_eq!(whole(reader.message(64).await), "whole");
    }

    #[tokio::test]
    async fn a_ping_goes_to_the_writer_at_once_and_a_close_behind_the_replies() {
        let Connection {
            mut reader,
            mut queued,
            mut pinged,
            ..
        } = sent(&[
            (true, OpCode::Ping, b"there?"),
            (true, OpCode::Close, &[0x03, 0xe8]),
        ])
        .await;
        assert!(reader.message(64).await.is_none(), "closed");
        assert_eq!(pinged.try_recv().unwrap(), "there?");
        match queued.try_recv() {
            Ok(Pending::Ready(Reply::Control(OpCode::Close, code))) => {
                assert_eq!(code, [0x03, 0xe8][..]);
            }
            _ => panic!("no close answer queued"),
        }
    }

    #[tokio::test]
    async fn a_message_longer_than_held_streams_as_it_arrives() {
        let Connection {
            mut reader,
            mut pinged,
            ..
        } = sent(&[
            (false, OpCode::Binary, b"ab"),
            (false, OpCode::Continuation, b"cd"),
            (false, OpCode::Continuation, b"ef"),
            (true, OpCode::Ping, b"there?"),
            (true, OpCode::Continuation, b"gh"),
            (true, OpCode::Binary, b"next"),
        ])
        .await;
        // Held while it is at most 3 bytes long: begun with its first 4.
        let head = begun(reader.message(3).await);
        assert_eq!(head.concat(), b"abcd");
        let (ended, body) = feed_all(&mut reader, head).await;
        assert!(ended);
        let body: Vec<Bytes> = body.into_iter().map(Result::unwrap).collect();
        assert_eq!(body.concat(), b"abcdefgh");
        assert_eq!(pinged.try_recv().unwrap(), "there?");
        assert_eq!(whole(reader.message(3).await), "next");
    }

    #[tokio::test]
    async fn a_frame_longer_than_a_piece_is_read_piece_by_piece() {
        let payload: Vec<u8> = (0..200).collect();
        let Connection {
            mut reader,
            mut pinged,
            ..
        } = sent(&[
            (true, OpCode::Binary, &payload),
            (false, OpCode::Binary, &payload[..30]),
            (true, OpCode::Ping, b"there?"),
            (true, OpCode::Continuation, &payload[30..]),
        ])
        .await;
        // Pieces of 7 bytes: the client's mask falls on each at another offset.
        reader.piece = 7;
        // Held whole while at most 100 bytes (and a piece) long: begun.
        let head = begun(reader.message(100).await);
        assert_eq!(head.iter().map(Bytes::len).collect::<Vec<_>>(), [98, 7]);
        let (ended, body) = feed_all(&mut reader, head).await;
        assert!(ended);
        let body: Vec<Bytes> = body.into_iter().map(Result::unwrap).collect();
        assert!(body[1..].iter().all(|piece| piece.len() <= 7), "{body:?}");
        assert_eq!(body.concat(), payload);
        // Held whole: one buffer, though it came in pieces around a ping.
        assert_eq!(whole(reader.message(256).await), payload);
        assert_eq!(pinged.try_recv().unwrap(), "there?");
    }

    #[tokio::test]
    async fn frames_that_can_be_read_at_once_are_passed_on_together() {
        let Connection {
            mut reader,
            mut pinged,
            ..
        } = sent(&[
            (false, OpCode::Binary, b"ab"),
            (false, OpCode::Continuation, b"cd"),
            (false, OpCode::Continuation, b"ef"),
            (false, OpCode::Continuation, b"gh"),
            (true, OpCode::Ping, b"there?"),
            (false, OpCode::Continuation, b"ij"),
            (false, OpCode::Continuation, b"klm"),
            (true, OpCode::Continuation, b"n"),
        ])
        .await;
        reader.batch = 4;
        begun(reader.message(3).await);
        let (feed, mut rest) = mpsc::channel(8);
        assert!(reader.feed(feed).await);
        let mut pieces = Vec::new();
        while let Some(Fed { piece, fin }) = rest.recv().await {
            pieces.push((piece, fin));
        }
        // Up to 4 bytes each; a ping between frames ends a piece.
        let expected = [("efgh", false), ("ij", false), ("klmn", true)];
        assert_eq!(
            pieces,
            expected.map(|(piece, fin)| (Bytes::from(piece), fin))
        );
        assert_eq!(pinged.try_recv().unwrap(), "there?");
    }

    #[tokio::test]
    async fn a_piece_is_passed_on_without_waiting_for_the_next_frame() {
        let Connection {
            mut reader,
            mut client,
            ..
        } = sent(&[
            (false, OpCode::Binary, b"ab"),
            (false, OpCode::Continuation, b"cd"),
            (false, OpCode::Continuation, b"ef"),
        ])
        .await;
        begun(reader.message(3).await);
        let (feed, mut rest) = mpsc::channel::<Fed>(8);
        let peer = async {
            let first = rest.recv().await.unwrap();
            assert_eq!((first.piece, first.fin), (Bytes::from("ef"), false));
            let last = frame(true, OpCode::Continuation, b"gh");
            client.write_frame(last).await.unwrap();
            let last = rest.recv().await.unwrap();
            assert_eq!((last.piece, last.fin), (Bytes::from("gh"), true));
        };
        let (ended, ()) = tokio::join!(reader.feed(feed), peer);
        assert!(ended);
    }

    #[tokio::test]
    async fn a_stream_nobody_reads_is_skipped_to_the_next_message() {
        let Connection { mut reader, .. } = sent(&[
            (false, OpCode::Binary, b"abcd"),
            (false, OpCode::Continuation, b"ef"),
            (true, OpCode::Continuation, b"gh"),
            (true, OpCode::Binary, b"next"),
        ])
        .await;
        begun(reader.message(3).await);
        let (feed, rest) = mpsc::channel(1);
        drop(rest);
        assert!(reader.feed(feed).await);
        assert_eq!(whole(reader.message(3).await), "next");
    }

    #[tokio::test]
    async fn a_connection_that_ends_mid_stream_fails_the_stream() {
        // The client, dropped here, has closed the connection after these.
        let Connection { mut reader, .. } = sent(&[
            (false, OpCode::Binary, b"abcd"),
            (false, OpCode::Continuation, b"ef"),
        ])
        .await;
        let head = begun(reader.message(3).await);
        let (ended, body) = feed_all(&mut reader, head).await;
        assert!(!ended);
        assert_eq!(body.len(), 3, "two frames and the error");
        let error = body[2].as_ref().unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_feed_dropped_before_the_last_frame_is_an_error_not_an_end() {
        let (feed, rest) = mpsc::channel(8);
        let body = streamed(vec![Bytes::from_static(b"start")], rest);
        let piece = Bytes::from_static(b"more");
        feed.send(Fed { piece, fin: false }).await.unwrap();
        drop(feed);
        let body: Vec<_> = body.collect().await;
        assert_eq!(body.len(), 3);
        assert_eq!(body[1].as_ref().unwrap(), "more");
        assert_eq!(
            body[2].as_ref().unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_close_is_answered_with_its_code_if_one_may_be_sent() {
        for (close, answer) in [
            (&b""[..], &b""[..]),
            (b"\x03\xe8bye", b"\x03\xe8"),
            (b"\x0b\xb8", b"\x0b\xb8"),
            (b"\x03\xed", b"\x03\xea"),
            (b"\x03\xe7", b"\x03\xea"),
            (b"\x03", b"\x03\xea"),
        ] {
            assert_eq!(super::close_answer(close), answer, "{close:?}");
        }
    }

    #[tokio::test]
    async fn a_text_message_that_is_not_utf8_ends_the_connection() {
        for frames in [
            &[(true, OpCode::Text, &b"\xff"[..])][..],
            &[
                (false, OpCode::Text, b"\xe2\x82"),
                (true, OpCode::Continuation, b"\xff"),
            ],
        ] {
            let Connection { mut reader, .. } = sent(frames).await;
            assert!(reader.message(64).await.is_none());
            assert_eq!(reader.violation, Some(1007));
        }
        let Connection { mut reader, .. } = sent(&[
            (false, OpCode::Text, b"\xe2\x82"),
            (true, OpCode::Continuation, b"\xac"),
        ])
        .await;
        assert_eq!(whole(reader.message(64).await), "\u{20ac}");

        // Streamed, it is checked piece by piece; its transform reads an error.
        for (last, utf8) in [(b"\xac", true), (b"\xff", false)] {
            let Connection { mut reader, .. } = sent(&[
                (false, OpCode::Text, b"ab"),
                (false, OpCode::Continuation, b"c\xe2"),
                (false, OpCode::Continuation, b"\x82"),
                (true, OpCode::Continuation, last),
            ])
            .await;
            let head = begun(reader.message(3).await);
            let (ended, body) = feed_all(&mut reader, head).await;
            assert_eq!(ended, utf8);
            if utf8 {
                let body: Vec<u8> = body.into_iter().flat_map(|b| b.unwrap()).collect();
                assert_eq!(body, "abc\u{20ac}".as_bytes());
            } else {
                assert!(body.last().unwrap().is_err(), "{body:?}");
                assert_eq!(reader.violation, Some(1007));
            }
        }
    }

    #[test]
    fn utf8_is_checked_whatever_the_pieces_are_cut_at() {
        let text = "a\u{20ac}b\u{1f600}c".as_bytes();
        for one in 0..=text.len() {
            for two in one..=text.len() {
                let mut check = Utf8Check::default();
                let pieces = [&text[..one], &text[one..two], &text[two..]];
                assert!(
                    pieces.iter().all(|p| check.piece(p)) && check.end(),
                    "{one} {two}"
                );
            }
        }
        // A lone continuation byte, a character cut by the end, an overlong encoding.
        for bad in [&b"a\x80b"[..], b"a\xe2\x82", b"\xc0\xaf"] {
            for cut in 0..=bad.len() {
                let mut check = Utf8Check::default();
                let whole = check.piece(&bad[..cut]) && check.piece(&bad[cut..]) && check.end();
                assert!(!whole, "{bad:?} cut at {cut}");
            }
        }
    }

    #[tokio::test]
    async fn a_message_out_of_sequence_ends_the_connection() {
        for frames in [
            &[(true, OpCode::Continuation, &b"no start"[..])][..],
            &[
                (false, OpCode::Binary, b"begun"),
                (true, OpCode::Binary, b"again"),
            ],
        ] {
            let Connection { mut reader, .. } = sent(frames).await;
            assert!(reader.message(64).await.is_none());
            assert_eq!(reader.violation, Some(1002));
        }

        // A streamed message interrupted by a new one.
        let Connection { mut reader, .. } = sent(&[
            (false, OpCode::Binary, b"abcd"),
            (false, OpCode::Continuation, b"ef"),
            (true, OpCode::Binary, b"again"),
        ])
        .await;
        let head = begun(reader.message(3).await);
        let (ended, body) = feed_all(&mut reader, head).await;
        assert!(!ended);
        assert!(body.last().unwrap().is_err(), "{body:?}");
        assert_eq!(reader.violation, Some(1002));
    }
}
