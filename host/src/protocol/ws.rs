//! `/ws`: each request is a binary JSON control message, followed by a binary data
//! message unless the control names an FQN (§4.4). Requests on a connection are
//! processed concurrently and answered strictly in order, since the target matches
//! replies to requests by position only. A data message is held whole up to
//! `HOLD_AT_MOST`; a longer one streams to its transform as it arrives, and so does
//! a frame longer than `PIECE`, piece by piece: what the connection holds does not
//! grow with what the peer announces.
//!
//! There is no error frame in this protocol. A connection is never closed because
//! one request failed (that would strand every request queued behind it); a failure
//! is answered with a TEXT diagnostic and logged (§13 Q1).

use std::io::{self, IoSlice};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use fastwebsockets::OpCode;
use fastwebsockets::upgrade::{UpgradeFut, is_upgrade_request};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::coalesce::{self, Pacer};
use super::control::Control;
use super::frames::{
    self, FrameError, Frames, Header, MAX_SERVER_HEADER, MESSAGE_TOO_BIG, NOT_UTF8, PROTOCOL_ERROR,
};
use super::server::{self, Moving, Seat};
use super::{AppState, HttpError, http};
use crate::etl::{EtlError, Job, Outcome, Output};
use crate::held::{Held, HeldFile, HeldOutput};
use crate::metrics::Transport;
use crate::pipeline;
use crate::runtime::{LogScope, ObjectError, ObjectRequest};
use crate::source::{HeldInput, Share, Source};

/// The target reads replies of up to 16 GiB, and sends objects as large (§4.4): the
/// longest frame accepted.
const MAX_MESSAGE: usize = 16 << 30;

/// A frame longer than this is read in pieces of this length, each passed on like a
/// frame of its own. A payload is otherwise read whole, into a buffer reserved from
/// its header's length: a frame announcing gigabytes would take them at once.
const PIECE: usize = 64 << 10;

/// A data message that outgrows this before its last frame is not held whole: its
/// transform reads it as it arrives, in constant memory, as §4.4 advises for objects
/// of up to 16 GiB. A held one can be read again, so a failed direct put of its result
/// is retried here; a streamed one cannot (its failure is the TEXT diagnostic).
const HOLD_AT_MOST: usize = 16 << 20;

/// Frames of a streamed message waiting for its transform; beyond them the
/// connection is not read, and TCP pushes back on the target.
const FEED_DEPTH: usize = 64;

/// Requests of one connection in progress at once; beyond it the connection is not
/// read, and TCP pushes back on the target.
const IN_FLIGHT: usize = 256;

/// Bytes of data messages one connection holds, read and not yet transformed; beyond
/// them the connection is not read until a transform finishes. Without it, slow
/// transforms would let a connection hold `IN_FLIGHT` messages of `HOLD_AT_MOST`.
const HELD_PER_CONNECTION: u32 = 64 << 20;

/// Bytes of finished replies one connection keeps in memory until they are written
/// (one reply of the default --max-output fits); past them, a reply waits in a
/// temporary file within --reply-space. A peer that does not read its replies would
/// otherwise have up to `IN_FLIGHT` of them held at once.
const REPLIES_IN_MEMORY: u32 = 128 << 20;

/// Pings read and not yet answered; beyond them the connection is not read.
const PINGS_WAITING: usize = 16;

/// Finished replies go out together, each frame's header beside its payload in one
/// writev, until this many bytes are gathered; a reply is never split across writes
/// for it.
const WRITE_AT_ONCE: usize = 1 << 20;

/// And until this many frames: a header and a payload each, within a writev's 1024
/// buffers (IOV_MAX).
const FRAMES_AT_ONCE: usize = 512;

