//! ws-floor: the least CPU a server can spend per object on the benchmark's plain
//! WebSocket and hpush echo, on the machine at hand. One thread, no transform, no
//! limits, no error replies: what is left is the kernel's work (the socket reads and
//! writes, the loopback's delivery, the wake-ups) and the unmasking a WebSocket
//! server must do. `ais-wasm bench serve --server-cmd "ws-floor epoll {port}"
//! --transports ws,hpush-body` measures it beside ais-wasm, as bench/README.md's
//! goal b section does.
//!
//! It speaks as much of ais-wasm's `/ws` as the benchmark uses: each request is a
//! control message followed by a data message, answered by one BINARY frame holding
//! the data. A `PUT` (hpush with the object as its body) is answered 200 with the
//! body, the connection kept; `GET /health` answers `Running`. Like ais-wasm, it sets
//! the socket's receive low-water mark so that a request wakes it once, guessing
//! from the shortest request seen, which on the benchmark's equal requests is a
//! perfect guess (ais-wasm must also handle requests of every length). It copies a
//! request twice more than it must (out of the read buffer, and the message or body
//! into its reply: about 2 µs per 64 KiB here), so the true floor is a little lower
//! still.
//!
//! Two event loops over the same connection code:
//! - `epoll`: level-triggered, one `recv` per readiness into a 256 KiB buffer, each
//!   connection's finished replies in one `writev`.
//! - `uring`: io_uring with a multishot `recv` per connection into a ring of provided
//!   buffers, replies by `writev` operations, one `io_uring_enter` per loop that both
//!   submits and waits (`SINGLE_ISSUER`, `DEFER_TASKRUN`).
//!
//!   ws-floor epoll|uring PORT

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, Ordering};

use base64::Engine;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use sha1::{Digest, Sha1};

