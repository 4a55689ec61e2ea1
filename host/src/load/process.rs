//! The server under test as a process tree: started on a free loopback port, ready
//! once `GET /health` answers 200, measured from /proc (CPU time and RSS summed over
//! the tree, since a server may run several worker processes, and CPU time by thread
//! name and for the whole machine, so a slow run shows where the time went), killed
//! at the end.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::stats::Usage;

/// Which server to start.
#[derive(Debug, Clone)]
pub enum ServerCommand {
    /// This executable's `serve --component <path>`.
    Component(PathBuf),
    /// A command line, split like a shell's, `{port}` replaced by the port.
    Shell(String),
}

/// Everything needed to start a server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub command: ServerCommand,
    /// `AIS_TARGET_URL`.
    pub target_url: String,
    /// `NUM_WORKERS`, when given.
    pub workers: Option<usize>,
    /// How long the server may take to answer `/health`.
    pub start_timeout: Duration,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// More environment variables for it.
    pub env: Vec<(String, String)>,
}

/// A running server; its process tree is killed when this is dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The command line, as run.
    pub argv: Vec<String>,
    /// From spawning to the first 200 from `/health`.
    pub ready_after: Duration,
    log: PathBuf,
    sampler: Sampler,
}

/// How often the RSS of the tree is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How often `/health` is polled while the server starts: start-up times are
/// measured to this.
pub const HEALTH_POLL: Duration = Duration::from_millis(5);
/// How long SIGTERM is given before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

