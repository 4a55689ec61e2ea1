//! `ais-wasm bench serve` end to end on tiny settings: the default server (this
//! binary's `serve`) with the echo example, driven over hpush, direct put and
//! WebSocket; every object verified, none failed. And `bench start`; and settings
//! under which a run would measure nothing, refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{ais_wasm, component};

/// Runs a bench command that must succeed, with `--json` into `dir`: its stdout and
/// the JSON it wrote.
fn succeeds(mut command: Command, dir: &Path) -> (String, serde_json::Value) {
    let json = dir.join("report.json");
    let output = command.arg("--json").arg(&json).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, report)
}

#[test]
fn bench_serve_verifies_every_transport_it_drives() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = ais_wasm(dir.path());
    command
        .args(["bench", "serve", "--component"])
        .arg(component("examples/echo"))
        .args([
            "--transports",
            "hpush-body,hpush-direct-put,ws",
            "--sizes",
            "4KiB",
            "--concurrency",
            "2",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            // Each WebSocket object in four frames, joined by the server.
            "--ws-frame",
            "1KiB",
        ]);
    let (stdout, report) = succeeds(command, dir.path());
    let cells = report["cells"].as_array().unwrap();
    let transports: Vec<&str> = cells
        .iter()
        .map(|c| c["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["hpush-body", "hpush-direct-put", "ws"]);
    for cell in cells {
        assert_eq!(cell["errors"], 0, "{cell}");
        assert_eq!(cell["size_bytes"], 4096, "{cell}");
        assert!(cell["objects_per_s"].as_f64().unwrap() > 0.0, "{cell}");
        assert!(cell["server_cpu_s"].as_f64().is_some(), "{cell}");
        assert!(cell["other_cores"].as_f64().unwrap() >= 0.0, "{cell}");
        for counted in ["context_switches_per_object", "tcp_segments_per_object"] {
            assert!(cell[counted].as_f64().unwrap() > 0.0, "{counted}: {cell}");
        }
        // The server's CPU by thread adds up to its total (within a few clock ticks:
        // they are read moments apart), and the serving threads did the work.
        let threads = cell["server_threads"].as_array().unwrap();
        let server_cpu = cell["server_cpu_s"].as_f64().unwrap();
        let by_thread: f64 = threads.iter().map(|t| t["cpu_s"].as_f64().unwrap()).sum();
        assert!((by_thread - server_cpu).abs() <= 0.05, "{cell}");
        if server_cpu >= 0.05 {
            assert!(
                threads
                    .iter()
                    .any(|t| t["name"].as_str().unwrap().starts_with("serve-")),
                "{cell}"
            );
        }
        // Null when the cell was too short for a clock tick of server CPU.
        let kernel = &cell["server_kernel_pct"];
        assert!(
            kernel.is_null() || (0.0..=100.0).contains(&kernel.as_f64().unwrap()),
            "{cell}"
        );
        assert!(
            cell["server_peak_rss_bytes"].as_u64().unwrap() > 0,
            "{cell}"
        );
    }
    assert_eq!(report["server"]["label"], "ais-wasm");
    assert_eq!(report["settings"]["ws_frame"], 1024);
    assert!(stdout.contains("| hpush-direct-put"), "{stdout}");
}

/// Interrupted, a bench stops the server it started (in a process group of its own,
/// which a terminal's Ctrl-C does not reach), removes its objects' files and exits
/// 128 + the signal's number.
#[test]
fn an_interrupted_bench_leaves_no_server_running() {
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = ais_wasm(dir.path());
        // Its objects' mountpath is made here: killed outright, it cannot remove it.
        command
            .env("TMPDIR", dir.path())
            .args(["bench", "serve", "--component"])
            .arg(component("examples/echo"))
            .args(["--transports", "hpush-body", "--sizes", "1KiB"])
            .args([
                "--concurrency",
                "1",
                "--duration",
                "60s",
                "--warmup",
                "100ms",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let bench = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let server = loop {
            if let Some(&pid) = children(bench.id()).first() {
                break pid;
            }
            assert!(Instant::now() < deadline, "no server started");
            std::thread::sleep(Duration::from_millis(10));
        };
        // SAFETY: signalling our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(bench.id() as libc::pid_t, signal) }, 0);
        let output = bench.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if signal == libc::SIGINT {
            assert_eq!(output.status.code(), Some(130), "{stderr}");
            assert!(stderr.contains("error: interrupted by SIGINT"), "{stderr}");
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .filter(|name| name.to_string_lossy().starts_with("ais-wasm-load-"))
                .collect();
            assert!(
                left.is_empty(),
                "the objects' files outlived their bench: {left:?}"
            );
        }
        // Killed outright, the bench stopped nothing: the kernel tells the server.
        let deadline = Instant::now() + Duration::from_secs(30);
        while running(server) {
            assert!(
                Instant::now() < deadline,
                "the server {server} outlived its bench ({signal})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether `pid` runs: it exists, and is no zombie waiting for a parent to reap it.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.starts_with(" Z"))
    })
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let parent_of = |stat: &str| -> Option<u32> {
        // After the name, which may hold spaces, in parentheses: state, then ppid.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
                == Some(pid)
        })
        .collect()
}

/// Wrong bytes are caught: echo's output checked as upper's fails every object,
/// over HTTP and as direct puts, and the command says so.
#[test]
fn bench_serve_fails_on_wrong_output() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = ais_wasm(dir.path())
        .args(["bench", "serve", "--component"])
        .arg(component("examples/echo"))
        .args([
            "--verify",
            "upper",
            "--transports",
            "hpull-fqn,ws-direct-put",
            "--sizes",
            "1KiB",
            "--concurrency",
            "1",
            "--duration",
            "100ms",
            "--warmup",
            "0s",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("differs at byte"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for cell in report["cells"].as_array().unwrap() {
        assert_eq!(cell["objects"], 0, "{cell}");
        assert!(cell["errors"].as_u64().unwrap() > 0, "{cell}");
    }
}

/// `bench start` starts the server once to compile, then from the compile cache, and
/// reports each start.
#[test]
fn bench_start_times_a_cold_start_and_starts_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = ais_wasm(dir.path());
    command
        .args(["bench", "start", "--runs", "2"])
        .arg(component("examples/echo"));
    let (stdout, report) = succeeds(command, dir.path());
    assert!(stdout.contains("| etl_echo.wasm |"), "{stdout}");
    let [starts] = report.as_array().unwrap().as_slice() else {
        panic!("one component, one entry: {report}")
    };
    assert_eq!(starts["component"], "etl_echo.wasm");
    assert!(starts["size_bytes"].as_u64().unwrap() > 0, "{starts}");
    assert!(starts["cold_ms"].as_f64().unwrap() > 0.0, "{starts}");
    let cached = starts["cached_ms"].as_array().unwrap();
    assert_eq!(cached.len(), 2, "{starts}");
    assert!(
        cached.iter().all(|ms| ms.as_f64().unwrap() > 0.0),
        "{starts}"
    );
}

/// Settings under which a run would measure nothing are refused up front, each with
/// the flag to change, before a server is started.
#[test]
fn bench_refuses_settings_that_would_measure_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let serve = &["bench", "serve", "--component"][..];
    let soak = &["bench", "soak", "--component"][..];
    let start = &["bench", "start"][..];
    for (command, settings, message) in [
        (
            serve,
            &["--duration", "0s"][..],
            "--duration must be more than 0s",
        ),
        (serve, &["--objects", "0"], "--objects must be at least 1"),
        (
            serve,
            &["--concurrency", "8,0"],
            "--concurrency levels must be at least 1",
        ),
        (
            serve,
            &["--request-timeout", "0s"],
            "--request-timeout must be more than 0s",
        ),
        (soak, &["--objects", "0"], "--objects must be at least 1"),
        (start, &["--runs", "0"], "--runs must be at least 1"),
        (
            start,
            &["--start-timeout", "0s"],
            "--start-timeout must be more than 0s",
        ),
    ] {
        let output = ais_wasm(dir.path())
            .args(command)
            .arg(component("examples/echo"))
            .args(settings)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{settings:?}: {stderr}");
        assert!(stderr.contains(message), "{settings:?}: {stderr}");
    }
}
