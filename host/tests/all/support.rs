//! Shared test helpers: building components, running the binary, measuring it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository's root directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Build the component in `dir` (relative to the repository) with its `build.sh`,
/// once per test process, and return the `.wasm` path it printed last.
pub fn component(dir: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(dir) {
        return path.clone();
    }
    let output = Command::new(repo().join(dir).join("build.sh"))
        .output()
        .unwrap_or_else(|e| panic!("running {dir}/build.sh: {e}"));
    assert!(
        output.status.success(),
        "{dir}/build.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let path = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build.sh printed nothing")
            .trim(),
    );
    assert!(
        path.is_file(),
        "{dir}/build.sh printed {path:?}, which is not a file"
    );
    built
        .as_mut()
        .unwrap()
        .insert(dir.to_string(), path.clone());
    path
}

/// `ais-wasm` with a private compile cache and quiet logs.
pub fn ais_wasm(cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ais-wasm"));
    command
        .env("ETL_WASM_CACHE_DIR", cache)
        .env("RUST_LOG", "warn");
    for var in [
        "ETL_WASM_PATH",
        "ETL_WASM_PAYLOAD",
        "ETL_WASM_URL",
        "ETL_WASM_SHA256",
        "ETL_WASM_CONFIG",
    ] {
        command.env_remove(var);
    }
    command
}

/// Run `command` to completion; returns (exit code, stdout, stderr, peak RSS bytes).
///
/// The peak is the child's `VmHWM`, read until it exits: `wait4`'s `ru_maxrss` would
/// count this process's own peak too, since a spawned child runs on its parent's
/// memory until it execs, and this process holds other tests' data.
pub fn run_measured(command: &mut Command) -> (i32, Vec<u8>, String, u64) {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning ais-wasm");
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout_pipe.read_to_end(&mut buf).unwrap();
        buf
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = String::new();
        stderr_pipe.read_to_string(&mut buf).unwrap();
        buf
    });
    let (peak, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), child.id());
        // VmHWM only rises, so the last reading before the exit is the peak, but
        // for what the last few milliseconds might add.
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmHWM:") {
                    peak.fetch_max(kib * 1024, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let status = child.wait().expect("waiting for ais-wasm");
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (
        status.code().unwrap_or(-1),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
        peak.load(Ordering::Relaxed),
    )
}

/// A `kB` field of /proc/PID/status; `None` once the process has gone (or is a zombie,
/// whose memory is released).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()
}