/// Where a WebSocket request's object is.
enum Input {
    /// In the data message that followed the control message, with its share of
    /// `--held-input`.
    Data(Bytes, Share),
    /// In a data message too long to hold, as it arrives; the share covers what
    /// arrived before its transform takes it.
    Streamed(BoxStream<'static, io::Result<Bytes>>, Share),
    /// In the file named by the control message's `fqn`.
    Fqn,
}

/// What goes back on the socket, in the order the requests came.
enum Reply {
    /// The object, as one message of one frame per buffer: a streaming transform's
    /// chunks go out as they came (a first frame, then continuations), never copied
    /// into one buffer. The target reassembles them, as it must (RFC 6455 §5.4).
    Binary(Vec<Bytes>),
    /// The object, held in a temporary file (past `held::HELD_IN_MEMORY`): one message,
    /// sent in pieces read from the file as the socket takes them.
    Spilled(HeldFile),
    Text(String),
    /// A pong, or the close handshake's answer, owed to the peer.
    Control(OpCode, Bytes),
}

impl From<HeldOutput> for Reply {
    fn from(held: HeldOutput) -> Reply {
        match held {
            HeldOutput::Memory(chunks) => Reply::Binary(chunks),
            HeldOutput::File(file) => Reply::Spilled(file),
        }
    }
}

/// A reply in the queue: being worked out, or known already.
enum Pending {
    Running(JoinHandle<Kept>),
    Ready(Reply),
}

/// A finished reply, and the share of its connection's `REPLIES_IN_MEMORY` it takes
/// until it is written.
struct Kept(Reply, Option<OwnedSemaphorePermit>);

impl Pending {
    fn is_ready(&self) -> bool {
        match self {
            Pending::Running(task) => task.is_finished(),
            Pending::Ready(_) => true,
        }
    }

    async fn reply(self) -> Kept {
        match self {
            Pending::Running(task) => task
                .await
                .unwrap_or_else(|e| Kept(Reply::Text(format!("Transform error: {e}")), None)),
            Pending::Ready(reply) => Kept(reply, None),
        }
    }
}

pub async fn upgrade(State(state): State<Arc<AppState>>, mut request: Request) -> Response {
    // A plain `GET /ws` is an hpull of the object named "ws".
    if !is_upgrade_request(&request) {
        let (parts, body) = request.into_parts();
        return http::object(State(state), parts.method, parts.uri, parts.headers, body).await;
    }
    match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok((response, socket)) => {
            tokio::spawn(serve(state, socket));
            response.map(axum::body::Body::new)
        }
        Err(error) => {
            let body = format!(
                "WebSocket upgrade refused: {error}; a WebSocket client sends \
                 Sec-WebSocket-Key and Sec-WebSocket-Version: 13"
            );
            let mut response =
                HttpError::new(axum::http::StatusCode::BAD_REQUEST, body).into_response();
            // RFC 6455 §4.2.2: a refused handshake names the version understood.
            let version = axum::http::HeaderValue::from_static("13");
            response
                .headers_mut()
                .insert("sec-websocket-version", version);
            response
        }
    }
}

async fn serve(state: Arc<AppState>, socket: UpgradeFut) {
    let socket = match socket.await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::debug!("WebSocket upgrade failed: {error}");
            return;
        }
    };
    let Some(upgraded) = server::upgraded_socket(socket.into_inner().into_inner()) else {
        tracing::error!("a WebSocket connection not accepted by protocol::serve: closing it");
        return;
    };
    upgraded
        .serve(move |stream, early, seat| session(state, stream, early, seat))
        .await;
}

