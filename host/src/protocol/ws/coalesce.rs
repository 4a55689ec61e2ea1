//! WebSocket reads woken once per request rather than once per frame.
//!
//! A target sends an object as one message of frames of about 4 KiB, each in its own
//! write, and a reader woken at every arrival wakes several times for one object: at
//! 64 KiB over loopback, 5 times with 9 reads, 80 µs of server CPU per object against
//! 57 µs when woken once. The socket's receive low-water mark (`SO_RCVLOWAT`) makes
//! the kernel hold the wake-up until that many bytes wait. How many bytes a request
//! brings is not said in advance (a message's length is the sum of its frames), so it
//! is guessed: the smallest of the connection's last `RECENT` requests, if at least
//! `COALESCE_FROM`. Bytes short of the mark are read once a wait has lasted
//! `FALLBACK`: the peer is slow, idle between requests, or the request was shorter
//! than guessed, which would otherwise leave it waiting for bytes that never come.
//! After a request shorter than its guess the connection stops guessing for a while,
//! longer at each such miss. Before Linux 4.18, lowering the mark woke no reader for
//! bytes already waiting, so there the reader is woken at every arrival as before.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Sleep;

/// Requests whose lengths make the guess.
const RECENT: usize = 4;

/// Requests shorter than this are not worth a guess: a few frames at most.
const COALESCE_FROM: u64 = 16 << 10;

/// The highest mark: a longer request (a streamed object, say) wakes its reader
/// once per this much.
const MAX_MARK: u64 = 256 << 10;

/// How long a reader waits for a guessed mark: the most a request shorter than its
/// guess is delayed. tokio's timers tick in milliseconds.
const FALLBACK: Duration = Duration::from_millis(1);

/// Requests read without a guess after the first miss; doubled at each further miss,
/// up to `PAUSE << MAX_BACKOFF`.
const PAUSE: u32 = 64;
const MAX_BACKOFF: u32 = 6;

/// Whether the kernel wakes a reader whose mark is lowered below the bytes waiting.
static LOWERED_MARK_WAKES: LazyLock<bool> = LazyLock::new(|| {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    wakes_at_lowered_mark(&release)
});

/// tcp_set_rcvlowat wakes the reader from Linux 4.18 on. An unknown release counts as
/// older.
fn wakes_at_lowered_mark(release: &str) -> bool {
    let mut numbers = release.split(['.', '-']).map(|n| n.trim().parse::<u32>());
    matches!(
        (numbers.next(), numbers.next()),
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) >= (4, 18)
    )
}

/// A connection's socket, its read half woken as the [`Pacer`] guesses.
pub(super) fn coalesced(stream: TcpStream, early: Bytes) -> (Coalesced, OwnedWriteHalf, Pacer) {
    let fd = stream.as_raw_fd();
    let (read, write) = stream.into_split();
    let until = Arc::new(AtomicU64::new(0));
    let coalesced = Coalesced {
        socket: read,
        fd,
        early,
        until: until.clone(),
        read: 0,
        mark: 1,
        fallback: None,
    };
    (coalesced, write, Pacer::new(until, *LOWERED_MARK_WAKES))
}

/// The read half of a WebSocket connection's socket.
pub(super) struct Coalesced {
    socket: OwnedReadHalf,
    fd: RawFd,
    /// Bytes hyper had read past the upgrade request: they come first.
    early: Bytes,
    /// How far into the stream the request in progress is guessed to reach, as the
    /// [`Pacer`] tells it; 0 for no guess.
    until: Arc<AtomicU64>,
    /// Bytes read from the stream so far.
    read: u64,
    /// The low-water mark set on the socket.
    mark: u64,
    /// Ends a wait for a guessed mark.
    fallback: Option<Pin<Box<Sleep>>>,
}

impl Coalesced {
    /// The read half, its low-water mark back at 1 byte, and the bytes from before
    /// the upgrade not yet read.
    pub(super) fn into_parts(mut self) -> (OwnedReadHalf, Bytes) {
        if self.mark != 1 {
            self.set_mark(1);
        }
        (self.socket, self.early)
    }