impl ServerProcess {
    pub async fn start(spec: &ServerSpec) -> anyhow::Result<ServerProcess> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let argv = match &spec.command {
            ServerCommand::Component(component) => {
                let exe = std::env::current_exe().context("finding this executable")?;
                vec![
                    exe.to_string_lossy().into_owned(),
                    "serve".into(),
                    "--component".into(),
                    component.to_string_lossy().into_owned(),
                ]
            }
            ServerCommand::Shell(line) => {
                let words = shlex::split(line)
                    .with_context(|| format!("cannot split the server command {line:?}"))?;
                if words.is_empty() {
                    bail!("the server command is empty");
                }
                words
                    .into_iter()
                    .map(|w| w.replace("{port}", &port.to_string()))
                    .collect()
            }
        };
        let log = File::create(&spec.log)
            .with_context(|| format!("creating the server log {}", spec.log.display()))?;
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env("ETL_WASM_LISTEN", addr.to_string())
            .env("AIS_TARGET_URL", &spec.target_url)
            // Loopback only: a proxy in the environment must not carry the
            // server's calls to the emulated target.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so the whole tree can be signalled.
            .process_group(0);
        // A bench killed outright (SIGKILL, the OOM killer, a CI job's time limit)
        // runs no cleanup: the server is told by the kernel instead, when the thread
        // that started it (a worker of the bench's runtime, which lives as long as
        // the bench) ends. Not if the bench ended before: then it does not start.
        let bench = std::process::id();
        // SAFETY: between fork and exec, only prctl(2) and getppid(2), both
        // async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                match libc::getppid() as u32 == bench {
                    true => Ok(()),
                    false => Err(std::io::Error::other("the bench ended")),
                }
            });
        }
        if let ServerCommand::Component(_) = spec.command {
            // The component is given; other sources in the environment would clash.
            for var in [
                "ETL_WASM_PAYLOAD",
                "ETL_WASM_PATH",
                "ETL_WASM_URL",
                "ETL_WASM_SHA256",
            ] {
                command.env_remove(var);
            }
        }
        if let Some(workers) = spec.workers {
            command.env("NUM_WORKERS", workers.to_string());
        }
        command.envs(spec.env.iter().map(|(name, value)| (name, value)));
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {:?}", argv[0]))?;
        let sampler = Sampler::start(child.id());
        let mut server = ServerProcess {
            child,
            addr,
            argv,
            ready_after: Duration::ZERO,
            log: spec.log.clone(),
            sampler,
        };
        server.wait_healthy(spec.start_timeout).await?;
        server.ready_after = started.elapsed();
        Ok(server)
    }

    /// Poll `GET /health` until it answers 200, the process exits, or `timeout`.
    async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://{}/health", self.addr);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match client.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(response) => format!("status {}", response.status()),
                Err(error) => format!("{error}"),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{:?} did not answer GET /health with 200 within {timeout:?} (last: {last})\n{}",
                    self.argv.join(" "),
                    self.log_tail()
                );
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// An error, with the end of the server's log, if the server has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "the server {:?} exited ({status})\n{}",
                self.argv.join(" "),
                self.log_tail()
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPU counters now: the server's, this process's and the machine's.
    pub fn snapshot(&self) -> CpuSnapshot {
        CpuSnapshot {
            server: tree_cpu(self.pid()),
            generator: self_cpu(),
            machine: machine(),
        }
    }

    /// Start a new peak-RSS measurement.
    pub fn reset_peak_rss(&self) {
        self.sampler.reset();
    }

    /// The highest summed RSS of the tree since the last reset.
    pub fn peak_rss(&self) -> Option<u64> {
        self.sampler.peak()
    }

    /// The last lines of the server's stdout and stderr.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 30)
    }

    /// SIGTERM to the tree, SIGKILL after a grace period, then reap.
    fn terminate(&mut self) {
        self.sampler.stop();
        let group = self.pid() as libc::pid_t;
        let members = tree(self.pid());
        signal(-group, libc::SIGTERM);
        for member in &members {
            signal(member.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(-group, libc::SIGKILL);
        // Members that left the group (setsid) but are still the same processes.
        for member in members {
            if start_time(member.pid) == Some(member.start_time) {
                signal(member.pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only fails.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    format!("--- {} (last {lines} lines) ---\n{tail}", path.display())
}

/// One process of a tree.
#[derive(Debug, Clone, Copy)]
struct Member {
    pid: u32,
    /// Field 22 of /proc/PID/stat: tells a process from a later one with its pid.
    start_time: u64,
}

/// The summed usage of a process tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeUsage {
    /// utime + stime + cutime + cstime of every member. A reaped process's time
    /// moves into its parent's cutime/cstime, so the sum keeps exited workers.
    pub cpu: Cpu,
    /// Resident set sizes, summed (shared pages count once per process).
    pub rss: u64,
}

/// CPU time, and the part of it spent in the kernel (stime: system calls, and the
/// network stack's work done on the process's behalf).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub total: Duration,
    pub kernel: Duration,
}

impl Cpu {
    /// The time used since `earlier`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            total: self.total.saturating_sub(earlier.total),
            kernel: self.kernel.saturating_sub(earlier.kernel),
        }
    }

    fn plus(self, other: Cpu) -> Cpu {
        Cpu {
            total: self.total + other.total,
            kernel: self.kernel + other.kernel,
        }
    }
}

/// CPU and machine counters read at one moment; two of them give a cell's [`Usage`].
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// The server's tree (`None` when it could not be read).
    server: Option<TreeCpu>,
    /// This process: the client and the emulated target.
    generator: Duration,
    /// The whole machine's counters (`None` without /proc/stat).
    machine: Option<Machine>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Machine {
    /// Busy time of every CPU, steal included.
    busy: Duration,
    /// Context switches on every CPU.
    switches: u64,
    /// TCP segments sent in this network namespace (`None` without /proc/net/snmp).
    segments: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct TreeCpu {
    total: Cpu,
    /// Live threads by name, summed over the tree's processes.
    threads: BTreeMap<String, Cpu>,
}

/// What [`Usage::server_threads`] calls the time no live thread accounts for.
const EXITED: &str = "(exited)";

impl CpuSnapshot {
    /// What was used since `earlier`.
    pub fn since(&self, earlier: &CpuSnapshot) -> Usage {
        let server = self.server.as_ref().zip(earlier.server.as_ref());
        let server_cpu = server.map(|(now, then)| now.total.since(then.total));
        let mut server_threads = Vec::new();
        if let Some((now, then)) = server {
            for (name, cpu) in &now.threads {
                let cpu = then.threads.get(name).map_or(*cpu, |then| cpu.since(*then));
                if !cpu.total.is_zero() {
                    server_threads.push((name.clone(), cpu));
                }
            }
            // Threads that ended (and reaped children) leave their time only in the
            // processes' totals.
            let named = server_threads
                .iter()
                .fold(Cpu::default(), |sum, (_, cpu)| sum.plus(*cpu));
            let exited = server_cpu.unwrap_or_default().since(named);
            if !exited.total.is_zero() {
                server_threads.push((EXITED.to_string(), exited));
            }
            server_threads.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(&b.0)));
        }
        let generator_cpu = self.generator.saturating_sub(earlier.generator);
        let machine = self.machine.zip(earlier.machine);
        let busy = machine.map(|(now, then)| now.busy.saturating_sub(then.busy));
        Usage {
            server_cpu,
            server_threads,
            generator_cpu,
            other_cpu: busy.zip(server_cpu).map(|(busy, server)| {
                busy.saturating_sub(server.total)
                    .saturating_sub(generator_cpu)
            }),
            context_switches: machine.map(|(now, then)| now.switches.saturating_sub(then.switches)),
            tcp_segments: machine
                .and_then(|(now, then)| Some(now.segments?.saturating_sub(then.segments?))),
        }
    }
}

