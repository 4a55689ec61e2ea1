//! The host side of `aistore:etl/host-io`: the object's bytes flow into the guest
//! through an [`InputStream`] and out through an [`OutputStream`], both lent to the
//! guest as borrows for one call.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use wasmtime::component::Resource;

use super::bindings::aistore::etl::host_io::{Host, HostReader, HostWriter};
use super::bindings::aistore::etl::types;
use super::error::HostIoError;
use super::instance::GuestCtx;

/// Largest read the host serves in one call, whatever the guest asks for: the buffer
/// is allocated on the host, so its size must not be the guest's choice.
pub const MAX_READ: u32 = 1024 * 1024;

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
        let mut buf = Vec::with_capacity(max);
        // One `read` may return little (a small network frame); fill up to `max` or
        // the end so the guest sees few, large chunks.
        while buf.len() < max {
            let n = (&mut self.reader)
                .take((max - buf.len()) as u64)
                .read_buf(&mut buf)
                .await?;
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
}

impl types::Host for GuestCtx {}

impl Host for GuestCtx {}

impl HostReader for GuestCtx {
    async fn read(&mut self, input: Resource<InputStream>, max: u32) -> wasmtime::Result<Vec<u8>> {
        let input = self.table.get_mut(&input)?;
        input
            .read(max)
            .await
            .map_err(|e| wasmtime::Error::new(HostIoError::Input(e)))
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
        output.written += data.len() as u64;
        output.sender.send(Bytes::from(data)).await.map_err(|_| {
            wasmtime::Error::new(HostIoError::Output(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the receiver of the output went away",
            )))
        })
    }

    async fn drop(&mut self, output: Resource<OutputStream>) -> wasmtime::Result<()> {
        self.table.delete(output)?;
        Ok(())
    }
}