/// Serve a WebSocket session on its seat's thread: read its messages, process each
/// in a task of its own, write the replies in order. Between two messages it may
/// stop to move to a thread with more time to spare: once every reply so far is
/// written, it returns the socket and the bytes read past the last message.
async fn session(state: Arc<AppState>, stream: TcpStream, early: Bytes, mut seat: Seat) -> Moving {
    let (read, write, pacer) = coalesce::coalesced(stream, early);
    let (replies, pending) = mpsc::channel::<Pending>(IN_FLIGHT);
    let (pongs, pinged) = mpsc::channel::<Bytes>(PINGS_WAITING);
    let writer = tokio::spawn(write_replies(write, pending, pinged));
    let mut reader = Reader {
        frames: Frames::new(read, MAX_MESSAGE),
        piece: PIECE,
        rest_of_frame: None,
        replies,
        pongs,
        pacer,
        violation: None,
        gone: false,
        text: None,
    };
    let held = HeldInput::new(HELD_PER_CONNECTION);
    let kept = Arc::new(Semaphore::new(REPLIES_IN_MEMORY as usize));
    // Cancelled once the connection is gone: its objects' transforms stop.
    let abandoned = CancellationToken::new();
    let mut moving = None;
    loop {
        // A frame read in pieces is whole by now; the check keeps it so.
        if reader.rest_of_frame.is_none()
            && let Some(better) = seat.better()
        {
            state.metrics.ws_session_moved();
            moving = Some(better);
            break;
        }
        reader.pacer.begin();
        // A control message is a few hundred bytes of JSON; one too long to hold
        // cannot be parsed, nor skipped, since whether data follows it is in it.
        let control = match reader.message(HOLD_AT_MOST).await {
            Some(Message::Whole(control)) => control,
            Some(Message::Begun(_)) => {
                let what = format!("a control message over {HOLD_AT_MOST} bytes, not held");
                reader.violated::<()>(MESSAGE_TOO_BIG, what);
                break;
            }
            None => break,
        };
        let mut feed = None;
        let reply = match Control::parse(&control) {
            Ok(control) if control.expects_data() => {
                let Some(message) = reader.message(HOLD_AT_MOST).await else {
                    break;
                };
                let length = match &message {
                    Message::Whole(data) => data.len(),
                    Message::Begun(start) => start.iter().map(Bytes::len).sum(),
                };
                // The connection's share first: one waiting on its own holds none of
                // the others'.
                let own = held.take(length).await;
                let share = state.held_input.take(length).await;
                let input = match message {
                    Message::Whole(data) => Input::Data(data, share),
                    Message::Begun(start) => {
                        let (sender, rest) = mpsc::channel(FEED_DEPTH);
                        feed = Some(sender);
                        Input::Streamed(streamed(start, rest), share)
                    }
                };
                let (state, kept, abandoned) = (state.clone(), kept.clone(), abandoned.clone());
                Pending::Running(tokio::spawn(async move {
                    let reply = process(state.clone(), control, input, abandoned).await;
                    drop(own);
                    keep(&state, &kept, reply).await
                }))
            }
            Ok(control) => {
                let (state, kept, abandoned) = (state.clone(), kept.clone(), abandoned.clone());
                Pending::Running(tokio::spawn(async move {
                    let reply = process(state.clone(), control, Input::Fqn, abandoned).await;
                    keep(&state, &kept, reply).await
                }))
            }
            Err(error) => {
                tracing::warn!("{error}");
                // Its data message, if it has one, is read past: one reply per request.
                if error.data_follows {
                    match reader.message(HOLD_AT_MOST).await {
                        Some(Message::Whole(_)) => {}
                        // Skipped to its end below: nothing reads what is fed.
                        Some(Message::Begun(_)) => feed = Some(mpsc::channel(1).0),
                        None => break,
                    }
                }
                Pending::Ready(Reply::Text(error.to_string()))
            }
        };
        if reader.replies.send(reply).await.is_err() {
            break;
        }
        // The rest of a message too long to hold, read as its transform takes it (its
        // reply's place is already kept).
        if let Some(feed) = feed
            && !reader.feed(feed).await
        {
            break;
        }
        reader.pacer.end();
    }
    let Reader {
        frames,
        replies,
        violation,
        gone,
        ..
    } = reader;
    // Nobody is left to read the replies owed: their guests stop at their next
    // epoch tick rather than run to their deadlines, and those waiting for their
    // turn never begin. Otherwise answer what was received before the peer's close
    // (or a violation, or the session's move). Then stop.
    if gone {
        abandoned.cancel();
    }
    if let Some(code) = violation {
        let close = Bytes::copy_from_slice(&code.to_be_bytes());
        let _ = replies
            .send(Pending::Ready(Reply::Control(OpCode::Close, close)))
            .await;
    }
    drop(replies);
    let write = writer.await.ok().flatten();
    let seat = moving?;
    let (read, ahead) = frames.into_parts();
    let (read, early) = read.into_parts();
    let stream = match read.reunite(write?) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!("cannot move a WebSocket session: {error}");
            return None;
        }
    };
    let mut unread = ahead;
    unread.extend_from_slice(&early);
    Some((stream, unread.freeze(), seat))
}

