//! Guest stdout and stderr: forwarded to the host's `tracing` logs line by line and
//! tagged with the object being transformed. Bounded per object and never blocking,
//! so a guest that floods its output slows nothing and fills no disk.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::LogScope;

/// Bytes of guest output logged per object (stdout and stderr together); the rest
/// is counted and dropped.
pub const LOG_BUDGET_PER_OBJECT: usize = 64 * 1024;
/// Lines logged per object: each is a log record, so short lines must not multiply
/// records where the byte budget cannot see it (65,536 empty lines fit in it).
pub const LOG_LINES_PER_OBJECT: usize = 1024;
/// Longest line logged as is; longer ones are cut.
const MAX_LINE: usize = 4 * 1024;
/// How much of the guest's latest stderr is kept to explain a crash.
const STDERR_TAIL: usize = 1024;

/// The output of one instance. Cheap to clone; all clones share state.
#[derive(Clone, Default)]
pub(crate) struct GuestLog {
    state: Arc<Mutex<LogState>>,
}

#[derive(Default)]
struct LogState {
    object: String,
    scope: LogScope,
    logged: usize,
    lines: usize,
    dropped: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stderr_tail: VecDeque<u8>,
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl GuestLog {
    /// Start attributing output to `object` (`<init>` before the first object), its
    /// lines in `scope`.
    pub(crate) fn begin(&self, object: &str, scope: &LogScope) {
        let mut state = self.state.lock().unwrap();
        state.object.clear();
        state.object.push_str(object);
        state.scope = scope.clone();
        state.logged = 0;
        state.lines = 0;
        state.dropped = 0;
        state.stderr_tail.clear();
    }

    /// Flush partial lines of the current object and return its stderr tail.
    pub(crate) fn finish(&self) -> String {
        let mut state = self.state.lock().unwrap();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(state.buffer(stream));
            if !rest.is_empty() {
                state.emit(stream, &rest);
            }
        }
        if state.dropped > 0 {
            tracing::warn!(
                target: "guest",
                parent: state.scope.span(&state.object),
                object = %state.object,
                dropped_bytes = state.dropped,
                "guest output over {LOG_BUDGET_PER_OBJECT} bytes for one object was dropped"
            );
        }
        let tail: Vec<u8> = state.stderr_tail.iter().copied().collect();
        String::from_utf8_lossy(&tail)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// A warning of the host's own about the current object's call.
    pub(crate) fn warn(&self, message: std::fmt::Arguments<'_>) {
        let state = self.state.lock().unwrap();
        let parent = state.scope.span(&state.object);
        tracing::warn!(parent: parent, object = %state.object, "{message}");
    }

    /// The current object's span, for the host's own lines about its call.
    pub(crate) fn span(&self) -> Option<tracing::Id> {
        let state = self.state.lock().unwrap();
        state.scope.span(&state.object)
    }

    pub(crate) fn stdout(&self) -> GuestOutput {
        GuestOutput {
            log: self.clone(),
            stream: Stream::Stdout,
        }
    }

    pub(crate) fn stderr(&self) -> GuestOutput {
        GuestOutput {
            log: self.clone(),
            stream: Stream::Stderr,
        }
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap();
        if let Stream::Stderr = stream {
            state
                .stderr_tail
                .extend(bytes.iter().rev().take(STDERR_TAIL).rev());
            let excess = state.stderr_tail.len().saturating_sub(STDERR_TAIL);
            state.stderr_tail.drain(..excess);
        }
        let room = LOG_BUDGET_PER_OBJECT.saturating_sub(state.logged + state.buffer(stream).len());
        let kept = bytes.len().min(room);
        state.dropped += bytes.len() - kept;
        state.buffer(stream).extend_from_slice(&bytes[..kept]);
        // The lines are emitted where they lie and removed at once: removing each as
        // it went would shift the rest every time (64 KiB of newlines: 2 GB moved).
        let mut buffer = std::mem::take(state.buffer(stream));
        let mut start = 0;
        while let Some(newline) = buffer[start..].iter().position(|&b| b == b'\n') {
            state.emit(stream, &buffer[start..start + newline]);
            start += newline + 1;
        }
        buffer.drain(..start);
        *state.buffer(stream) = buffer;
    }
}

impl LogState {
    fn buffer(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn emit(&mut self, stream: Stream, line: &[u8]) {
        self.logged += line.len() + 1;
        if self.lines == LOG_LINES_PER_OBJECT {
            self.dropped += line.len() + 1;
            return;
        }
        self.lines += 1;
        let line = printable(&line[..line.len().min(MAX_LINE)]);
        tracing::info!(
            target: "guest",
            parent: self.scope.span(&self.object),
            object = %self.object,
            stream = stream.name(),
            "{line}"
        );
    }
}

/// A guest's line as it goes into the log: a CR ending it (CRLF) dropped, other
/// control characters escaped, since a lone CR would let the guest overwrite its
/// line, prefix and all, on a terminal.
fn printable(line: &[u8]) -> String {
    let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
    let mut printable = String::with_capacity(line.len());
    for c in line.chars() {
        match c.is_control() && c != '\t' {
            true => printable.extend(c.escape_default()),
            false => printable.push(c),
        }
    }
    printable
}

/// One of an instance's output streams, as WASI sees it.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    log: GuestLog,
    stream: Stream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: output past the budget is dropped, never waited on.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.log.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_logged_printable() {
        assert_eq!(printable(b"plain\ttab \xc3\xbc\r"), "plain\ttab \u{fc}");
        assert_eq!(
            printable(b"\rERROR forged\x1b[31m\0\xff"),
            "\\rERROR forged\\u{1b}[31m\\u{0}\u{fffd}"
        );
    }

    #[test]
    fn lines_are_split_and_budget_is_enforced() {
        let log = GuestLog::default();
        log.begin("obj", &LogScope::default());
        log.write(
            Stream::Stderr,
            b"thread panicked at x\nboom\nnote: run with `RUST_BACKTRACE=1`\n",
        );
        assert_eq!(log.finish(), "thread panicked at x / boom");

        log.begin("big", &LogScope::default());
        log.write(Stream::Stdout, &vec![b'a'; LOG_BUDGET_PER_OBJECT * 2]);
        {
            let state = log.state.lock().unwrap();
            assert_eq!(state.dropped, LOG_BUDGET_PER_OBJECT);
            assert!(state.stdout.len() <= LOG_BUDGET_PER_OBJECT);
        }

        log.finish();
        log.begin("pieces", &LogScope::default());
        log.write(Stream::Stdout, b"ab\ncd");
        log.write(Stream::Stdout, b"ef\n\ng");
        {
            let state = log.state.lock().unwrap();
            assert_eq!((state.lines, &state.stdout[..]), (3, &b"g"[..]));
            assert_eq!(state.logged, "ab\ncdef\n\n".len());
        }

        log.begin("empty lines", &LogScope::default());
        log.write(Stream::Stderr, &vec![b'\n'; 10_000]);
        let state = log.state.lock().unwrap();
        assert_eq!(state.lines, LOG_LINES_PER_OBJECT);
        assert_eq!(state.dropped, 10_000 - LOG_LINES_PER_OBJECT);
    }
}
