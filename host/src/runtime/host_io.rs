//! The host side of `aistore:etl/host-io`: the object's bytes flow into the guest
//! through an [`InputStream`] and out through an [`OutputStream`], both lent to the
//! guest as borrows for one call.

use std::io;

use bytes::Bytes;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use wasmtime::component::Resource;

use super::bindings::aistore::etl::host_io::{Host, HostReader, HostWriter};
use super::bindings::aistore::etl::types;
use super::error::HostIoError;
use super::instance::GuestCtx;

/// Largest read the host serves in one call, whatever the guest asks for: the buffer
/// is allocated on the host, so its size must not be the guest's choice.
const MAX_READ: u32 = 1024 * 1024;

/// Why a write of output failed: whoever took it (a client, a next hop) is gone.
pub(super) fn receiver_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the receiver of the output went away",
    )
}

/// The largest chunk of output queued at once: the SDKs' own chunk.
const WRITE_PIECE: usize = 256 * 1024;

/// How much a read waits for (or the end) before it hands the guest what has come.
const WAIT_FOR: usize = 64 * 1024;

/// The object's content, as the guest reads it.
pub struct InputStream {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    size_hint: Option<u64>,
}

impl InputStream {
    /// `size_hint` is the total length when known (Content-Length, file size).
    pub fn new(reader: impl AsyncRead + Send + Unpin + 'static, size_hint: Option<u64>) -> Self {
        InputStream {
            reader: Box::new(reader),
            size_hint,
        }
    }

    pub(crate) async fn read(&mut self, max: u32) -> io::Result<Vec<u8>> {
        let max = max.clamp(1, MAX_READ) as usize;
        let wait_for = WAIT_FOR.min(max);
        let mut buf = Vec::with_capacity(max);
        // One `read` may return little (a small network frame): wait for `wait_for`
        // bytes or the end, so the guest sees few, large chunks; beyond that take
        // only what is ready, so a source that trickles in is not held up until
        // `max` has come.
        while buf.len() < max {
            let filled = buf.len();
            let mut limited = (&mut self.reader).take((max - filled) as u64);
            let read = limited.read_buf(&mut buf);
            let n = if filled < wait_for {
                read.await?
            } else {
                // Dropping a read that is not ready loses nothing: it had not
                // written into `buf` yet.
                match read.now_or_never() {
                    Some(n) => n?,
                    None => break,
                }
            };
            if n == 0 {
                break;
            }
        }
        Ok(buf)
    }
}

/// Where the guest's output goes: a bounded channel, so a slow receiver makes the
/// guest's `write` wait (backpressure) and memory stays constant.
pub struct OutputStream {
    sender: mpsc::Sender<Bytes>,
    written: u64,
}

impl OutputStream {
    pub fn new(sender: mpsc::Sender<Bytes>) -> Self {
        OutputStream { sender, written: 0 }
    }

    /// Bytes the guest wrote.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Queue one write, in pieces: the queues count chunks, and a write may be as
    /// large as --max-output, so whole writes would let a queue hold that many times
    /// the limit. The pieces share the write's buffer.
    async fn write(&mut self, data: Vec<u8>) -> io::Result<()> {
        self.written += data.len() as u64;
        let data = Bytes::from(data);
        for start in (0..data.len()).step_by(WRITE_PIECE) {
            let piece = data.slice(start..data.len().min(start + WRITE_PIECE));
            self.sender.send(piece).await.map_err(|_| receiver_gone())?;
        }
        Ok(())
    }
}

impl types::Host for GuestCtx {}

impl Host for GuestCtx {}

impl HostReader for GuestCtx {
    async fn read(&mut self, input: Resource<InputStream>, max: u32) -> wasmtime::Result<Vec<u8>> {
        self.reading = true;
        let read = self.table.get_mut(&input)?.read(max).await;
        self.reading = false;
        read.map_err(|e| wasmtime::Error::new(HostIoError::Input(e)))
    }

    async fn size_hint(&mut self, input: Resource<InputStream>) -> wasmtime::Result<Option<u64>> {
        Ok(self.table.get(&input)?.size_hint)
    }

    async fn drop(&mut self, input: Resource<InputStream>) -> wasmtime::Result<()> {
        self.table.delete(input)?;
        Ok(())
    }
}

impl HostWriter for GuestCtx {
    async fn write(
        &mut self,
        output: Resource<OutputStream>,
        data: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let output = self.table.get_mut(&output)?;
        (output.write(data).await).map_err(|e| wasmtime::Error::new(HostIoError::Output(e)))
    }

    async fn drop(&mut self, output: Resource<OutputStream>) -> wasmtime::Result<()> {
        self.table.delete(output)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_read_waits_for_64_kib_then_takes_only_what_is_ready() {
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        let mut input = InputStream::new(reader, None);
        // A trickle: the read waits for 64 KiB, across writes.
        let trickle = tokio::spawn(async move {
            for _ in 0..4 {
                writer.write_all(&[1; 20_000]).await.unwrap();
                tokio::task::yield_now().await;
            }
            writer
        });
        let first = input.read(MAX_READ).await.unwrap();
        assert!(
            first.len() >= WAIT_FOR && first.len() <= 80_000,
            "{}",
            first.len()
        );
        let mut writer = trickle.await.unwrap();
        // More than 64 KiB ready at once: all of it, up to the guest's `max`.
        writer.write_all(&[2; 300_000]).await.unwrap();
        let rest = 80_000 - first.len();
        let second = input.read(256 * 1024).await.unwrap();
        assert_eq!(second.len(), 256 * 1024);
        assert!(second[..rest].iter().all(|&b| b == 1) && second[rest..].iter().all(|&b| b == 2));
        // The end: what is left, then nothing.
        drop(writer);
        let third = input.read(MAX_READ).await.unwrap();
        assert_eq!(third.len(), 80_000 + 300_000 - first.len() - second.len());
        assert!(input.read(MAX_READ).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_large_write_is_queued_in_pieces() {
        let (sender, mut receiver) = mpsc::channel(1);
        let mut output = OutputStream::new(sender);
        let written = tokio::spawn(async move {
            output.write(vec![7; 600 << 10]).await.unwrap();
            output.write(Vec::new()).await.unwrap();
            output.written()
        });
        let mut pieces = Vec::new();
        while let Some(piece) = receiver.recv().await {
            assert!(piece.iter().all(|&b| b == 7));
            pieces.push(piece.len());
        }
        assert_eq!(pieces, [256 << 10, 256 << 10, 88 << 10]);
        assert_eq!(written.await.unwrap(), 600 << 10);
    }
}