/// Writes the replies in order. Those already finished go out in one write, sent as
/// soon as the next would have to be waited for; nothing follows a close frame. A
/// ping is answered at once, between two replies, rather than behind the replies
/// still being worked out (RFC 6455 §5.5.2: as soon as is practical). Returns the
/// socket if the replies ended without a close frame or an error.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut socket: W,
    mut pending: mpsc::Receiver<Pending>,
    mut pinged: mpsc::Receiver<Bytes>,
) -> Option<W> {
    let mut out = Outgoing::default();
    let mut next = None;
    loop {
        let reply = match next.take() {
            Some(reply) => reply,
            None => match answering(&mut socket, &mut out, &mut pinged, pending.recv()).await? {
                Some(reply) => reply,
                None => break,
            },
        };
        let kept = answering(&mut socket, &mut out, &mut pinged, reply.reply()).await?;
        let closing = out.push(kept);
        let following = if closing {
            None
        } else {
            pending.try_recv().ok()
        };
        if let Some(reply) = &following
            && reply.is_ready()
            && out.has_room()
        {
            next = following;
            continue;
        }
        out.sent(&mut socket).await?;
        if closing {
            return None;
        }
        next = following;
    }
    // Pings the reader passed on last, before it stopped.
    while let Ok(payload) = pinged.try_recv() {
        out.push(Kept(Reply::Control(OpCode::Pong, payload), None));
    }
    out.sent(&mut socket).await?;
    Some(socket)
}

/// What `until` resolves to; meanwhile each ping is answered at once, with the
/// replies gathered so far. `None` once a write fails.
async fn answering<W: AsyncWrite + Unpin, T>(
    socket: &mut W,
    out: &mut Outgoing,
    pinged: &mut mpsc::Receiver<Bytes>,
    until: impl Future<Output = T>,
) -> Option<T> {
    let mut until = std::pin::pin!(until);
    loop {
        tokio::select! {
            biased;
            value = &mut until => return Some(value),
            Some(payload) = pinged.recv() => {
                out.push(Kept(Reply::Control(OpCode::Pong, payload), None));
                out.sent(socket).await?;
            }
        }
    }
}

/// Frames of finished replies, to go out in one write: each header beside its
/// payload, which is never copied into a write buffer. A reply held in a file goes
/// last, and ends the write.
#[derive(Default)]
struct Outgoing {
    frames: Vec<([u8; MAX_SERVER_HEADER], usize, Bytes)>,
    bytes: usize,
    file: Option<HeldFile>,
    /// The memory the frames' replies take, given back once they are written.
    kept: Vec<OwnedSemaphorePermit>,
}

/// A reply held in a file is read and sent in pieces of this length, one frame each.
const FILE_PIECE: u64 = 1 << 20;

