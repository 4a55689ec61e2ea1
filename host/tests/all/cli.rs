//! `ais-wasm run` and `ais-wasm payload`, run as a user runs them.

use std::io::{Read, Write};

use md5::Digest;

use crate::support::{ais_wasm, component, run_measured};

fn run_example(example: &str, input: &[u8], extra: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.bin");
    std::fs::write(&file, input).unwrap();
    let output = ais_wasm(&dir.path().join("cache"))
        .arg("run")
        .arg("--component")
        .arg(component(example))
        .args(extra)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn echo_returns_the_input_byte_for_byte() {
    let input: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(run_example("examples/echo", &input, &[]), input);
    assert_eq!(run_example("examples/echo", b"", &[]), b"");
}

#[test]
fn the_guest_sees_the_input_path_as_the_object_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dir with space").join("obj ü.bin");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    std::fs::write(&input, b"x").unwrap();
    let output = ais_wasm(&dir.path().join("cache"))
        .arg("run")
        .arg("--component")
        .arg(component("host/tests/components/hostile"))
        .args(["--args", "path"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, input.to_str().unwrap().as_bytes());
}

#[test]
fn hello_answers_hello_world() {
    assert_eq!(
        run_example("examples/hello", b"anything", &[]),
        b"Hello World!"
    );
}

#[test]
fn md5_matches_known_digests() {
    assert_eq!(
        run_example("examples/md5", b"", &[]),
        b"d41d8cd98f00b204e9800998ecf8427e"
    );
    assert_eq!(
        run_example(
            "examples/md5",
            b"The quick brown fox jumps over the lazy dog",
            &[]
        ),
        b"9e107d9d372bb6826bd81d3542a419d6"
    );
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    let expected = hex::encode(md5::Md5::digest(&big));
    assert_eq!(run_example("examples/md5", &big, &[]), expected.as_bytes());
}

#[test]
fn hash_takes_its_algorithm_from_config_and_salt_from_args() {
    let digest = |salt: &str, data: &[u8]| {
        let mut hasher = sha2::Sha512::new();
        hasher.update(salt.as_bytes());
        hasher.update(data);
        hex::encode(hasher.finalize())
    };
    let out = run_example(
        "examples/hash",
        b"data",
        &["--config", "algorithm=sha512", "--args", "pepper"],
    );
    assert_eq!(out, digest("pepper", b"data").as_bytes());
    // 3 MiB is above the streaming threshold: the same digest through the other shape.
    let big = vec![7u8; 3 << 20];
    let out = run_example(
        "examples/hash",
        &big,
        &["--config", "algorithm=sha512", "--args", "salt"],
    );
    assert_eq!(out, digest("salt", &big).as_bytes());
}

#[test]
fn unknown_hash_algorithm_fails_start_up_with_the_guests_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x");
    std::fs::write(&file, b"x").unwrap();
    let output = ais_wasm(dir.path())
        .args(["run", "--config", "algorithm=crc"])
        .arg("--component")
        .arg(component("examples/hash"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown algorithm \"crc\""), "{stderr}");
}

/// Issue 2: upper on a 256 MiB input with the process's peak RSS under 64 MiB.
#[test]
fn upper_streams_256_mib_in_constant_memory() {
    const SIZE: usize = 256 << 20;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.txt");
    let pattern: Vec<u8> = (0..1 << 20)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123 \n"[i % 32])
        .collect();
    let mut file = std::fs::File::create(&input).unwrap();
    for _ in 0..SIZE / pattern.len() {
        file.write_all(&pattern).unwrap();
    }
    drop(file);
    // Compile once beforehand: the bound is on streaming, not on Cranelift, whose
    // memory at a cold start depends on how many threads it gets.
    let tiny = dir.path().join("tiny");
    std::fs::write(&tiny, b"warm").unwrap();
    let warm = ais_wasm(&dir.path().join("cache"))
        .arg("run")
        .arg("--component")
        .arg(component("examples/upper"))
        .arg(&tiny)
        .output()
        .unwrap();
    assert!(warm.status.success());
    let out_dir = dir.path().join("out");
    let (code, _, stderr, peak_rss) = run_measured(
        ais_wasm(&dir.path().join("cache"))
            .arg("run")
            .arg("--component")
            .arg(component("examples/upper"))
            .arg("--output")
            .arg(&out_dir)
            .arg(&input),
    );
    assert_eq!(code, 0, "{stderr}");
    let mut result = std::fs::File::open(out_dir.join("big.txt")).unwrap();
    assert_eq!(result.metadata().unwrap().len(), SIZE as u64);
    let expected = pattern.to_ascii_uppercase();
    let mut chunk = vec![0; pattern.len()];
    for _ in 0..SIZE / pattern.len() {
        result.read_exact(&mut chunk).unwrap();
        assert!(
            chunk == expected,
            "output differs from the upper-cased input"
        );
    }
    assert!(
        peak_rss < 64 << 20,
        "peak RSS {} MiB, over 64 MiB",
        peak_rss >> 20
    );
}

