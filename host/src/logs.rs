//! Where text logs go: standard error, one line per event whatever the event holds.
//! An object's name and an `etl_fqn` come from the request, and a newline in either
//! would start a line of the sender's making (a forged entry); a NUL makes `grep`
//! take the log for binary. The JSON format escapes them itself.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Standard error, each event's control characters escaped but for its final newline
/// (and tabs; and, on a terminal, the escapes that colour it).
pub struct OneLinePerEvent {
    pub colours: bool,
}

impl<'a> MakeWriter<'a> for OneLinePerEvent {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            colours: self.colours,
        }
    }
}

pub struct EventWriter {
    colours: bool,
}

impl Write for EventWriter {
    /// tracing's formatter writes each event whole, in one call.
    fn write(&mut self, event: &[u8]) -> io::Result<usize> {
        io::stderr()
            .lock()
            .write_all(&escaped(event, self.colours))?;
        Ok(event.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

fn escaped(event: &[u8], colours: bool) -> Vec<u8> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    let mut out = Vec::with_capacity(event.len());
    for &byte in body {
        match byte {
            b'\t' => out.push(byte),
            0x1b if colours => out.push(byte),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..0x20 | 0x7f => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn an_event_stays_one_line() {
        let forged = b"object=b/o\n2026-11-24T06:59:43Z ERROR forged\r\0\x1b[1m\tend\n";
        assert_eq!(
            escaped(forged, false),
            b"object=b/o\\n2026-11-24T06:59:43Z ERROR forged\\r\\x00\\x1b[1m\tend\n"
        );
        assert_eq!(
            escaped(b"\x1b[2mtime\x1b[0m\n", true),
            b"\x1b[2mtime\x1b[0m\n"
        );
        assert_eq!(
            escaped("ünïcode\n".as_bytes(), false),
            "ünïcode\n".as_bytes()
        );
    }
}