impl Outgoing {
    /// Adds a reply's frames; `true` for a close frame, after which nothing may be
    /// sent (RFC 6455 §5.5.1).
    fn push(&mut self, Kept(reply, kept): Kept) -> bool {
        self.kept.extend(kept);
        match reply {
            Reply::Binary(chunks) if chunks.is_empty() => {
                self.frame(true, OpCode::Binary, Bytes::new());
            }
            Reply::Binary(chunks) => {
                let last = chunks.len() - 1;
                for (i, chunk) in chunks.into_iter().enumerate() {
                    let opcode = if i == 0 {
                        OpCode::Binary
                    } else {
                        OpCode::Continuation
                    };
                    self.frame(i == last, opcode, chunk);
                }
            }
            Reply::Spilled(file) => self.file = Some(file),
            Reply::Text(text) => self.frame(true, OpCode::Text, text.into()),
            Reply::Control(opcode, payload) => {
                self.frame(true, opcode, payload);
                return opcode == OpCode::Close;
            }
        }
        false
    }

    fn frame(&mut self, fin: bool, opcode: OpCode, payload: Bytes) {
        let (header, size) = frames::server_header(fin, opcode, payload.len());
        self.bytes += size + payload.len();
        self.frames.push((header, size, payload));
    }

    /// Whether another reply may join the write.
    fn has_room(&self) -> bool {
        self.bytes < WRITE_AT_ONCE && self.frames.len() < FRAMES_AT_ONCE && self.file.is_none()
    }

    /// [`Outgoing::send`]; `None` once a write failed, the connection's end logged.
    async fn sent<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> Option<()> {
        match self.send(socket).await {
            Ok(()) => Some(()),
            Err(error) => {
                tracing::debug!("WebSocket connection ended: {error}");
                None
            }
        }
    }

