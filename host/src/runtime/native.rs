//! Built-in native transforms: the same algorithms as `examples/echo`, `md5` and
//! `upper`, compiled into the host. They are the baseline the benchmarks measure
//! WebAssembly against (`ais-wasm serve --native`), behind exactly the same server
//! code; they are not a way to deploy transforms.

use bytes::Bytes;
use md5::Digest;
use tokio::sync::mpsc;

use super::error::ObjectError;
use super::host_io::InputStream;
use super::transform::Shapes;

/// Chunk size of the streaming baseline, as `aistore_etl::Input::CHUNK`.
const CHUNK: u32 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeTransform {
    /// Returns the object unchanged (both shapes, as `examples/echo`).
    Echo,
    /// The object's MD5 digest, 32 lowercase hex characters (both shapes, as
    /// `examples/md5`).
    Md5,
    /// ASCII upper-case, 256 KiB chunks (streaming).
    Upper,
}

impl NativeTransform {
    pub(crate) fn shapes(self) -> Shapes {
        Shapes {
            buffered: self != NativeTransform::Upper,
            streaming: true,
        }
    }

    pub(crate) fn buffered(self, data: &[u8]) -> Vec<u8> {
        match self {
            NativeTransform::Echo => data.to_vec(),
            NativeTransform::Md5 => hex::encode(md5::Md5::digest(data)).into_bytes(),
            NativeTransform::Upper => data.to_ascii_uppercase(),
        }
    }

    pub(crate) async fn streaming(
        self,
        mut input: InputStream,
        output: mpsc::Sender<Bytes>,
    ) -> Result<u64, ObjectError> {
        let send = async |chunk: Vec<u8>| {
            (output.send(chunk.into()).await)
                .map_err(|_| ObjectError::Output(super::host_io::receiver_gone()))
        };
        let mut md5 = md5::Md5::new();
        let mut written = 0;
        loop {
            let mut chunk = input.read(CHUNK).await.map_err(ObjectError::Input)?;
            if chunk.is_empty() {
                break;
            }
            match self {
                NativeTransform::Echo => {}
                NativeTransform::Md5 => {
                    md5.update(&chunk);
                    continue;
                }
                NativeTransform::Upper => chunk.make_ascii_uppercase(),
            }
            written += chunk.len() as u64;
            send(chunk).await?;
        }
        if self == NativeTransform::Md5 {
            let digest = hex::encode(md5.finalize()).into_bytes();
            written += digest.len() as u64;
            send(digest).await?;
        }
        Ok(written)
    }
}