/// The longest frame accepted; a longer one closes the connection.
const MAX_FRAME: usize = 1 << 30;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let port = args.get(2).and_then(|port| port.parse::<u16>().ok());
    let (Some(mode), Some(port)) = (args.get(1), port) else {
        eprintln!("usage: ws-floor epoll|uring PORT");
        return ExitCode::from(2);
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("ws-floor: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = match mode.as_str() {
        "epoll" => epoll::serve(listener),
        "uring" => uring::serve(listener),
        _ => {
            eprintln!("ws-floor: unknown event loop {mode:?}: epoll or uring");
            return ExitCode::from(2);
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ws-floor: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One connection: bytes in, replies out.
struct Conn {
    fd: RawFd,
    upgraded: bool,
    input: Vec<u8>,
    /// The data message being gathered, unmasked.
    message: Vec<u8>,
    /// The control message came; the data message is next.
    in_data: bool,
    /// Bytes of the request in progress parsed so far, headers included.
    request: usize,
    /// The shortest whole request seen (0: none yet), and the low-water mark set.
    shortest: usize,
    mark: usize,
    /// Replies ready, in order.
    out: Vec<Vec<u8>>,
    /// Close once `out` is written.
    closing: bool,
}

impl Conn {
    fn new(fd: RawFd) -> Conn {
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        Conn {
            fd,
            upgraded: false,
            input: Vec::with_capacity(256 << 10),
            message: Vec::new(),
            in_data: false,
            request: 0,
            shortest: 0,
            mark: 1,
            out: Vec::new(),
            closing: false,
        }
    }

    /// Takes in bytes read from the socket, queueing what they answer in `out`.
    fn received(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        let mut at = 0;
        while !self.upgraded && !self.closing {
            match self.http(at) {
                Some(end) => at = end,
                None => break,
            }
        }
        if self.upgraded {
            while let Some(end) = self.frame(at) {
                at = end;
            }
        }
        self.input.drain(..at);
        let mark = match self.shortest {
            0 => 1,
            shortest => shortest
                .saturating_sub(self.request + self.input.len())
                .max(1),
        };
        if mark != self.mark && !self.closing {
            set_option(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                mark as libc::c_int,
            );
            self.mark = mark;
        }
    }

    /// Answers the HTTP request at `at` in `input`, once it is whole: the upgrade, an
    /// hpush (a PUT, its body echoed, the connection kept), or a health check. Where
    /// the request ends.
    fn http(&mut self, at: usize) -> Option<usize> {
        let end = at + self.input[at..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.input[at..end]);
        let header = |wanted: &str| {
            head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_string())
            })
        };
        if head.starts_with("PUT ") {
            let length: usize = header("content-length")?.parse().ok()?;
            let body = self.input.get(end..end + length)?;
            let mut reply =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n").into_bytes();
            reply.extend_from_slice(body);
            self.out.push(reply);
            self.request = end + length - at;
            self.finished();
            return Some(end + length);
        }
        let Some(key) = header("sec-websocket-key") else {
            self.out.push(
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nRunning"
                    .to_vec(),
            );
            self.closing = true;
            return None;
        };
        let mut sha = Sha1::new();
        sha.update(key.as_bytes());
        sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
        self.out.push(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes(),
        );
        self.upgraded = true;
        Some(end)
    }

    /// Handles the frame at `at` in `input`, if it is whole; where it ends.
    fn frame(&mut self, at: usize) -> Option<usize> {
        let bytes = &self.input[at..];
        let (&first, &second) = (bytes.first()?, bytes.get(1)?);
        let (len, mut header) = match second & 0x7f {
            126 => (
                u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            len => (len as usize, 2),
        };
        if len > MAX_FRAME {
            // Close (1009, message too big), after the replies before it.
            self.out.push(vec![0x88, 2, 0x03, 0xf1]);
            self.closing = true;
            return None;
        }
        let mask = if second & 0x80 != 0 {
            header += 4;
            Some(bytes.get(header - 4..header)?.try_into().ok()?)
        } else {
            None
        };
        let payload = bytes.get(header..header + len)?;
        self.request += header + len;
        match first & 0x0f {
            0x8 => {
                self.out.push(vec![0x88, 0]);
                self.closing = true;
            }
            0x9 | 0xa => {}
            _ if !self.in_data => self.in_data = true,
            _ => {
                let start = self.message.len();
                self.message.extend_from_slice(payload);
                if let Some(mask) = mask {
                    unmask(&mut self.message[start..], mask);
                }
                if first & 0x80 != 0 {
                    self.reply();
                }
            }
        }
        Some(at + header + len)
    }

    /// The data message is whole: echo it.
    fn reply(&mut self) {
        let len = self.message.len();
        let mut reply = Vec::with_capacity(10 + len);
        reply.push(0x82);
        match len {
            0..126 => reply.push(len as u8),
            126..65536 => {
                reply.push(126);
                reply.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                reply.push(127);
                reply.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        reply.extend_from_slice(&self.message);
        self.message.clear();
        self.out.push(reply);
        self.in_data = false;
        self.finished();
    }

    /// A request of `request` bytes is answered.
    fn finished(&mut self) {
        if self.shortest == 0 || self.request < self.shortest {
            self.shortest = self.request;
        }
        self.request = 0;
    }
}

/// Unmasks in place, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from(u32::from_ne_bytes(mask)) * 0x1_0000_0001;
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let value = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ wide;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

fn set_option(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: an int option of an open socket, passed with its size. A failure only
    // costs the setting.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn check(result: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if result < 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("{what}: {error}")));
    }
    Ok(result)
}

mod epoll {
    use super::*;

    pub fn serve(listener: TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let listening = listener.as_raw_fd();
        // SAFETY: plain system calls on descriptors this function owns.
        let epoll = check(unsafe { libc::epoll_create1(0) }, "epoll_create1")?;
        let watch = |fd: RawFd| {
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: fd as u64,
            };
            // SAFETY: as above; the event is read during the call only.
            check(
                unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) },
                "epoll_ctl",
            )
        };
        watch(listening)?;
        let mut conns: HashMap<RawFd, Conn> = HashMap::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut buffer = vec![0u8; 256 << 10];
        loop {
            // SAFETY: `events` has room for the 64 events asked for.
            let ready = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 64, -1) };
            let ready = match check(ready, "epoll_wait") {
                Ok(ready) => ready as usize,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            for event in &events[..ready] {
                let fd = event.u64 as RawFd;
                if fd == listening {
                    while let Ok((stream, _)) = listener.accept() {
                        stream.set_nonblocking(true)?;
                        let fd = stream.into_raw_fd();
                        watch(fd)?;
                        conns.insert(fd, Conn::new(fd));
                    }
                    continue;
                }
                let Some(conn) = conns.get_mut(&fd) else {
                    continue;
                };
                // SAFETY: reads into `buffer`, within its length.
                let read = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
                let ended = match read {
                    0 => true,
                    n if n < 0 => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
                    n => {
                        conn.received(&buffer[..n as usize]);
                        !write_all(conn)
                    }
                };
                if ended || conn.closing {
                    // SAFETY: the connection's own descriptor, closed once.
                    unsafe { libc::close(fd) };
                    conns.remove(&fd);
                }
            }
        }
    }

    /// Writes the connection's replies, waiting for room if the socket is full;
    /// `false` if the connection is broken.
    fn write_all(conn: &mut Conn) -> bool {
        let out = std::mem::take(&mut conn.out);
        let mut slices: Vec<IoSlice> = out.iter().map(|reply| IoSlice::new(reply)).collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            let count = left.len().min(1024) as libc::c_int;
            // SAFETY: IoSlice is ABI-compatible with iovec; `count` slices are valid.
            let written = unsafe { libc::writev(conn.fd, left.as_ptr().cast(), count) };
            if written < 0 {
                if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    return false;
                }
                let mut poll = libc::pollfd {
                    fd: conn.fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one pollfd, read and written during the call only.
                unsafe { libc::poll(&mut poll, 1, -1) };
                continue;
            }
            IoSlice::advance_slices(&mut left, written as usize);
        }
        true
    }
}

