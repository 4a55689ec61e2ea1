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
// The child is reaped by wait4 below, which std does not know about.
#[allow(clippy::zombie_processes)]
pub fn run_measured(command: &mut Command) -> (i32, Vec<u8>, String, u64) {
    use std::io::Read;
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
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 reports this child's own peak RSS, unlike RUSAGE_CHILDREN, which other
    // tests' children would pollute.
    // SAFETY: the pid is our unwaited child; both pointers are valid.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as i32, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        code,
        stdout.join().unwrap(),
        stderr.join().unwrap(),
        usage.ru_maxrss as u64 * 1024,
    )
}
