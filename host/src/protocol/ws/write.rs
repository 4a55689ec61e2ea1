//! A WebSocket connection's writing side: replies in the order their requests came,
//! finished ones gathered into one write, pings answered between them.

use std::io::{self, IoSlice};

use bytes::Bytes;
use fastwebsockets::OpCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::frames::{self, MAX_SERVER_HEADER};
use super::{Kept, Pending, Reply};
use crate::held::HeldFile;

/// Finished replies go out together, each frame's header beside its payload in one
/// writev, until this many bytes are gathered; a reply is never split across writes
/// for it.
const WRITE_AT_ONCE: usize = 1 << 20;

/// And until this many frames: a header and a payload each, within a writev's 1024
/// buffers (IOV_MAX).
const FRAMES_AT_ONCE: usize = 512;

/// Writes the replies in order. Those already finished go out in one write, sent as
/// soon as the next would have to be waited for; nothing follows a close frame. A
/// ping is answered at once, between two replies, rather than behind the replies
/// still being worked out (RFC 6455 §5.5.2: as soon as is practical). Returns the
/// socket if the replies ended without a close frame or an error.
pub(super) async fn write_replies<W: AsyncWrite + Unpin>(
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
    /// sent (RFC 6455 §5.5.1), and for an abandoned reply, which ends the writing.
    fn push(&mut self, Kept(reply, kept): Kept) -> bool {
        self.kept.extend(kept.into_iter().flatten());
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
            Reply::Abandoned => return true,
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fastwebsockets::{OpCode, Role, WebSocket};
    use tokio::io::DuplexStream;
    use tokio::sync::{mpsc, oneshot};

    use super::{Kept, Pending, Reply, write_replies};

    /// The server's side of an in-memory pipe, and a client at its other end.
    fn connection() -> (DuplexStream, WebSocket<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1 << 16);
        (server, WebSocket::after_handshake(client, Role::Client))
    }

    /// What the client reads from a writer given `replies`, all finished: each frame
    /// up to a close or the end, and whether nothing followed once the writer ended.
    async fn written(replies: Vec<Reply>) -> (Vec<(bool, OpCode, Vec<u8>)>, bool) {
        let (write, mut client) = connection();
        let (_, pinged) = mpsc::channel(1);
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
        let (write, mut client) = connection();
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

    #[tokio::test]
    async fn nothing_is_written_from_an_abandoned_reply_on() {
        let (frames, ended) = written(vec![
            Reply::Binary(vec![Bytes::from_static(b"before")]),
            Reply::Abandoned,
            Reply::Binary(vec![Bytes::from_static(b"after")]),
        ])
        .await;
        assert_eq!(frames, [(true, OpCode::Binary, b"before".to_vec())]);
        assert!(ended);
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
}