#[test]
fn several_inputs_go_to_an_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    // Named as a result's file is while it is written: the two never meet.
    let c = dir.path().join("a.partial");
    std::fs::write(&a, b"first").unwrap();
    std::fs::write(&b, b"second").unwrap();
    std::fs::write(&c, b"third").unwrap();
    let out = dir.path().join("out");
    let mut run = ais_wasm(&dir.path().join("cache"));
    // SAFETY: between fork and exec, only umask(2), async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut run, || {
            libc::umask(0o027);
            Ok(())
        });
    }
    let status = run
        .arg("run")
        .arg("--component")
        .arg(component("examples/upper"))
        .arg("-o")
        .arg(&out)
        .args([&c, &a, &b])
        .status()
        .unwrap();
    assert!(status.success());
    // Made as any new file is, within the umask.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out.join("a.txt")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);
    let mut results: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    results.sort();
    assert_eq!(results, ["a.partial", "a.txt", "b.txt"]);
    assert_eq!(std::fs::read(out.join("a.partial")).unwrap(), b"THIRD");
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"FIRST");
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"SECOND");

    let output = ais_wasm(dir.path())
        .arg("run")
        .arg("--component")
        .arg(component("examples/upper"))
        .args([&a, &b])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("2 inputs need --output DIR"));
}

#[test]
fn a_guest_error_names_the_object_and_the_cause_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::write(&good, b"ok").unwrap();
    std::fs::write(&bad, b"ok").unwrap();
    for (args, cause) in [
        ("bad-input", "the transform rejected the object: nope"),
        ("panic", "the transform crashed"),
    ] {
        let output = ais_wasm(&dir.path().join("cache"))
            .arg("run")
            .arg("--component")
            .arg(component("host/tests/components/hostile"))
            .args(["--args", args])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("error: {}: {cause}", bad.display())),
            "{stderr}"
        );
    }
    let stderr = String::from_utf8_lossy(
        &ais_wasm(&dir.path().join("cache"))
            .arg("run")
            .arg("--component")
            .arg(component("host/tests/components/hostile"))
            .args(["--args", "panic"])
            .arg(&bad)
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(
        stderr.contains("boom"),
        "the panic message reaches the user: {stderr}"
    );
}

/// An input without a size of its own (a device, a pipe) is read for a buffered
/// transform up to what an instance may hold, then refused; a failed result leaves
/// no file behind.
#[test]
fn an_endless_input_is_refused_past_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = ais_wasm(&dir.path().join("cache"))
        .arg("run")
        .arg("--component")
        .arg(component("examples/c-md5"))
        .args(["--max-memory", "48MiB", "-o"])
        .arg(&out)
        .arg("/dev/zero")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("more than the 50331648 bytes of memory an instance may have"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

/// A streamed result that cannot be written (a full disk, a closed pipe) stops its
/// transform at once, with the write's error, rather than when the object's deadline
/// passes; a pipe closed by its reader (`| head`) is no failure.
#[test]
fn a_streamed_result_that_cannot_be_written_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big");
    // Echo streams objects of 1 MiB and more.
    std::fs::write(&input, vec![b'x'; 8 << 20]).unwrap();
    let run = || {
        let mut command = ais_wasm(dir.path());
        command
            .args(["run", "--timeout", "1m", "--component"])
            .arg(component("examples/echo"))
            .arg(&input);
        command
    };
    let full = std::fs::File::create("/dev/full").unwrap();
    let started = std::time::Instant::now();
    let output = run().stdout(full).output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing the result: No space left on device"),
        "{stderr}"
    );
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");

    let mut child = run()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!((status.code(), stderr.as_str()), (Some(0), ""), "{head:?}");
}

/// Interrupted (Ctrl-C, or SIGTERM) in the middle of an object, `run` removes the
/// partial result it was writing, says so, and exits 128 + the signal's number.
#[test]
fn an_interrupted_run_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big");
    // Large enough to be streamed: the guest writes 5 bytes, then computes for ever.
    std::fs::write(&input, vec![b'i'; 2 << 20]).unwrap();
    for (signal, code, name) in [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
    ] {
        let out = dir.path().join(name);
        let child = ais_wasm(&dir.path().join("cache"))
            .arg("run")
            .arg("--component")
            .arg(component("host/tests/components/hostile"))
            .args(["--args", "write-loop", "-o"])
            .arg(&out)
            .arg(&input)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Under way once the partial file holds what the guest wrote.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let written = || {
            let partial = std::fs::read_dir(&out).ok()?.next()?.ok()?;
            (partial.metadata().ok()?.len() == 5).then_some(())
        };
        while written().is_none() {
            assert!(std::time::Instant::now() < deadline, "{name}: never wrote");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // SAFETY: signalling our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("error: interrupted by {name}")),
            "{stderr}"
        );
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "{name}");
    }
}

