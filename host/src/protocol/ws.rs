//! `/ws`: each request is a binary JSON control message, followed by a binary data
//! message unless the control names an FQN (§4.4). Requests on a connection are
//! processed concurrently and answered strictly in order, since the target matches
//! replies to requests by position only.
//!
//! There is no error frame in this protocol. A connection is never closed because
//! one request failed (that would strand every request queued behind it); a failure
//! is answered with a TEXT diagnostic and logged (§13 Q1).

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::control::Control;
use tracing::Instrument;

use super::{AppState, http};
use crate::etl::{EtlError, Job, Outcome, Output};
use crate::metrics::Transport;
use crate::pipeline;
use crate::runtime::ObjectRequest;
use crate::source::Source;

/// The target reads replies of up to 16 GiB, and sends objects as large (§4.4).
const MAX_MESSAGE: usize = 16 << 30;

/// Requests of one connection in progress at once; beyond it the connection is not
/// read, and TCP pushes back on the target.
const IN_FLIGHT: usize = 256;

/// Where a WebSocket request's object is.
enum Input {
    /// In the data message that followed the control message.
    Data(Bytes),
    /// In the file named by the control message's `fqn`.
    Fqn,
}

pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    match upgrade {
        Ok(upgrade) => upgrade
            .max_message_size(MAX_MESSAGE)
            .max_frame_size(MAX_MESSAGE)
            .on_upgrade(move |socket| serve(state, socket)),
        // A plain `GET /ws` is an hpull of the object named "ws".
        Err(_) => http::object(State(state), method, uri, headers, body).await,
    }
}

async fn serve(state: Arc<AppState>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (replies, mut pending) = mpsc::channel::<tokio::task::JoinHandle<Message>>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        let mut next = pending.recv().await;
        while let Some(reply) = next {
            let message = reply
                .await
                .unwrap_or_else(|e| Message::Text(format!("Transform error: {e}").into()));
            if sink.feed(message).await.is_err() {
                break;
            }
            // Replies that are already done go out in the same write; the socket is
            // written as soon as the next one would have to be waited for.
            next = match pending.try_recv() {
                Ok(reply) if reply.is_finished() => Some(reply),
                ready => {
                    if sink.flush().await.is_err() {
                        break;
                    }
                    match ready {
                        Ok(reply) => Some(reply),
                        Err(_) => pending.recv().await,
                    }
                }
            };
        }
    });

    loop {
        let control = match next_data(&mut stream).await {
            Some(bytes) => bytes,
            None => break,
        };
        let reply = match Control::parse(&control) {
            Ok(control) if control.expects_data() => match next_data(&mut stream).await {
                Some(data) => tokio::spawn(process(state.clone(), control, Input::Data(data))),
                None => break,
            },
            Ok(control) => tokio::spawn(process(state.clone(), control, Input::Fqn)),
            Err(error) => {
                tracing::warn!("{error}");
                let text = error.to_string();
                tokio::spawn(async move { Message::Text(text.into()) })
            }
        };
        if replies.send(reply).await.is_err() {
            break;
        }
    }
    // Answer what was received before the connection ended, then stop.
    drop(replies);
    let _ = writer.await;
}

/// The next binary (or text) message's payload; `None` when the connection ends.
/// Pings are answered by the WebSocket layer itself.
async fn next_data(stream: &mut futures::stream::SplitStream<WebSocket>) -> Option<Bytes> {
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Binary(bytes)) => return Some(bytes),
            Ok(Message::Text(text)) => return Some(Bytes::from(text.as_str().to_owned())),
            Ok(Message::Close(_)) => return None,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            // The target closes by dropping the socket, without a close frame (§4.4).
            Err(error) => {
                tracing::debug!("WebSocket connection ended: {error}");
                return None;
            }
        }
    }
    None
}

async fn process(state: Arc<AppState>, control: Control, input: Input) -> Message {
    let _in_flight = state.metrics.in_flight();
    let path = control.path;
    let pipeline = match pipeline::parse(&control.pipeline) {
        Ok(pipeline) => pipeline,
        Err(error) => return Message::Text(error.to_string().into()),
    };
    let source = match input {
        Input::Data(data) => Source::Bytes(data),
        Input::Fqn => Source::fqn(&state.fqn_policy, &control.fqn),
    };
    let job = Job {
        forward_path: pipeline::escape_path(&path),
        object: ObjectRequest {
            path: path.clone(),
            args: control.etl_args.trim().to_string(),
        },
        source,
        pipeline,
        bytes_in: 0,
    };
    let Some(etl) = state.etl.load_full() else {
        return Message::Text("Transform error: the component is still loading".into());
    };
    let span = tracing::info_span!("object", etl = %state.name, transport = "ws", object = %path);
    async {
        let started = std::time::Instant::now();
        let limit = etl.transform.limits().max_output;
        let mut job = job;
        let result = reply(etl.process(&mut job).await, limit).await;
        state.metrics.object(
            Transport::Ws,
            result.as_ref().map(drop),
            job.bytes_in,
            started.elapsed(),
        );
        match result {
            Ok(message) => {
                let sent = match &message {
                    Message::Binary(bytes) => bytes.len() as u64,
                    // A direct put's delivered byte count.
                    Message::Text(count) => count.as_str().parse().unwrap_or(0),
                    _ => 0,
                };
                state.metrics.bytes_out(Transport::Ws, sent);
                message
            }
            Err(error) => error_reply(&path, error),
        }
    }
    .instrument(span)
    .await
}

/// A failed request's TEXT diagnostic: the body an HTTP request would get.
fn error_reply(object: &str, error: EtlError) -> Message {
    let error = super::HttpError::for_object(object, error);
    Message::Text(format!("Transform error: {}", error.body).into())
}

/// §4.4 replies: the object as BINARY; after a direct put, the delivered byte count as
/// TEXT, or the next hop's non-empty body as BINARY. A reply is held whole, so one
/// assembled from a stream is capped at `limit` (`--max-output`).
async fn reply(outcome: Result<Outcome, EtlError>, limit: u64) -> Result<Message, EtlError> {
    Ok(match outcome? {
        Outcome::Output(Output::Full(bytes)) => Message::Binary(bytes),
        Outcome::Output(Output::Stream(stream)) => Message::Binary(stream.collect(limit).await?),
        Outcome::Delivered { length } => Message::Text(length.to_string().into()),
        Outcome::Returned { first, rest } => {
            let mut body = first.to_vec();
            let mut rest = rest.bytes_stream();
            while let Some(chunk) = rest.next().await {
                let chunk = chunk.map_err(|e| {
                    EtlError::DirectPut(crate::sink::PutError::Transient(
                        e.without_url().to_string(),
                    ))
                })?;
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(EtlError::ReplyTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            if body.is_empty() {
                Message::Text("0".into())
            } else {
                Message::Binary(body.into())
            }
        }
    })
}