/// The fields of /proc/PID/stat (or /proc/PID/task/TID/stat) this module uses.
struct Stat {
    /// The command name: a thread's name for a task.
    name: String,
    /// utime + stime + cutime + cstime.
    ticks: u64,
    kernel_ticks: u64,
    /// utime + stime: the task's own, without reaped children's.
    own_ticks: u64,
    own_kernel_ticks: u64,
    rss_pages: u64,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name is in parentheses and may contain anything, even ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 2..)?.split_ascii_whitespace().collect();
    // fields[0] is field 3 of proc(5).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    Some(Stat {
        name,
        ticks: utime + stime + field(16)? + field(17)?,
        kernel_ticks: stime + field(17)?,
        own_ticks: utime + stime,
        own_kernel_ticks: stime,
        start_time: field(22)?,
        rss_pages: field(24)?,
    })
}

fn start_time(pid: u32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_time)
}

/// `root` and its descendants, from the `children` files of their threads.
fn tree(root: u32) -> Vec<Member> {
    let mut members = Vec::new();
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        let Some(stat) = read_stat(pid) else { continue };
        members.push(Member {
            pid,
            start_time: stat.start_time,
        });
        pending.extend(children(pid));
    }
    members
}

fn children(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// The usage of `root`'s tree now (`None` if `root` is gone).
pub fn tree_usage(root: u32) -> Option<TreeUsage> {
    read_stat(root)?;
    Some(usage_of(&tree(root)))
}

fn usage_of(members: &[Member]) -> TreeUsage {
    let (ticks, kernel_ticks, pages) = members
        .iter()
        .filter_map(|m| read_stat(m.pid))
        .fold((0, 0, 0), |(t, k, p), s| {
            (t + s.ticks, k + s.kernel_ticks, p + s.rss_pages)
        });
    TreeUsage {
        cpu: cpu_of(ticks, kernel_ticks),
        rss: pages * units().1,
    }
}

/// The CPU time of `root`'s tree now, and of its live threads by name.
fn tree_cpu(root: u32) -> Option<TreeCpu> {
    read_stat(root)?;
    let members = tree(root);
    let total = usage_of(&members).cpu;
    let mut ticks: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for member in members {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", member.pid)) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(stat) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|text| parse_stat(&text))
            else {
                continue;
            };
            let sum = ticks.entry(stat.name).or_default();
            sum.0 += stat.own_ticks;
            sum.1 += stat.own_kernel_ticks;
        }
    }
    let threads = ticks
        .into_iter()
        .map(|(name, (ticks, kernel))| (name, cpu_of(ticks, kernel)))
        .collect();
    Some(TreeCpu { total, threads })
}

/// The machine's counters so far, from /proc/stat. Busy time is all but idle and
/// iowait; steal counts as busy: time the hypervisor gave to someone else is time
/// this machine could not use.
fn machine() -> Option<Machine> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = text.lines();
    let cpu: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_ascii_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| cpu.get(i)).sum();
    let switches = lines.find_map(|line| line.strip_prefix("ctxt "))?;
    Some(Machine {
        busy: cpu_of(busy, 0).total,
        switches: switches.trim().parse().ok()?,
        segments: tcp_segments_sent(),
    })
}

/// `Tcp: OutSegs` of /proc/net/snmp: a header line names the fields, the next line
/// holds their values.
fn tcp_segments_sent() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = text.lines().filter(|line| line.starts_with("Tcp: "));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let at = names
        .split_ascii_whitespace()
        .position(|n| n == "OutSegs")?;
    values.split_ascii_whitespace().nth(at)?.parse().ok()
}

fn cpu_of(ticks: u64, kernel_ticks: u64) -> Cpu {
    let tick = units().0;
    let time = |ticks| Duration::from_secs_f64(ticks as f64 / tick as f64);
    Cpu {
        total: time(ticks),
        kernel: time(kernel_ticks),
    }
}

