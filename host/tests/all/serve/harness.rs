//! Running `ais-wasm serve` for a test: start it on 127.0.0.1:0, wait for its
//! `listening on` line, kill it when the test ends. Also the wire encodings AIStore
//! uses (Go's `url.PathEscape` and query encoding), mountpath trees for FQNs, and a
//! raw HTTP/1.1 client for requests whose exact bytes matter.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fake_target::FakeTarget;
use crate::support::{ais_wasm, component};

/// How long a server may take to print its `listening on` line.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Configuration of a server to start.
pub struct ServerBuilder {
    command: Command,
    cache: tempfile::TempDir,
}

/// A running `ais-wasm serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    _cache: tempfile::TempDir,
}

impl ServerBuilder {
    /// A server for the component built from `dir` (e.g. `examples/echo`), with a
    /// private compile cache, a clean environment and a 10 ms direct-put backoff.
    pub fn new(dir: &str) -> Self {
        Self::with_component(&component(dir))
    }

    /// The same, for the component file at `wasm`.
    pub fn with_component(wasm: &Path) -> Self {
        let cache = tempfile::tempdir().unwrap();
        let mut command = ais_wasm(cache.path());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("AIS_")
                || key.starts_with("ETL_")
                || key == "NUM_WORKERS"
                || key.to_ascii_lowercase().ends_with("_proxy")
            {
                command.env_remove(key);
            }
        }
        command
            .env("ETL_WASM_CACHE_DIR", cache.path())
            .env("ETL_WASM_DIRECT_PUT_BACKOFF", "10ms")
            .env("RUST_LOG", "warn")
            // By variable, so that a test can still give --listen.
            .env("ETL_WASM_LISTEN", "127.0.0.1:0")
            .arg("serve")
            .arg("--component")
            .arg(wasm);
        ServerBuilder { command, cache }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// The largest file the server may write (`RLIMIT_FSIZE`): a write past it fails
    /// with `EFBIG`, as on a full disk, and no `SIGXFSZ` ends the process.
    pub fn file_size_limit(mut self, bytes: u64) -> Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec, only signal(2), async-signal-safe. An
        // ignored signal stays ignored across exec.
        unsafe {
            self.command.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        self.limit(libc::RLIMIT_FSIZE, bytes, bytes)
    }

    /// Open-file limits (`RLIMIT_NOFILE`) of `soft` and `hard` descriptors.
    pub fn open_file_limit(self, soft: u64, hard: u64) -> Self {
        self.limit(libc::RLIMIT_NOFILE, soft, hard)
    }

    /// The server started with `resource` limited to `soft` and `hard`.
    fn limit(mut self, resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec, only setrlimit(2), async-signal-safe.
        unsafe {
            self.command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                match libc::setrlimit(resource, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
        self
    }

    /// A server that file permissions bind even when the tests run as root, as they
    /// bind a server running as another user than the files' owner: it is started
    /// without `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH`. Not being root, the
    /// tests have neither to give up.
    pub fn bound_by_file_permissions(mut self) -> Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec, only prctl(2), async-signal-safe. Dropped
        // from the bounding set, a capability is not the exec'd program's.
        unsafe {
            self.command.pre_exec(|| {
                // CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (linux/capability.h).
                for capability in [1, 2] {
                    libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0);
                }
                Ok(())
            });
        }
        self
    }

    /// `AIS_TARGET_URL` = the per-ETL endpoint of ETL `etl` on `target`.
    pub fn target(self, target: &FakeTarget, etl: &str) -> Self {
        let url = target.etl_url(etl);
        self.env("AIS_TARGET_URL", url)
    }

    /// Run a server that must refuse to start: its exit status and what it logged.
    pub fn start_expecting_failure(mut self) -> (ExitStatus, String) {
        let mut child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ais-wasm serve");
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let end = Instant::now() + START_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ais-wasm serve is still running, but should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status, reader.join().unwrap())
    }

    /// Start and wait for the `listening on` line (off the async runtime).
    pub async fn start(self) -> Server {
        tokio::task::spawn_blocking(move || self.start_blocking())
            .await
            .unwrap()
    }

    pub fn start_blocking(mut self) -> Server {
        let mut child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ais-wasm serve");
        // Both pipes are drained for the server's whole life, so it never blocks
        // on a full pipe; stderr is kept for failure messages.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let (ready, listening) = std::sync::mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            let mut ready = Some(ready);
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on http://")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(addr.trim().to_string());
                }
            }
        });
        let addr = match listening.recv_timeout(START_DEADLINE) {
            Ok(addr) => addr.parse().expect("a socket address after `listening on`"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "ais-wasm serve did not print `listening on` ({status:?}):\n{}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                );
            }
        };
        Server {
            child,
            addr,
            stderr,
            _cache: self.cache,
        }
    }
}

