//! A result held whole before it is sent: a WebSocket reply, which cannot begin
//! before its transform has succeeded (a failure must still be a TEXT diagnostic, not
//! half an object). Held in memory up to a bound, then in an unlinked temporary file,
//! within the disk space that every held result shares, so that a reply of any size
//! takes bounded memory and replies together take bounded disk.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

/// The bytes of a held result kept in memory; beyond them it goes to a temporary
/// file.
pub const HELD_IN_MEMORY: u64 = 16 << 20;

/// Once a held result is in a file, what follows is written in batches of this size:
/// a trip to the blocking pool for each, and no more in memory.
const SPILL_BATCH: u64 = 1 << 20;

/// Chunks smaller than this are joined with their neighbours.
const JOIN_BELOW: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    /// Outgrew `--max-output` with no file to take it.
    #[error(
        "the result is larger than {limit} bytes, the most a WebSocket reply may hold in \
         memory; raise ETL_WASM_MAX_OUTPUT (--max-output), or let replies wait on disk (a \
         writable TMPDIR and ETL_WASM_REPLY_SPACE above 0)"
    )]
    TooLarge { limit: u64 },
    /// The files of the replies in progress would outgrow `--reply-space`.
    #[error(
        "the WebSocket replies in progress would take more than {limit} bytes of temporary \
         disk space; raise ETL_WASM_REPLY_SPACE (--reply-space; within the pod's ephemeral storage), send fewer \
         large objects at once, or send objects this large over HTTP"
    )]
    NoSpace { limit: u64 },
    /// Writing the file failed (a full disk, say).
    #[error(
        "the result could not be held in a temporary file: {0}; give the pod space in its \
         temporary directory (TMPDIR)"
    )]
    File(io::Error),
}

/// The temporary disk space that held results may take at once, shared by all of
/// them (`--reply-space`). With none, every result stays in memory.
#[derive(Debug)]
pub struct SpillSpace {
    limit: u64,
    in_use: AtomicU64,
}

impl SpillSpace {
    pub fn new(limit: u64) -> Arc<SpillSpace> {
        Arc::new(SpillSpace {
            limit,
            in_use: AtomicU64::new(0),
        })
    }

    /// Bytes the held results' files take now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Acquire)
    }
}

/// Space taken from a [`SpillSpace`], given back when dropped.
#[derive(Debug)]
struct Reservation {
    space: Arc<SpillSpace>,
    bytes: u64,
}

impl Reservation {
    fn grow(&mut self, bytes: u64) -> Result<(), HeldError> {
        let limit = self.space.limit;
        let taken = self
            .space
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            });
        taken.map_err(|_| HeldError::NoSpace { limit })?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.space.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A result held whole, from a stream. The chunks are kept as they came (a WebSocket
/// reply sends one frame each) rather than copied into one buffer; only runs of small
/// ones (a guest writing a line at a time) are joined, up to `JOIN_BELOW`, so that a
/// frame is worth its header and the peer's read of it. Past `in_memory` bytes the
/// chunks are written to a temporary file on the blocking pool, then every
/// `SPILL_BATCH` bytes, within the [`SpillSpace`]; where no file can be made, they
/// stay in memory, at most `limit` bytes.
pub struct Held {
    chunks: Vec<Bytes>,
    small: BytesMut,
    total: u64,
    limit: u64,
    /// Bytes in `chunks` and `small`, not yet in `file`.
    unwritten: u64,
    in_memory: u64,
    file: Option<File>,
    space: Reservation,
}

/// A held result: its chunks, or the temporary file of one that outgrew memory.
pub enum HeldOutput {
    /// The chunks; none for an empty result.
    Memory(Vec<Bytes>),
    File(HeldFile),
}

/// A held result in its temporary file, read from the start. The file is removed, and
/// its space given back, when this is dropped.
#[derive(Debug)]
pub struct HeldFile {
    file: File,
    size: u64,
    /// Kept for its drop.
    _space: Reservation,
}

impl HeldFile {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next `length` bytes, read on the blocking pool into spare capacity (no
    /// zeroing first); an error if the file holds fewer.
    pub async fn read(self, length: u64) -> io::Result<(HeldFile, Vec<u8>)> {
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buffer = Vec::with_capacity(length as usize);
            match (&self.file).take(length).read_to_end(&mut buffer)? as u64 {
                read if read == length => Ok((self, buffer)),
                _ => Err(io::ErrorKind::UnexpectedEof.into()),
            }
        });
        read.await.unwrap_or_else(|e| Err(io::Error::other(e)))
    }
}

impl Held {
    /// A result held in memory up to [`HELD_IN_MEMORY`] or `limit` (`--max-output`),
    /// whichever is less, then in a file within `space`; in memory up to `limit` where
    /// `space` is none or no file can be made.
    pub fn new(limit: u64, space: &Arc<SpillSpace>) -> Self {
        Held::keeping(limit, HELD_IN_MEMORY, space)
    }

