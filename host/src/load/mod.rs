//! A load generator for ETL servers: it plays the AIStore target on loopback and
//! drives a server under test (`ais-wasm serve`, the Python runtime, any command)
//! over every transport, verifying every byte that comes back.
//!
//! The pieces, each usable alone (`ais-wasm bench serve` is one user; a soak test,
//! mixed sizes and object counts, is meant to be another):
//!
//! - [`Corpus`]: the objects, their expected outputs under a [`Verify`] transform,
//!   and their FQN files under a temporary mountpath (`<mp>/@ais/<bucket>/%ob/<obj>`).
//! - [`target::Target`]: the emulated target: objects for hpull, direct puts
//!   received and verified.
//! - [`process::ServerProcess`]: the server under test: started on a free loopback
//!   port, ready when `/health` answers, its process tree's CPU time and peak RSS
//!   measured, killed at the end.
//! - [`driver::Driver`]: one [`Workload`] (a transport, objects, concurrency, a stop
//!   condition) run against the server, giving a [`stats::Cell`].
//! - [`bench`](mod@bench): the `ais-wasm bench serve` command over a matrix of cells.
//! - [`start`]: the `ais-wasm bench start` command: spawn to healthy, cold and cached.
//!
//! The wire forms (paths, `etl_fqn`, `Ais-Node-Url`, WebSocket control messages)
//! follow the protocol document (../shared/protocol/ais-etl-protocol.md, §4-§6); they
//! are written here independently of the server's own code, which they test.

pub mod bench;
pub mod driver;
pub mod process;
pub mod soak;
pub mod start;
pub mod stats;
pub mod target;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use md5::Digest;

/// The bucket every source object lives in.
pub const BUCKET: &str = "src";

/// Every transport, as the command line spells the list.
pub const ALL_TRANSPORTS: &str =
    "hpush-body,hpush-fqn,hpull-target,hpull-fqn,ws,ws-fqn,hpush-direct-put,ws-direct-put";

/// How a request reaches the server (§3, §4 of the protocol document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Transport {
    /// `PUT /<bucket>/<object>` with the object as the body.
    HpushBody,
    /// `PUT /<bucket>/<object>?etl_fqn=...` with an empty body.
    HpushFqn,
    /// `GET /<uname>`: the server fetches the object from the target.
    HpullTarget,
    /// `GET /<uname>?etl_fqn=...`.
    HpullFqn,
    /// `/ws`: a JSON control message and the object as a data message.
    Ws,
    /// `/ws`: a control message naming the FQN, no data message.
    WsFqn,
    /// hpush body with `Ais-Node-Url` naming the target: the result is put there
    /// and the server answers 204.
    HpushDirectPut,
    /// `/ws` with a `pipeline` naming the target: the server answers TEXT.
    WsDirectPut,
}

impl Transport {
    pub const ALL: [Transport; 8] = [
        Transport::HpushBody,
        Transport::HpushFqn,
        Transport::HpullTarget,
        Transport::HpullFqn,
        Transport::Ws,
        Transport::WsFqn,
        Transport::HpushDirectPut,
        Transport::WsDirectPut,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::HpushBody => "hpush-body",
            Transport::HpushFqn => "hpush-fqn",
            Transport::HpullTarget => "hpull-target",
            Transport::HpullFqn => "hpull-fqn",
            Transport::Ws => "ws",
            Transport::WsFqn => "ws-fqn",
            Transport::HpushDirectPut => "hpush-direct-put",
            Transport::WsDirectPut => "ws-direct-put",
        }
    }

    pub fn is_ws(self) -> bool {
        matches!(
            self,
            Transport::Ws | Transport::WsFqn | Transport::WsDirectPut
        )
    }

    pub fn direct_put(self) -> bool {
        matches!(self, Transport::HpushDirectPut | Transport::WsDirectPut)
    }

    pub fn uses_fqn(self) -> bool {
        matches!(
            self,
            Transport::HpushFqn | Transport::HpullFqn | Transport::WsFqn
        )
    }
}

/// The transform the server runs, as far as checking its output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verify {
    /// The object unchanged.
    Echo,
    /// The MD5 digest as 32 lowercase hex characters.
    Md5,
    /// ASCII upper-cased.
    Upper,
    /// `Hello World!` whatever the object.
    Hello,
    /// Count the bytes, check nothing.
    None,
}