mod uring {
    use super::*;

    const GROUP: u16 = 7;
    const BUFFERS: u16 = 64;
    const BUFFER: usize = 128 << 10;
    /// User data of the multishot accept; a write's is its descriptor with this bit.
    const ACCEPT: u64 = u64::MAX;
    const WRITE: u64 = 1 << 40;

    /// A connection and its write in flight.
    struct Slot {
        conn: Conn,
        writing: Option<Writing>,
    }

    /// Replies being written, kept with the iovecs that point into them until the
    /// kernel is done with both.
    struct Writing {
        replies: Vec<Vec<u8>>,
        /// Bytes of `replies` written so far: a write can be short.
        sent: usize,
        iovecs: Vec<libc::iovec>,
    }

    impl Writing {
        /// The write of what is left.
        fn entry(&mut self, fd: RawFd) -> squeue::Entry {
            let mut skip = self.sent;
            self.iovecs.clear();
            for reply in &self.replies {
                let from = skip.min(reply.len());
                skip -= from;
                if from < reply.len() {
                    self.iovecs.push(libc::iovec {
                        iov_base: reply[from..].as_ptr() as *mut libc::c_void,
                        iov_len: reply.len() - from,
                    });
                }
            }
            let count = self.iovecs.len().min(1024) as u32;
            opcode::Writev::new(types::Fd(fd), self.iovecs.as_ptr(), count)
                .build()
                .user_data(fd as u64 | WRITE)
        }
    }

    /// The ring of buffers the kernel picks from for each receive.
    struct Provided {
        ring: *mut types::BufRingEntry,
        buffers: Vec<Vec<u8>>,
        tail: u16,
    }