    /// A result that goes to a file from its first byte (a reply to a peer that is
    /// not reading its replies), within `space`; in memory where `space` is none or
    /// no file can be made.
    pub fn in_file(space: &Arc<SpillSpace>) -> Self {
        Held::keeping(u64::MAX, 0, space)
    }

    /// The same as [`Held::new`], kept in memory up to `in_memory` bytes rather than
    /// [`HELD_IN_MEMORY`] (tests use a few bytes).
    fn keeping(limit: u64, in_memory: u64, space: &Arc<SpillSpace>) -> Self {
        let in_memory = match space.limit {
            0 => u64::MAX,
            _ => in_memory.min(limit),
        };
        Held {
            chunks: Vec::new(),
            small: BytesMut::new(),
            total: 0,
            limit,
            unwritten: 0,
            in_memory,
            file: None,
            space: Reservation {
                space: space.clone(),
                bytes: 0,
            },
        }
    }

    pub async fn push(&mut self, chunk: Bytes) -> Result<(), HeldError> {
        self.total += chunk.len() as u64;
        self.unwritten += chunk.len() as u64;
        if chunk.len() >= JOIN_BELOW {
            self.join_small();
            self.chunks.push(chunk);
        } else {
            self.small.extend_from_slice(&chunk);
            if self.small.len() >= JOIN_BELOW {
                self.join_small();
            }
        }
        let batch = match self.file {
            None => self.in_memory,
            Some(_) => SPILL_BATCH,
        };
        if self.unwritten > batch {
            self.spill().await?;
        }
        if self.file.is_none() && self.total > self.limit {
            return Err(HeldError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn join_small(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }

    /// Appends what is in memory to the file, created on first use.
    async fn spill(&mut self) -> Result<(), HeldError> {
        use std::io::Write;
        let mut file = match self.file.take() {
            Some(file) => file,
            None => match tokio::task::spawn_blocking(tempfile::tempfile).await {
                Ok(Ok(file)) => file,
                // A read-only root file system, say: held in memory, within the limit.
                Ok(Err(error)) => {
                    self.in_memory = u64::MAX;
                    static TOLD: std::sync::Once = std::sync::Once::new();
                    TOLD.call_once(|| {
                        tracing::warn!(
                            "cannot create a temporary file ({error}): WebSocket replies are \
                             held in memory, up to ETL_WASM_MAX_OUTPUT; give the pod a writable \
                             TMPDIR"
                        );
                    });
                    return Ok(());
                }
                Err(error) => return Err(HeldError::File(io::Error::other(error))),
            },
        };
        self.space.grow(self.unwritten)?;
        self.join_small();
        let chunks = std::mem::take(&mut self.chunks);
        self.unwritten = 0;
        let written = tokio::task::spawn_blocking(move || {
            chunks.iter().try_for_each(|chunk| file.write_all(chunk))?;
            Ok(file)
        });
        let written = written.await.unwrap_or_else(|e| Err(io::Error::other(e)));
        self.file = Some(written.map_err(HeldError::File)?);
        Ok(())
    }

    pub async fn finish(mut self) -> Result<HeldOutput, HeldError> {
        if self.file.is_none() {
            self.join_small();
            return Ok(HeldOutput::Memory(self.chunks));
        }
        self.spill().await?;
        let mut file = self.file.take().expect("spilled");
        io::Seek::rewind(&mut file).map_err(HeldError::File)?;
        Ok(HeldOutput::File(HeldFile {
            file,
            size: self.total,
            _space: self.space,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::{Held, HeldError, HeldOutput, JOIN_BELOW, SpillSpace};

    fn no_bound() -> Arc<SpillSpace> {
        SpillSpace::new(u64::MAX)
    }

    fn in_memory(held: HeldOutput) -> Vec<Bytes> {
        match held {
            HeldOutput::Memory(chunks) => chunks,
            HeldOutput::File(file) => panic!("{} bytes in a file, not in memory", file.size()),
        }
    }

    async fn in_file(held: HeldOutput) -> Vec<u8> {
        match held {
            HeldOutput::Memory(chunks) => {
                panic!("{} chunks in memory, not in a file", chunks.len())
            }
            HeldOutput::File(file) => {
                let size = file.size();
                file.read(size).await.unwrap().1
            }
        }
    }

    #[tokio::test]
    async fn a_held_result_keeps_large_chunks_and_joins_runs_of_small_ones() {
        let large = vec![b'L'; JOIN_BELOW];
        let line = b"a line\n".to_vec();
        let mut chunks = vec![line.clone(), line.clone(), large.clone()];
        chunks.extend(std::iter::repeat_n(
            line.clone(),
            JOIN_BELOW / line.len() + 1,
        ));
        chunks.extend([Vec::new(), large.clone(), line.clone()]);
        let whole: Vec<u8> = chunks.concat();
        let mut held = Held::keeping(u64::MAX, u64::MAX, &no_bound());
        for chunk in chunks {
            held.push(chunk.into()).await.unwrap();
        }
        let collected = in_memory(held.finish().await.unwrap());
        let sizes: Vec<usize> = collected.iter().map(Bytes::len).collect();
        let run = (JOIN_BELOW / line.len() + 1) * line.len();
        assert_eq!(
            sizes,
            [2 * line.len(), JOIN_BELOW, run, JOIN_BELOW, line.len()]
        );
        assert_eq!(collected.concat(), whole);
        let empty = Held::keeping(0, 0, &no_bound()).finish().await.unwrap();
        assert!(in_memory(empty).is_empty());
    }

    /// Past its memory a result goes to a file, in order, whole; up to it, and at it,
    /// it stays in memory. `--max-output` bounds the memory, not the file.
    #[tokio::test]
    async fn a_held_result_past_its_memory_goes_to_a_file() {
        let chunks: Vec<Vec<u8>> = (0..100u8)
            .map(|i| vec![i; 1 + (i as usize * 7919) % 40_000])
            .collect();
        let whole = chunks.concat();
        let size = whole.len() as u64;
        for (limit, in_memory) in [
            (u64::MAX, size),
            (size, u64::MAX),
            (u64::MAX, size - 1),
            (size - 1, u64::MAX),
            (u64::MAX, 50_000),
            (50_000, u64::MAX),
            (u64::MAX, 1),
        ] {
            let mut held = Held::keeping(limit, in_memory, &no_bound());
            for chunk in &chunks {
                held.push(chunk.clone().into()).await.unwrap();
            }
            match held.finish().await.unwrap() {
                HeldOutput::Memory(kept) => {
                    assert_eq!(in_memory.min(limit), size);
                    assert_eq!(kept.concat(), whole);
                }
                file => {
                    assert!(in_memory.min(limit) < size);
                    let read = in_file(file).await;
                    assert!(
                        read == whole,
                        "memory {in_memory}, limit {limit}: other bytes"
                    );
                }
            }
        }
    }

    /// With no space for files (`--reply-space 0`), or where none can be made, a result
    /// stays in memory and stops at `--max-output`.
    #[tokio::test]
    async fn without_a_file_a_held_result_stops_at_its_limit() {
        let none = SpillSpace::new(0);
        let mut held = Held::keeping(JOIN_BELOW as u64 + 1, 1, &none);
        held.push(vec![b'L'; JOIN_BELOW].into()).await.unwrap();
        assert!(matches!(
            held.push(vec![b'L'; JOIN_BELOW].into()).await,
            Err(HeldError::TooLarge { limit }) if limit == JOIN_BELOW as u64 + 1
        ));
        assert_eq!(none.in_use(), 0);
    }

    /// The files of results held at once stay within their space, and give it back
    /// when dropped, sent or not. Once in a file, a result takes space a batch at a
    /// time.
    #[tokio::test]
    async fn held_results_share_a_bounded_space_and_give_it_back() {
        const MIB: usize = 1 << 20;
        let space = SpillSpace::new(3 * MIB as u64);
        let mut first = Held::keeping(u64::MAX, 1, &space);
        first.push(vec![1; 2 * MIB].into()).await.unwrap();
        assert_eq!(space.in_use(), 2 * MIB as u64);

        let mut second = Held::keeping(u64::MAX, 1, &space);
        second.push(vec![2; MIB / 2].into()).await.unwrap();
        assert_eq!(space.in_use(), (2 * MIB + MIB / 2) as u64);
        assert!(matches!(
            second.push(vec![2; MIB + 1].into()).await,
            Err(HeldError::NoSpace { limit }) if limit == 3 * MIB as u64
        ));
        drop(second);
        assert_eq!(
            space.in_use(),
            2 * MIB as u64,
            "a failed result gives its space back"
        );

        first.push(vec![1; MIB].into()).await.unwrap();
        let file = first.finish().await.unwrap();
        assert_eq!(space.in_use(), 3 * MIB as u64);
        assert!(in_file(file).await == vec![1; 3 * MIB]);
        assert_eq!(space.in_use(), 0, "a sent result gives its space back");

        // A result within memory takes none.
        let mut small = Held::keeping(u64::MAX, 1_000, &space);
        small.push(vec![3; 1_000].into()).await.unwrap();
        assert_eq!(
            in_memory(small.finish().await.unwrap()).concat(),
            [3; 1_000]
        );
        assert_eq!(space.in_use(), 0);
    }
}