/// Limits no instance could run under are refused at start, naming the setting.
#[test]
fn impossible_limits_are_refused_naming_their_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.bin");
    std::fs::write(&file, b"x").unwrap();
    for (command, flag, value, says) in [
        (
            "run",
            "--max-memory",
            "8GiB",
            "--max-memory/ETL_WASM_MAX_MEMORY must be from 1MiB to 4GiB",
        ),
        (
            "run",
            "--max-memory",
            "512KiB",
            "--max-memory/ETL_WASM_MAX_MEMORY must be from 1MiB",
        ),
        (
            "run",
            "--max-output",
            "0",
            "--max-output/ETL_WASM_MAX_OUTPUT must be at least 64KiB",
        ),
        (
            "serve",
            "--held-input",
            "4GiB",
            "--held-input/ETL_WASM_HELD_INPUT must be from 1MiB to under 4GiB",
        ),
    ] {
        let mut ais_wasm = ais_wasm(&dir.path().join("cache"));
        ais_wasm
            .arg(command)
            .arg("--component")
            .arg(component("examples/echo"));
        match command {
            "run" => ais_wasm.arg(&file),
            _ => ais_wasm.args(["--listen", "127.0.0.1:0"]),
        };
        let output = ais_wasm.args([flag, value]).output().unwrap();
        assert!(!output.status.success(), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
}

/// Issue 2: the second start loads the component from the compile cache.
#[test]
fn second_start_loads_from_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"x").unwrap();
    let start = || {
        let output = ais_wasm(&dir.path().join("cache"))
            .env("RUST_LOG", "ais_wasm=info")
            .arg("run")
            .arg("--component")
            .arg(component("examples/md5"))
            .arg(&input)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let first = start();
    assert!(
        first.contains("compiled and cached") && first.contains("cache=Stored"),
        "{first}"
    );
    let second = start();
    assert!(
        second.contains("compile cache hit") && second.contains("cache=Hit"),
        "{second}"
    );
    assert!(!second.contains("compiled the component"), "{second}");
}

#[test]
fn payload_fits_an_env_var_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let output = ais_wasm(dir.path())
        .arg("payload")
        .arg(component("examples/md5"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let payload = String::from_utf8(output.stdout).unwrap();
    assert!(payload.trim().len() < 131_072 - 18);
    assert!(String::from_utf8_lossy(&output.stderr).contains("fits one environment variable"));

    let input = dir.path().join("in");
    std::fs::write(&input, b"").unwrap();
    let run = ais_wasm(&dir.path().join("cache"))
        .env("ETL_WASM_PAYLOAD", payload.trim())
        .arg("run")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.stdout, b"d41d8cd98f00b204e9800998ecf8427e");
}

/// `payload` and `spec` package only what `serve` would run, and no command reads
/// a component "file" that is not one: each says what the bytes are instead.
#[test]
fn payload_and_spec_refuse_what_serve_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cases = [
        (file("empty.wasm", b""), "this is not WebAssembly (0 bytes"),
        (
            file("core.wasm", b"\0asm\x01\0\0\0"),
            "a core WebAssembly module",
        ),
        (
            component("host/tests/components/command"),
            "exports neither",
        ),
        (dir.path().to_path_buf(), "not a regular file"),
        ("/dev/zero".into(), "not a regular file"),
    ];
    for (path, cause) in &cases {
        let path = path.to_str().unwrap();
        for args in [
            &["payload", path][..],
            &["spec", "--component", path, "--name", "my-etl"],
            &["run", "--component", path, "/dev/null"],
        ] {
            let output = ais_wasm(dir.path()).args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(stderr.contains(cause), "{args:?}: {cause:?} in {stderr}");
            assert!(output.stdout.is_empty(), "{args:?}");
        }
    }
}

#[test]
fn payload_too_large_for_an_env_var_points_to_path_and_url() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    // Incompressible, so its payload cannot fit.
    std::fs::write(&big, with_noise(200_000)).unwrap();
    let output = ais_wasm(dir.path())
        .arg("payload")
        .arg(&big)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "ETL_WASM_PATH",
        "ETL_WASM_URL",
        "ETL_WASM_SHA256=",
        "over the",
    ] {
        assert!(stderr.contains(needle), "{needle} missing in: {stderr}");
    }
}

fn spec(extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    ais_wasm(dir.path())
        .args(["spec", "--name", "md5-wasm", "--format", "json"])
        .args(extra)
        .output()
        .unwrap()
}

