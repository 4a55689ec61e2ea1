//! `/ws`: each request is a binary JSON control message, followed by a binary data
//! message unless the control names an FQN (§4.4). Requests on a connection are
//! processed concurrently and answered strictly in order, since the target matches
//! replies to requests by position only. A data message is held whole up to
//! `HOLD_AT_MOST`, or `STREAM_PAST` for a transform that streams long objects; a
//! longer one streams to its transform as it arrives, and so does a frame longer than
//! `PIECE`, piece by piece: what the connection holds does not grow with what the
//! peer announces.
//!
//! There is no error frame in this protocol. A connection is never closed because
//! one request failed (that would strand every request queued behind it); a failure
//! is answered with a TEXT diagnostic and logged (§13 Q1).

use std::io;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fastwebsockets::OpCode;
use fastwebsockets::upgrade::{UpgradeFut, is_upgrade_request};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::frames::MESSAGE_TOO_BIG;
use self::read::{Message, Reader, streamed};
use self::write::write_replies;
use super::control::Control;
use super::server::{self, Moving, Seat};
use super::{AppState, HttpError, http};
use crate::etl::{Etl, EtlError, Job, Outcome, Output};
use crate::held::{Held, HeldFile, HeldOutput};
use crate::metrics::Transport;
use crate::pipeline;
use crate::runtime::{LogScope, ObjectError, ObjectRequest, STREAM_AT_OR_ABOVE};
use crate::source::{HeldInput, Share, Source};

mod coalesce;
mod frames;
mod read;
mod write;

/// A data message that outgrows this before its last frame is not held whole: its
/// transform reads it as it arrives, in constant memory, as §4.4 advises for objects
/// of up to 16 GiB. A held one can be read again, so a failed direct put of its result
/// is retried here; a streamed one cannot (its failure is the TEXT diagnostic).
const HOLD_AT_MOST: usize = 16 << 20;

/// A data message that passes this streams as it arrives to a transform that streams
/// long objects, when its connection has no other data message in flight and no direct
/// put follows (whose retry needs the object held). Its length is not known before its
/// last frame, and holding it whole would make the transform wait for all of it (md5
/// of 1 MiB at concurrency 1: 1.25x the objects/s streamed from here). With others in
/// flight it is held as before: held messages are transformed side by side, where a
/// streamed one would hold the connection's reading to its transform's pace. A shorter
/// message is held, for a buffered call if the transform has one.
const STREAM_PAST: usize = 256 << 10;

/// How much of a data message is held before its transform starts; `held` is its
/// connection's budget of held messages.
fn hold_at_most(state: &AppState, control: &Control, held: &HeldInput) -> usize {
    let streams_long = |etl: &Arc<Etl>| {
        etl.transform
            .shapes()
            .prefers_streaming(Some(STREAM_AT_OR_ABOVE))
    };
    let streams = control.pipeline.is_empty()
        && held.is_untouched()
        && state.etl.load().as_ref().is_some_and(streams_long);
    match streams {
        true => STREAM_PAST,
        false => HOLD_AT_MOST,
    }
}

/// Pieces of a streamed message (of up to 256 KiB, `read::BATCH`) waiting for its
/// transform; beyond them the connection is not read, and TCP pushes back on the
/// target.
const FEED_DEPTH: usize = 4;

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

/// Bytes of finished replies all connections keep in memory until they are written;
/// past them, a reply waits in a temporary file (as past its connection's share).
/// Without it, every connection whose peer reads slowly could hold its own
/// `REPLIES_IN_MEMORY`.
pub const ALL_REPLIES_IN_MEMORY: u32 = 512 << 20;

/// Pings read and not yet answered; beyond them the connection is not read.
const PINGS_WAITING: usize = 16;
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
    /// None: the peer went away, and the object was given up. Nothing more is
    /// written; any reply would say something false (TEXT means delivered), and the
    /// replies behind it cannot go out in their place.
    Abandoned,
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

/// A finished reply, and the shares of its connection's `REPLIES_IN_MEMORY` and of
/// `ALL_REPLIES_IN_MEMORY` it takes until it is written (none when it holds no data
/// in memory).
struct Kept(Reply, Option<[OwnedSemaphorePermit; 2]>);

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
    let mut reader = Reader::new(read, replies, pongs, pacer);
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
                let Some(message) = reader.message(hold_at_most(&state, &control, &held)).await
                else {
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
                Reply::Control(..) | Reply::Abandoned => 0,
            };
            state.metrics.bytes_out(Transport::Ws, sent);
            message
        }
        // Nobody reads it, and a guest it stopped was logged by the runtime.
        Err(EtlError::Transform(ObjectError::Abandoned)) => Reply::Abandoned,
        Err(error) => error_reply(&job.object, error),
    }
}

/// A finished reply, kept in memory until it is written while its connection's
/// replies there are within `REPLIES_IN_MEMORY` and all connections' within
/// `ALL_REPLIES_IN_MEMORY`, else in a temporary file within --reply-space. With no
/// room on disk either it stays in memory: waiting for room could wait for replies
/// queued behind it.
async fn keep(state: &AppState, budget: &Arc<Semaphore>, reply: Reply) -> Kept {
    let Reply::Binary(chunks) = reply else {
        return Kept(reply, None);
    };
    let size = chunks.iter().map(Bytes::len).sum::<usize>();
    let share = size.min(REPLIES_IN_MEMORY as usize) as u32;
    let all = &state.ws_replies_in_memory;
    if let Ok(own) = budget.clone().try_acquire_many_owned(share)
        && let Ok(all) = all.clone().try_acquire_many_owned(share)
    {
        return Kept(Reply::Binary(chunks), Some([own, all]));
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