    /// Writes the frames, then the reply held in a file, and forgets them.
    async fn send<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> io::Result<()> {
        self.write_frames(socket).await?;
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let (len, mut sent) = (file.size(), 0);
        while sent < len {
            let piece = (len - sent).min(FILE_PIECE);
            let buffer;
            (file, buffer) = file.read(piece).await?;
            let opcode = match sent {
                0 => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            sent += piece;
            self.frame(sent == len, opcode, buffer.into());
            self.write_frames(socket).await?;
        }
        Ok(())
    }

    async fn write_frames<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> io::Result<()> {
        let mut slices: Vec<IoSlice> = (self.frames.iter())
            .flat_map(|(header, size, payload)| {
                [IoSlice::new(&header[..*size]), IoSlice::new(payload)]
            })
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match socket.write_vectored(rest).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                written => IoSlice::advance_slices(&mut rest, written),
            }
        }
        drop(slices);
        self.frames.clear();
        self.kept.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// The connection's reading side. gorilla fragments a message into frames of about
/// 4 KiB; they are joined here, into one buffer sized from the connection's recent
/// requests, or passed on one by one once a message is too long to hold. A ping's
/// pong goes to the writer at once; a close's answer is queued behind the replies
/// owed before it.
struct Reader<S> {
    frames: Frames<S>,
    /// Frames longer than this are read in pieces this long (`PIECE`).
    piece: usize,
    /// What is left of a frame read in pieces, its header not on the wire.
    rest_of_frame: Option<Header>,
    replies: mpsc::Sender<Pending>,
    /// The payloads of pings, for the writer to answer.
    pongs: mpsc::Sender<Bytes>,
    /// Told of every frame and request, so that the socket wakes the reader once a
    /// request is likely whole.
    pacer: Pacer,
    /// The close code owed to a peer that broke the protocol: the connection's last
    /// frame, after the replies owed before it (RFC 6455 §7.1.7).
    violation: Option<u16>,
    /// The connection ended without a close frame, as a target closes it (§4.4):
    /// nobody is left to read the replies owed.
    gone: bool,
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
enum Message {
    Whole(Bytes),
    Begun(Vec<Bytes>),
}

impl<S: AsyncRead + Unpin> Reader<S> {
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
    async fn message(&mut self, hold: usize) -> Option<Message> {
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
    fn violated<T>(&mut self, code: u16, what: impl std::fmt::Display) -> Option<T> {
        tracing::warn!("a WebSocket peer broke the protocol: {what}; closing the connection");
        self.violation = Some(code);
        None
    }

    /// The rest of a begun message into `feed`, frame by frame as it arrives; `false`
    /// when the connection ended or broke the framing first. Once `feed` is closed
    /// (the transform stopped reading), frames are skipped to the message's end,
    /// where the next request starts.
    async fn feed(&mut self, feed: mpsc::Sender<Fed>) -> bool {
        loop {
            let frame = match self.data_frame().await {
                Some(frame) if frame.opcode == OpCode::Continuation => frame,
                Some(_) => {
                    self.out_of_sequence::<()>();
                    return false;
                }
                None => return false,
            };
            let Some(piece) = self.payload(&frame).await else {
                return false;
            };
            if let Some(check) = &mut self.text
                && !(check.piece(&piece) && (!frame.fin || check.end()))
            {
                // Its transform reads an error, not an end.
                self.violated::<()>(NOT_UTF8, "a TEXT message that is not UTF-8");
                return false;
            }
            if frame.fin {
                self.text = None;
            }
            let _ = feed
                .send(Fed {
                    piece,
                    fin: frame.fin,
                })
                .await;
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
struct Fed {
    piece: Bytes,
    fin: bool,
}

/// A begun message as a body: its start, then the rest as it is fed. It ends only
/// with the message's last frame: a feed that stops before it (the connection broke,
/// the reader was dropped) is an error, never an end, or a truncated object would
/// pass for a whole one.
fn streamed(head: Vec<Bytes>, rest: mpsc::Receiver<Fed>) -> BoxStream<'static, io::Result<Bytes>> {
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

async fn process(
    state: Arc<AppState>,
    control: Control,
    input: Input,
    abandoned: CancellationToken,
) -> Reply {
    let in_flight = state.metrics.in_flight();
    let path = control.path;
    let pipeline = match pipeline::parse(&control.pipeline) {
        Ok(pipeline) => pipeline,
        Err(error) => return Reply::Text(error.to_string()),
    };
    let source = match input {
        Input::Data(data, share) => Source::Bytes(data, share),
        Input::Streamed(body, share) => Source::Body {
            body: Some(body),
            length: None,
            share,
        },
        Input::Fqn => Source::fqn(&state.fqn_policy, &control.fqn, state.target.clone()),
    };
    let mut job = Job {
        forward_path: pipeline::escape_path(&path),
        object: ObjectRequest {
            log: LogScope::new(&state.name, Transport::Ws.as_str()),
            path: String::from_utf8_lossy(&path).into_owned(),
            args: control.etl_args.trim().to_string(),
            deadline: None,
            abandoned,
        },
        source,
        pipeline,
        bytes_in: 0,
    };
    let Some(etl) = state.etl.load_full() else {
        return Reply::Text("Transform error: the component is still loading".into());
    };
    let started = std::time::Instant::now();
    let limit = etl.transform.limits().max_output;
    let held = || Held::new(limit, &state.reply_space);
    let result = reply(etl.process(&mut job).await, held).await;
    state.metrics.object(
        in_flight,
        Transport::Ws,
        result.as_ref().map(drop),
        job.bytes_in,
        started.elapsed(),
    );
    match result {
        Ok(message) => {
            let sent = match &message {
                Reply::Binary(chunks) => chunks.iter().map(|c| c.len() as u64).sum(),
                Reply::Spilled(file) => file.size(),
                // A direct put's delivered byte count.
                Reply::Text(count) => count.parse().unwrap_or(0),
                Reply::Control(..) => 0,
            };
            state.metrics.bytes_out(Transport::Ws, sent);
            message
        }
        // Nobody reads it, and a guest it stopped was logged by the runtime.
        Err(EtlError::Transform(ObjectError::Abandoned)) => Reply::Text(String::new()),
        Err(error) => error_reply(&job.object, error),
    }
}

/// A finished reply, kept in memory until it is written while its connection's
/// replies there are within `REPLIES_IN_MEMORY`, else in a temporary file within
/// --reply-space. With no room on disk either it stays in memory: waiting for room
/// could wait for replies queued behind it.
async fn keep(state: &AppState, budget: &Arc<Semaphore>, reply: Reply) -> Kept {
    let Reply::Binary(chunks) = reply else {
        return Kept(reply, None);
    };
    let size = chunks.iter().map(Bytes::len).sum::<usize>();
    let share = size.min(REPLIES_IN_MEMORY as usize) as u32;
    if let Ok(permit) = budget.clone().try_acquire_many_owned(share) {
        return Kept(Reply::Binary(chunks), Some(permit));
    }
    let mut file = Held::in_file(&state.reply_space);
    for chunk in &chunks {
        if file.push(chunk.clone()).await.is_err() {
            return Kept(Reply::Binary(chunks), None);
        }
    }
    match file.finish().await {
        Ok(HeldOutput::File(file)) => Kept(Reply::Spilled(file), None),
        _ => Kept(Reply::Binary(chunks), None),
    }
}

/// A failed request's TEXT diagnostic: the body an HTTP request would get.
fn error_reply(object: &ObjectRequest, error: EtlError) -> Reply {
    let error = HttpError::for_object(object, error);
    Reply::Text(format!("Transform error: {}", error.body))
}

/// §4.4 replies: the object as BINARY; after a direct put, the delivered byte count as
/// TEXT, or the body of the next hop's 200 as BINARY. A reply is held whole: one
/// assembled from a stream goes into a [`Held`] made by `held`.
async fn reply(
    outcome: Result<Outcome, EtlError>,
    held: impl FnOnce() -> Held,
) -> Result<Reply, EtlError> {
    Ok(match outcome? {
        Outcome::Output(Output::Full(bytes)) => Reply::Binary(vec![bytes]),
        Outcome::Output(Output::Stream(call)) => call.gather(held()).await?.into(),
        Outcome::Delivered { length } => Reply::Text(length.to_string()),
        Outcome::Returned { first, mut rest } => {
            let mut held = held();
            held.push(first).await?;
            while let Some(chunk) = rest.next().await {
                held.push(chunk?).await?;
            }
            // Empty too: the last stage's empty output is an empty object for the
            // target to store, where TEXT would count as delivered (§13 Q2).
            held.finish().await?.into()
        }
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    use futures::StreamExt;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
    use tokio::sync::{mpsc, oneshot};

    use super::{
        Fed, Frames, Kept, MAX_MESSAGE, Message, Pacer, Pending, Reader, Reply, Utf8Check,
        streamed, write_replies,
    };

    /// The server's side of a connection, and a client at the other end of an
    /// in-memory pipe.
    struct Connection {
        /// Reads frames over 64 bytes in pieces of 64 (`PIECE`, scaled down).
        reader: Reader<ReadHalf<DuplexStream>>,
        /// What the reader queued for the writer.
        queued: mpsc::Receiver<Pending>,
        /// The pings the reader passed on to be answered.
        pinged: mpsc::Receiver<Bytes>,
        write: WriteHalf<DuplexStream>,
        client: WebSocket<DuplexStream>,
    }

    fn connection() -> Connection {
        let (server, client) = tokio::io::duplex(1 << 16);
        let (read, write) = tokio::io::split(server);
        let (replies, queued) = mpsc::channel(4);
        let (pongs, pinged) = mpsc::channel(4);
        Connection {
            reader: Reader {
                frames: Frames::new(read, MAX_MESSAGE),
                piece: 64,
                rest_of_frame: None,
                replies,
                pongs,
                pacer: Pacer::detached(),
                violation: None,
                gone: false,
                text: None,
            },
            queued,
            pinged,
            write,
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
        reader: &mut Reader<ReadHalf<DuplexStream>>,
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

    /// What the client reads from a writer given `replies`, all finished: each frame
    /// up to a close or the end, and whether nothing followed once the writer ended.
    async fn written(replies: Vec<Reply>) -> (Vec<(bool, OpCode, Vec<u8>)>, bool) {
        let Connection {
            write,
            mut client,
            pinged,
            ..
        } = connection();
        // The close frame as it came, not answered on a pipe already closed.
        client.set_auto_close(false);
        let (queue, pending) = mpsc::channel(replies.len());
        for reply in replies {
            queue.try_send(Pending::Ready(reply)).unwrap();
        }
        drop(queue);
        // Run beside the client: the pipe holds less than some replies. The socket
        // closes when the writer ends.
        let writer = tokio::spawn(async move { drop(write_replies(write, pending, pinged).await) });
        let mut frames = Vec::new();
        loop {
            match client.read_frame().await {
                Ok(frame) if frame.opcode == OpCode::Close => {
                    frames.push((frame.fin, frame.opcode, frame.payload.to_vec()));
                    break;
                }
                Ok(frame) => frames.push((frame.fin, frame.opcode, frame.payload.to_vec())),
                Err(_) => break,
            }
        }
        writer.await.unwrap();
        (frames, client.read_frame().await.is_err())
    }

    #[tokio::test]
    async fn a_ping_is_answered_while_the_reply_owed_before_it_is_worked_out() {
        let Connection {
            write, mut client, ..
        } = connection();
        let (queue, pending) = mpsc::channel(1);
        let (pongs, pinged) = mpsc::channel(1);
        let (finish, finished) = oneshot::channel::<()>();
        let reply = tokio::spawn(async move {
            finished.await.unwrap();
            Kept(Reply::Text("done".into()), None)
        });
        queue.send(Pending::Running(reply)).await.unwrap();
        pongs.send(Bytes::from_static(b"there?")).await.unwrap();
        let writer = tokio::spawn(write_replies(write, pending, pinged));
        let pong = client.read_frame().await.unwrap();
        assert_eq!(
            (pong.opcode, &pong.payload[..]),
            (OpCode::Pong, &b"there?"[..])
        );
        finish.send(()).unwrap();
        let reply = client.read_frame().await.unwrap();
        assert_eq!(
            (reply.opcode, &reply.payload[..]),
            (OpCode::Text, &b"done"[..])
        );
        drop((queue, pongs));
        assert!(
            writer.await.unwrap().is_some(),
            "the socket, once the replies end"
        );
    }

    #[tokio::test]
    async fn a_reply_in_chunks_is_one_message_of_one_frame_per_chunk() {
        let chunks = [&b"one"[..], b"two", b"three"].map(Bytes::from_static);
        let big = vec![7; 70_000];
        let (frames, ended) = written(vec![
            Reply::Binary(chunks.into()),
            Reply::Binary(vec![Bytes::from_static(b"whole")]),
            Reply::Binary(Vec::new()),
            Reply::Text("a diagnostic".into()),
            Reply::Binary(vec![Bytes::from(big.clone())]),
        ])
        .await;
        let expected = [
            (false, OpCode::Binary, &b"one"[..]),
            (false, OpCode::Continuation, b"two"),
            (true, OpCode::Continuation, b"three"),
            (true, OpCode::Binary, b"whole"),
            (true, OpCode::Binary, b""),
            (true, OpCode::Text, b"a diagnostic"),
            (true, OpCode::Binary, &big),
        ]
        .map(|(fin, opcode, payload)| (fin, opcode, payload.to_vec()));
        assert_eq!(frames, expected);
        assert!(ended, "the writer ended with its queue");
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
    async fn nothing_is_written_after_a_close() {
        let (frames, ended) = written(vec![
            Reply::Binary(vec![Bytes::from_static(b"before")]),
            Reply::Control(OpCode::Close, Bytes::from_static(&[0x03, 0xe8])),
            Reply::Binary(vec![Bytes::from_static(b"after")]),
        ])
        .await;
        let expected = [
            (true, OpCode::Binary, b"before".to_vec()),
            (true, OpCode::Close, vec![0x03, 0xe8]),
        ];
        assert_eq!(frames, expected);
        assert!(ended);
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