/// Issue 7: the runtime spec has ETLSpecMsg's field names (ext/etl/api.go) and carries
/// the component.
#[test]
fn spec_is_an_aistore_etl_spec_msg_carrying_the_component() {
    let md5 = component("examples/md5");
    let output = spec(&[
        "--component",
        md5.to_str().unwrap(),
        "--comm",
        "hpull",
        "--obj-timeout",
        "30s",
        "--config",
        "k=v",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let spec: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(spec["name"], "md5-wasm");
    assert_eq!(spec["communication"], "hpull://");
    assert_eq!(spec["obj_timeout"], "30s");
    assert_eq!(spec["init_timeout"], "5m");
    assert_eq!(spec["support_direct_put"], false);
    assert_eq!(
        spec["runtime"]["command"],
        serde_json::json!(["ais-wasm", "serve"])
    );
    assert!(
        spec["runtime"]["image"]
            .as_str()
            .unwrap()
            .starts_with("ais-wasm:")
    );
    let env = spec["runtime"]["env"].as_array().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
    };
    let payload = var("ETL_WASM_PAYLOAD").expect("the component travels inline");
    assert_eq!(
        ais_wasm::delivery::decode_payload(&payload).unwrap(),
        std::fs::read(&md5).unwrap()
    );
    assert_eq!(var("ETL_WASM_CONFIG").as_deref(), Some(r#"{"k":"v"}"#));
    // The pod's deadline per object: two thirds of the target's.
    assert_eq!(var("ETL_WASM_TIMEOUT").as_deref(), Some("20s"));

    // One given with --env is the only one.
    let output = self::spec(&[
        "--component",
        md5.to_str().unwrap(),
        "--obj-timeout",
        "10m",
        "--env",
        "ETL_WASM_TIMEOUT=1m",
    ]);
    let given: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let timeouts: Vec<_> = given["runtime"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "ETL_WASM_TIMEOUT")
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(timeouts, ["1m"]);
    assert_eq!(given["obj_timeout"], "10m");
}

#[test]
fn spec_refuses_what_aistore_refuses_and_pins_urls() {
    let md5 = component("examples/md5");
    let md5 = md5.to_str().unwrap();
    let ws = spec(&["--component", md5, "--comm", "ws"]);
    assert!(!ws.status.success());
    assert!(String::from_utf8_lossy(&ws.stderr).contains("without direct put"));
    let ws = spec(&["--component", md5, "--comm", "ws", "--direct-put"]);
    assert!(ws.status.success());
    // What the pod would refuse at start, or Kubernetes would take otherwise.
    for (flags, cause) in [
        (&["--workers", "0"][..], "--workers must be from 1 to 1024"),
        (&["--url", "ftp://x/y.wasm"], "must be an http or https URL"),
        (
            &["--env", "ETL_WASM_PAYLOAD=xx"],
            "the component's source is spec's",
        ),
        (
            &["--config", "k=v", "--env", "ETL_WASM_CONFIG={}"],
            "is set twice",
        ),
        (&["--cpu", "abc"], "is not a Kubernetes quantity"),
        (&["--memory", "1.5.2Gi"], "is not a Kubernetes quantity"),
    ] {
        let refused = spec(&[&["--component", md5][..], flags].concat());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{flags:?}");
        assert!(stderr.contains(cause), "{flags:?}: {stderr}");
    }
    let sized = spec(&["--component", md5, "--cpu", "500m", "--memory", "1.5Gi"]);
    assert!(
        sized.status.success(),
        "{}",
        String::from_utf8_lossy(&sized.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    let noise = with_noise(200_000);
    std::fs::write(&big, &noise).unwrap();
    let too_large = spec(&["--component", big.to_str().unwrap()]);
    assert!(!too_large.status.success());
    assert!(String::from_utf8_lossy(&too_large.stderr).contains("pass --url"));
    let by_url = spec(&[
        "--component",
        big.to_str().unwrap(),
        "--url",
        "http://proxy:8080/v1/objects/wasm/big.wasm",
    ]);
    assert!(by_url.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&by_url.stdout).unwrap();
    let env = spec["runtime"]["env"].to_string();
    assert!(
        env.contains("ETL_WASM_URL")
            && env.contains(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&noise))),
        "{env}"
    );
    assert!(!env.contains("ETL_WASM_PAYLOAD"));
}

/// The md5 example with `len` bytes that no compressor shrinks in a custom section.
fn with_noise(len: usize) -> Vec<u8> {
    let mut wasm = std::fs::read(component("examples/md5")).unwrap();
    let name = b"noise";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend(incompressible(len));
    wasm.push(0);
    leb128(&mut wasm, section.len());
    wasm.extend(section);
    wasm
}

fn leb128(to: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            return to.push(byte);
        }
        to.push(byte | 0x80);
    }
}

/// Bytes no compressor shrinks (xorshift64).
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