impl Verify {
    pub fn name(self) -> &'static str {
        match self {
            Verify::Echo => "echo",
            Verify::Md5 => "md5",
            Verify::Upper => "upper",
            Verify::Hello => "hello",
            Verify::None => "none",
        }
    }

    /// The output the transform must produce for `data` (`None`: not checked).
    pub fn expected(self, data: &Bytes) -> Option<Bytes> {
        match self {
            Verify::Echo => Some(data.clone()),
            Verify::Md5 => Some(hex::encode(md5::Md5::digest(data)).into()),
            Verify::Upper => Some(data.to_ascii_uppercase().into()),
            Verify::Hello => Some(Bytes::from_static(b"Hello World!")),
            Verify::None => None,
        }
    }
}

/// One source object.
#[derive(Debug)]
pub struct Object {
    /// The object's name in [`BUCKET`], e.g. `bench/64KiB/obj 0.bin`.
    pub name: String,
    pub data: Bytes,
    /// What the server must answer (or put), if checked.
    pub expected: Option<Bytes>,
    /// The object's file under the corpus's mountpath.
    pub fqn: PathBuf,
}

impl Object {
    /// `ais/@#/<bucket>/<name>`, as a target names it in hpull.
    pub fn uname(&self) -> String {
        format!("ais/@#/{BUCKET}/{}", self.name)
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The objects of a run, with their files on a temporary mountpath.
pub struct Corpus {
    dir: tempfile::TempDir,
    verify: Verify,
    objects: Vec<Arc<Object>>,
}

impl Corpus {
    pub fn new(verify: Verify) -> anyhow::Result<Corpus> {
        let dir = tempfile::Builder::new()
            .prefix("ais-wasm-load-")
            .tempdir()
            .context("creating the mountpath directory")?;
        Ok(Corpus {
            dir,
            verify,
            objects: Vec::new(),
        })
    }

    /// The mountpath: `<tmp>/mp1`.
    pub fn mountpath(&self) -> PathBuf {
        self.dir.path().join("mp1")
    }

    /// Add `data` as object `name`: compute its expected output and write its file.
    pub fn add(&mut self, name: &str, data: Bytes) -> anyhow::Result<Arc<Object>> {
        let fqn = self
            .mountpath()
            .join("@ais")
            .join(BUCKET)
            .join("%ob")
            .join(name);
        if let Some(dir) = fqn.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&fqn, &data).with_context(|| format!("writing {}", fqn.display()))?;
        let object = Arc::new(Object {
            name: name.to_string(),
            expected: self.verify.expected(&data),
            data,
            fqn,
        });
        self.objects.push(object.clone());
        Ok(object)
    }

    /// `count` distinct objects of `size` bytes, named `bench/<size>/obj <i>.bin`.
    pub fn add_sized(&mut self, size: u64, count: usize) -> anyhow::Result<Vec<Arc<Object>>> {
        (0..count)
            .map(|i| {
                let name = format!("bench/{}/obj {i}.bin", size_label(size));
                self.add(&name, pattern(size as usize, size ^ ((i as u64) << 48)))
            })
            .collect()
    }

    pub fn objects(&self) -> &[Arc<Object>] {
        &self.objects
    }
}

/// Mixed-case letters, digits and punctuation from a seeded generator: every object
/// differs, and upper-casing changes about half the bytes.
pub fn pattern(size: usize, seed: u64) -> Bytes {
    const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        for byte in word.to_le_bytes().iter().take(size - data.len()) {
            data.push(ALPHABET[usize::from(byte & 63)]);
        }
    }
    data.into()
}

/// `1KiB`, `64KiB`, `16MiB`, `1000B`: exact binary units when they fit.
pub fn size_label(size: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if size >= unit && size.is_multiple_of(unit) {
            return format!("{}{name}", size / unit);
        }
    }
    format!("{size}B")
}

/// What a cell runs: one transport over `objects` (taken in turn) at a fixed
/// number of requests in flight.
#[derive(Debug, Clone)]
pub struct Workload {
    pub transport: Transport,
    pub objects: Vec<Arc<Object>>,
    /// Requests in flight: HTTP connections, or WebSocket requests outstanding
    /// over a few connections.
    pub concurrency: usize,
    /// Run, unmeasured, for this long first.
    pub warmup: Duration,
    pub stop: Stop,
}

/// When the measured part of a cell ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// No request starts after this much time.
    After(Duration),
    /// After this many requests.
    Objects(u64),
}