    fn set_mark(&mut self, mark: u64) {
        let value = libc::c_int::try_from(mark).unwrap_or(libc::c_int::MAX);
        // SAFETY: the descriptor is the open socket `self.socket` holds; the option's
        // value is a c_int, passed with its size. Lowering the mark makes the kernel
        // wake the reader if enough bytes wait already (tcp_set_rcvlowat).
        let set = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set == 0 {
            self.mark = mark;
        } else {
            let error = io::Error::last_os_error();
            tracing::debug!("cannot set a WebSocket connection's SO_RCVLOWAT: {error}");
        }
    }
}

impl AsyncRead for Coalesced {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            this.read += n as u64;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if let Poll::Ready(result) = Pin::new(&mut this.socket).poll_read(cx, buf) {
            this.read += (buf.filled().len() - before) as u64;
            this.fallback = None;
            return Poll::Ready(result);
        }
        let until = this.until.load(Ordering::Relaxed);
        let mark = until.saturating_sub(this.read).clamp(1, MAX_MARK);
        if mark != this.mark {
            this.set_mark(mark);
        }
        if this.mark == 1 {
            this.fallback = None;
            return Poll::Pending;
        }
        let fallback = this
            .fallback
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(FALLBACK)));
        if fallback.as_mut().poll(cx).is_ready() {
            // Whatever waits, or arrives next, wakes the reader; the mark is set again
            // at its next wait.
            this.fallback = None;
            this.set_mark(1);
        }
        Poll::Pending
    }
}

/// Follows a connection's requests through the frames its reader reads, and
/// guesses how far the socket can be read before the reader is woken.
pub(super) struct Pacer {
    /// Where the guess is told to the read half.
    until: Arc<AtomicU64>,
    /// Off where lowering the mark wakes no reader (before Linux 4.18).
    guessing: bool,
    /// Where the reader is in the stream: the frames begun, headers included.
    consumed: u64,
    /// Where the request in progress began.
    start: u64,
    /// The last requests' lengths, headers included; 0 until there were `RECENT`.
    recent: [u64; RECENT],
    next: usize,
    /// The request in progress's guessed length; 0 for none.
    guess: u64,
    /// Requests to go without a guess.
    paused: u32,
    misses: u32,
}

impl Pacer {
    fn new(until: Arc<AtomicU64>, guessing: bool) -> Pacer {
        Pacer {
            until,
            guessing,
            consumed: 0,
            start: 0,
            recent: [0; RECENT],
            next: 0,
            guess: 0,
            paused: 0,
            misses: 0,
        }
    }

    /// A pacer whose guesses go nowhere, for a reader of some other stream.
    #[cfg(test)]
    pub(super) fn detached() -> Pacer {
        Pacer::new(Arc::default(), true)
    }

    /// A frame begins that is this long on the wire, header and payload.
    pub(super) fn frame(&mut self, wire: usize) {
        self.consumed += wire as u64;
    }

    /// How many bytes the request in progress is guessed to bring after the frames
    /// begun so far; 0 without a guess.
    pub(super) fn rest(&self) -> usize {
        let until = self.until.load(Ordering::Relaxed);
        usize::try_from(until.saturating_sub(self.consumed)).unwrap_or(usize::MAX)
    }

    /// The next request begins.
    pub(super) fn begin(&mut self) {
        self.start = self.consumed;
        let smallest = self.recent.iter().copied().min().unwrap_or(0);
        self.guess = if self.paused > 0 {
            self.paused -= 1;
            0
        } else if self.guessing && smallest >= COALESCE_FROM {
            smallest
        } else {
            0
        };
        let until = if self.guess == 0 {
            0
        } else {
            self.start + self.guess
        };
        self.until.store(until, Ordering::Relaxed);
    }

    /// The request in progress has been read to its end.
    pub(super) fn end(&mut self) {
        let length = self.consumed - self.start;
        if length < self.guess {
            self.paused = PAUSE << self.misses.min(MAX_BACKOFF);
            self.misses += 1;
        }
        self.recent[self.next] = length;
        self.next = (self.next + 1) % RECENT;
    }