    impl Provided {
        fn register(uring: &IoUring) -> io::Result<Provided> {
            let bytes = usize::from(BUFFERS) * size_of::<types::BufRingEntry>();
            // SAFETY: a fresh anonymous mapping, page-aligned as the kernel requires.
            let ring = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                    -1,
                    0,
                )
            };
            if ring == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let ring = ring.cast::<types::BufRingEntry>();
            // SAFETY: the mapping holds BUFFERS entries and lives as long as the process.
            unsafe {
                uring
                    .submitter()
                    .register_buf_ring_with_flags(ring as u64, BUFFERS, GROUP, 0)?;
            }
            let mut provided = Provided {
                ring,
                buffers: (0..BUFFERS).map(|_| vec![0; BUFFER]).collect(),
                tail: 0,
            };
            for id in 0..BUFFERS {
                provided.give_back(id);
            }
            provided.publish();
            Ok(provided)
        }

        fn give_back(&mut self, id: u16) {
            // SAFETY: the slot is within the ring (the tail wraps at BUFFERS), and the
            // kernel reads it only after `publish`.
            let entry = unsafe { &mut *self.ring.add(usize::from(self.tail % BUFFERS)) };
            entry.set_addr(self.buffers[usize::from(id)].as_mut_ptr() as u64);
            entry.set_len(BUFFER as u32);
            entry.set_bid(id);
            self.tail = self.tail.wrapping_add(1);
        }

        fn publish(&self) {
            // SAFETY: the tail field of the ring's first entry, shared with the kernel.
            let tail =
                unsafe { AtomicU16::from_ptr(types::BufRingEntry::tail(self.ring).cast_mut()) };
            tail.store(self.tail, Ordering::Release);
        }
    }

    pub fn serve(listener: TcpListener) -> io::Result<()> {
        let listening = types::Fd(listener.as_raw_fd());
        let mut uring: IoUring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(1024)
            .build(256)?;
        let mut provided = Provided::register(&uring)?;
        let mut slots: HashMap<RawFd, Slot> = HashMap::new();
        let receive = |fd: RawFd| {
            opcode::RecvMulti::new(types::Fd(fd), GROUP)
                .build()
                .user_data(fd as u64)
        };
        let accept = || {
            opcode::AcceptMulti::new(listening)
                .build()
                .user_data(ACCEPT)
        };
        let mut queue = vec![accept()];
        loop {
            for entry in queue.drain(..) {
                // SAFETY: every buffer an entry points to (provided buffers, a
                // slot's replies and iovecs) outlives the operation.
                while unsafe { uring.submission().push(&entry) }.is_err() {
                    uring.submit()?;
                }
            }
            match uring.submit_and_wait(1) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                result => result?,
            };
            let completed: Vec<cqueue::Entry> = uring.completion().collect();
            let mut gave_back = false;
            for done in completed {
                let (data, result, flags) = (done.user_data(), done.result(), done.flags());
                if data == ACCEPT {
                    if result >= 0 {
                        slots.insert(
                            result,
                            Slot {
                                conn: Conn::new(result),
                                writing: None,
                            },
                        );
                        queue.push(receive(result));
                    }
                    if !cqueue::more(flags) {
                        queue.push(accept());
                    }
                    continue;
                }
                let fd = (data & !WRITE) as RawFd;
                let Some(slot) = slots.get_mut(&fd) else {
                    continue;
                };
                if data & WRITE != 0 {
                    let writing = slot.writing.as_mut().expect("a write in flight");
                    if result < 0 {
                        // A broken connection: its receive ends it.
                        slot.writing = None;
                        continue;
                    }
                    writing.sent += result as usize;
                    if writing.sent < writing.replies.iter().map(Vec::len).sum() {
                        // What is left goes out before anything else.
                        queue.push(writing.entry(fd));
                        continue;
                    }
                    slot.writing = None;
                    if slot.conn.closing {
                        // The armed receive ends with 0, and the descriptor is
                        // closed then, so that its number is not reused under it.
                        // SAFETY: the slot's own descriptor.
                        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                    } else if !slot.conn.out.is_empty() {
                        queue.push(write(fd, slot));
                    }
                    continue;
                }
                if result == -libc::ENOBUFS {
                    queue.push(receive(fd));
                    continue;
                }
                if result <= 0 {
                    slots.remove(&fd);
                    // SAFETY: the slot's own descriptor, closed once.
                    unsafe { libc::close(fd) };
                    continue;
                }
                let id = cqueue::buffer_select(flags).expect("a provided buffer");
                slot.conn
                    .received(&provided.buffers[usize::from(id)][..result as usize]);
                provided.give_back(id);
                gave_back = true;
                if !cqueue::more(flags) {
                    queue.push(receive(fd));
                }
                if !slot.conn.out.is_empty() && slot.writing.is_none() {
                    queue.push(write(fd, slot));
                }
            }
            if gave_back {
                provided.publish();
            }
        }
    }

    /// A write of the connection's finished replies.
    fn write(fd: RawFd, slot: &mut Slot) -> squeue::Entry {
        let writing = Writing {
            replies: std::mem::take(&mut slot.conn.out),
            sent: 0,
            iovecs: Vec::new(),
        };
        slot.writing.insert(writing).entry(fd)
    }
}