/// Clock ticks per second and the page size.
fn units() -> (u64, u64) {
    static UNITS: OnceLock<(u64, u64)> = OnceLock::new();
    *UNITS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        (
            u64::try_from(tick).unwrap_or(100).max(1),
            u64::try_from(page).unwrap_or(4096).max(1),
        )
    })
}

/// CPU time this process has used (all threads: the client and the emulated target).
pub fn self_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A thread sampling a tree's summed RSS, keeping the peak.
struct Sampler {
    state: Arc<SamplerState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct SamplerState {
    root: u32,
    peak: AtomicU64,
    seen: AtomicBool,
    stop: AtomicBool,
}

impl SamplerState {
    fn sample(&self) {
        if let Some(usage) = tree_usage(self.root) {
            self.peak.fetch_max(usage.rss, Ordering::Relaxed);
            self.seen.store(true, Ordering::Relaxed);
        }
    }
}

impl Sampler {
    fn start(root: u32) -> Sampler {
        let state = Arc::new(SamplerState {
            root,
            peak: AtomicU64::new(0),
            seen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !thread_state.stop.load(Ordering::Relaxed) {
                    thread_state.sample();
                    std::thread::park_timeout(SAMPLE_EVERY);
                }
            })
            .ok();
        Sampler { state, thread }
    }

    fn reset(&self) {
        self.state.peak.store(0, Ordering::Relaxed);
        self.state.seen.store(false, Ordering::Relaxed);
        self.state.sample();
    }

    fn peak(&self) -> Option<u64> {
        self.state.sample();
        self.state
            .seen
            .load(Ordering::Relaxed)
            .then(|| self.state.peak.load(Ordering::Relaxed))
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tree_is_measured() {
        let usage = tree_usage(std::process::id()).expect("this process");
        assert!(usage.rss > 0);
        assert!(tree(std::process::id())[0].pid == std::process::id());
    }

    #[test]
    fn thread_names_may_hold_anything() {
        let stat = parse_stat(
            "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 3 0 99 1000 5 \
             18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
        )
        .expect("parsed");
        assert_eq!(stat.name, "a) b (c)");
        assert_eq!((stat.own_ticks, stat.own_kernel_ticks), (10, 3));
        assert_eq!((stat.ticks, stat.kernel_ticks), (13, 4));
        assert_eq!((stat.start_time, stat.rss_pages), (99, 5));
    }

    #[test]
    fn cpu_is_split_by_thread_and_the_rest_of_the_machine() {
        let secs = |total, kernel| Cpu {
            total: Duration::from_secs(total),
            kernel: Duration::from_secs(kernel),
        };
        let snapshot = |total, threads: &[(&str, Cpu)], generator, machine| CpuSnapshot {
            server: Some(TreeCpu {
                total,
                threads: threads.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            }),
            generator: Duration::from_secs(generator),
            machine: Some(Machine {
                busy: Duration::from_secs(machine),
                switches: machine * 10,
                segments: Some(machine * 100),
            }),
        };
        let before = snapshot(
            secs(10, 4),
            &[
                ("serve-0", secs(4, 2)),
                ("serve-1", secs(5, 2)),
                ("guest", secs(1, 0)),
            ],
            3,
            100,
        );
        // serve-1 ended and a new thread started: what no live thread accounts for
        // is (exited).
        let after = snapshot(
            secs(20, 9),
            &[
                ("serve-0", secs(9, 5)),
                ("guest", secs(1, 0)),
                ("blocking", secs(2, 1)),
            ],
            6,
            118,
        );
        let usage = after.since(&before);
        assert_eq!(
            usage.server_cpu.map(|c| c.total),
            Some(Duration::from_secs(10))
        );
        let threads: Vec<(&str, u64, u64)> = usage
            .server_threads
            .iter()
            .map(|(n, c)| (n.as_str(), c.total.as_secs(), c.kernel.as_secs()))
            .collect();
        assert_eq!(
            threads,
            [("serve-0", 5, 3), ("(exited)", 3, 1), ("blocking", 2, 1)]
        );
        assert_eq!(usage.generator_cpu, Duration::from_secs(3));
        assert_eq!(usage.other_cpu, Some(Duration::from_secs(5)));
        assert_eq!(usage.context_switches, Some(180));
        assert_eq!(usage.tcp_segments, Some(1800));
    }
}