    /// How far into the stream the request in progress is guessed to reach.
    #[cfg(test)]
    fn until(&self) -> u64 {
        self.until.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::{COALESCE_FROM, PAUSE, Pacer, RECENT};

    /// The rest of a begun request: a control frame, then a data message of `frames`
    /// frames of 4 KiB. Its length on the wire.
    fn read(pacer: &mut Pacer, frames: usize) -> u64 {
        pacer.frame(6 + 200);
        for _ in 0..frames {
            pacer.frame(8 + 4096);
        }
        pacer.end();
        pacer.consumed - pacer.start
    }

    /// A pacer after `RECENT` requests of 64 KiB: guessing.
    fn steady() -> Pacer {
        let mut pacer = Pacer::detached();
        for _ in 0..RECENT {
            pacer.begin();
            read(&mut pacer, 16);
        }
        pacer
    }

    #[tokio::test]
    async fn bytes_read_with_the_upgrade_come_first_and_are_counted() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let early = bytes::Bytes::from_static(b"early, ");
        let (mut read, _write, _pacer) = super::coalesced(server, early);
        client.write_all(b"then the rest").await.unwrap();
        client.shutdown().await.unwrap();
        let mut all = Vec::new();
        read.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"early, then the rest");
        assert_eq!(read.read, all.len() as u64);
    }

    #[test]
    fn marks_are_guessed_from_linux_4_18_on() {
        for (release, guessing) in [
            ("6.18.44-fc-v657", true),
            ("4.18.0-553.el8_10.x86_64", true),
            ("4.17.19", false),
            ("3.10.0-1160.el7.x86_64", false),
            ("", false),
        ] {
            assert_eq!(super::wakes_at_lowered_mark(release), guessing, "{release}");
        }
    }

    #[test]
    fn the_rest_of_a_request_is_what_its_guess_leaves_after_the_frames_begun() {
        let mut pacer = steady();
        pacer.begin();
        let guess = (6 + 200) + 16 * (8 + 4096);
        assert_eq!(pacer.rest(), guess);
        pacer.frame(6 + 200);
        pacer.frame(8 + 4096);
        assert_eq!(pacer.rest(), 15 * (8 + 4096));
        for _ in 0..15 {
            pacer.frame(8 + 4096);
        }
        assert_eq!(pacer.rest(), 0);
        pacer.frame(8 + 4096);
        assert_eq!(pacer.rest(), 0, "past the guess");
    }

    #[test]
    fn the_guess_is_the_smallest_of_the_last_requests() {
        let mut pacer = Pacer::detached();
        let mut lengths = Vec::new();
        for frames in [16, 20, 18, 17, 30] {
            pacer.begin();
            if lengths.len() < RECENT {
                assert_eq!(pacer.until(), 0, "no guess before {RECENT} requests");
            }
            lengths.push(read(&mut pacer, frames));
        }
        pacer.begin();
        let smallest = lengths[lengths.len() - RECENT..].iter().min().unwrap();
        assert_eq!(pacer.until(), pacer.start + smallest);
    }

    #[test]
    fn short_requests_are_not_guessed() {
        let mut pacer = Pacer::detached();
        for _ in 0..RECENT {
            pacer.begin();
            assert!(read(&mut pacer, 3) < COALESCE_FROM);
        }
        pacer.begin();
        assert_eq!(pacer.until(), 0);
    }

    #[test]
    fn a_request_shorter_than_its_guess_stops_the_guessing_for_longer_each_time() {
        let mut pacer = steady();
        for pause in [PAUSE, 2 * PAUSE] {
            pacer.begin();
            assert_ne!(pacer.until(), 0);
            read(&mut pacer, 15);
            for _ in 0..pause {
                pacer.begin();
                assert_eq!(pacer.until(), 0);
                read(&mut pacer, 16);
            }
            // The smallest of the last four is 16 frames again.
            pacer.begin();
            assert_ne!(pacer.until(), 0, "guessing again after {pause} requests");
            read(&mut pacer, 16);
            for _ in 0..RECENT {
                pacer.begin();
                read(&mut pacer, 16);
            }
        }
    }
}