impl Server {
    /// `http://ADDR` + `path_and_query` (which must start with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The server as a pipeline stage entry: `http://ADDR`, no path.
    pub fn stage(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = client().get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Poll the server's log for `needle` (up to 20 s); returns the log.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "{needle:?} never logged:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Peak resident set size (`VmHWM`) of the server process, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// Resident set size (`VmRSS`) of the server process now, in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    fn status_kib(&self, field: &str) -> u64 {
        crate::support::status_kib(self.pid(), field)
            .unwrap_or_else(|| panic!("{field} in /proc/{}/status", self.pid()))
    }

    /// The server's open file descriptors: (all, sockets).
    pub fn open_fds(&self) -> (usize, usize) {
        let (mut all, mut sockets) = (0, 0);
        for entry in std::fs::read_dir(format!("/proc/{}/fd", self.pid())).unwrap() {
            let Ok(entry) = entry else { continue };
            // A descriptor closed between listing and reading is simply gone.
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            all += 1;
            if target.to_string_lossy().starts_with("socket:") {
                sockets += 1;
            }
        }
        (all, sockets)
    }

    /// The instance pool's counters, `(created, discarded, live)`, from the line the
    /// server logs on SIGUSR1 (needs `ais_wasm::cmd::serve=info` in `RUST_LOG`).
    pub async fn pool_stats(&self) -> (u64, u64, u64) {
        const LINE: &str = "instance pool created=";
        let before = self.stderr().matches(LINE).count();
        // SAFETY: signalling our own child, which has not been reaped.
        assert_eq!(
            unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGUSR1) },
            0
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            let log = self.stderr();
            if let Some(line) = log.lines().filter(|l| l.contains(LINE)).nth(before) {
                break line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no pool statistics logged:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let field = |name: &str| -> u64 {
            let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            line[start..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (field("created"), field("discarded"), field("live"))
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child, which has not been reaped.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Wait for the process to exit, polling until `deadline` passes.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for tests: no proxies, no pooling surprises between servers.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

// The target's wire encodings (§5), shared with the load generator: both are written
// from the protocol document, not borrowed from the server under test.
pub use ais_wasm::load::wire::{etl_fqn_query as etl_fqn_param, path_escape, query_escape};

/// A target's mountpath laid out as `<mountpath>/@ais/<bucket>/%ob/<object>`.
pub struct Mountpath {
    dir: tempfile::TempDir,
}

impl Mountpath {
    pub fn new() -> Self {
        Mountpath {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("mp1")
    }

    /// Store `data` as object `object` of ais bucket `bucket`; returns its FQN.
    pub fn store(&self, bucket: &str, object: &str, data: &[u8]) -> PathBuf {
        let fqn = self.fqn(bucket, object);
        std::fs::create_dir_all(fqn.parent().unwrap()).unwrap();
        std::fs::write(&fqn, data).unwrap();
        fqn
    }

    pub fn fqn(&self, bucket: &str, object: &str) -> PathBuf {
        self.root()
            .join("@ais")
            .join(bucket)
            .join("%ob")
            .join(object)
    }
}

/// A response read off the socket by [`raw`].
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(500)]);
        write!(f, "{} {:?} {body:?}", self.status, self.headers)
    }
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send `request` (complete bytes; should carry `Connection: close`) and read the
/// response until the server closes. Handles `Content-Length` and chunked bodies.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Written while the response is read: a server may answer (an error, say)
    // before it has read the whole body. The response counts here, not a failed
    // write (ais-wasm reads such a body to its end: `faults.rs`, "an answer before
    // the body was read").
    let request = request.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf))
            .await
            .expect("the response did not end")
        {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            // A reset after the response arrived (unread request bytes on close).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !bytes.is_empty() => {
                break;
            }
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    writing.abort();
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let rest = &bytes[head_end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16).unwrap();
        data = &data[eol + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `METHOD target HTTP/1.1` with `headers` and a `Content-Length` body, sent raw.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        bytes.push_str(&format!("{name}: {value}\r\n"));
    }
    bytes.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = bytes.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes).await
}

/// An address where nothing listens, reserved while this lives: the socket is bound
/// but never listens, so connections are refused, and no server of a test running
/// beside this one can be given the port (a listener dropped at once left it free,
/// and a direct put once reached another test's server there).
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl std::fmt::Display for ClosedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = socket.local_addr().unwrap();
    ClosedPort {
        _socket: socket,
        addr,
    }
}

/// A free port for a child to listen on, below the kernel's ephemeral range: no
/// `127.0.0.1:0` of a test running beside this one, and no outgoing connection, can
/// be given it between this check and the child's bind.
pub fn port_for_a_child() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let ephemeral: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    (ephemeral.saturating_sub(4096).max(1024)..ephemeral)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}
