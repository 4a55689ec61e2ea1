//! The runtime library against hostile guests: every misbehaviour gives a clear
//! per-object error, and the next object on the same engine succeeds.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ais_wasm::runtime::{
    Abort, CacheStatus, InputStream, InstanceMode, Limits, LoadError, ObjectError, ObjectRequest,
    Runtime, RuntimeConfig, Transform,
};

use crate::support::component;

const TIMEOUT: Duration = Duration::from_millis(800);

fn runtime(mode: InstanceMode, cache: Option<&std::path::Path>) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits: Limits {
            max_memory: 48 << 20,
            timeout: TIMEOUT,
            max_output: 1 << 20,
        },
        instance_mode: mode,
        concurrency: 2,
        cache_dir: cache.map(Into::into),
    })
    .unwrap()
}

async fn hostile(runtime: &Runtime) -> Transform {
    let wasm = std::fs::read(component("host/tests/components/hostile")).unwrap();
    runtime.load(wasm, vec![]).await.unwrap().0
}

async fn call(transform: &Transform, args: &str) -> Result<Vec<u8>, ObjectError> {
    let object = ObjectRequest {
        path: "bucket/object".into(),
        args: args.into(),
        ..Default::default()
    };
    transform.buffered(b"payload", &object).await
}

async fn assert_next_object_succeeds(transform: &Transform) {
    assert_eq!(call(transform, "").await.unwrap(), b"payload");
}

#[tokio::test]
async fn an_infinite_loop_stops_at_the_deadline() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    let started = Instant::now();
    let error = call(&transform, "loop").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error, ObjectError::Aborted(Abort::Timeout(t)) if t == TIMEOUT),
        "{error}"
    );
    assert!(
        elapsed >= TIMEOUT && elapsed < TIMEOUT * 4,
        "stopped after {elapsed:?}"
    );
    assert!(error.to_string().contains("exceeded its deadline"));
    assert_next_object_succeeds(&transform).await;
}

/// Abandoned mid-call (the server's client went away), a spinning guest stops at its
/// next epoch tick, well before its deadline, and its instance is replaced; a call
/// abandoned before it begins never takes an instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_call_stops_at_the_next_tick() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    let object = ObjectRequest {
        path: "o".into(),
        args: "loop".into(),
        ..Default::default()
    };
    let abandoned = object.abandoned.clone();
    let call = tokio::spawn({
        let transform = transform.clone();
        async move { transform.buffered(b"payload", &object).await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while transform.pool_gauges() != (0, 1) {
        assert!(Instant::now() < deadline, "the call never began");
        tokio::task::yield_now().await;
    }
    abandoned.cancel();
    let error = call.await.unwrap().unwrap_err();
    assert!(matches!(error, ObjectError::Abandoned), "{error}");
    assert!(
        error.to_string().contains("nobody waits for the result"),
        "{error}"
    );
    assert_eq!(transform.pool_stats().discarded.load(Ordering::Relaxed), 1);
    assert_next_object_succeeds(&transform).await;

    let created = transform.pool_stats().created.load(Ordering::Relaxed);
    let object = ObjectRequest::default();
    object.abandoned.cancel();
    let error = transform.buffered(b"payload", &object).await.unwrap_err();
    assert!(matches!(error, ObjectError::Abandoned), "{error}");
    assert_eq!(
        transform.pool_stats().created.load(Ordering::Relaxed),
        created
    );
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    for mode in [InstanceMode::Pooled, InstanceMode::Fresh] {
        let runtime = runtime(mode, None);
        let transform = hostile(&runtime).await;
        let error = call(&transform, "alloc").await.unwrap_err();
        assert!(
            matches!(error, ObjectError::Aborted(Abort::MemoryLimit { limit, .. }) if limit == 48 << 20),
            "{mode:?}: {error}"
        );
        assert!(error.to_string().contains("memory limit"), "{error}");
        assert_next_object_succeeds(&transform).await;
    }
}

#[tokio::test]
async fn panics_and_traps_are_reported_with_the_guests_message() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    let discarded_before = transform
        .pool_stats()
        .discarded
        .load(std::sync::atomic::Ordering::Relaxed);
    for (args, needle) in [
        ("panic", "boom"),
        ("abort", "unreachable"),
        ("stack", "call stack exhausted"),
        ("oob", "out of bounds memory access"),
    ] {
        let error = call(&transform, args).await.unwrap_err();
        assert!(
            matches!(error, ObjectError::Aborted(Abort::Trap { .. })),
            "{args}: {error}"
        );
        assert!(error.to_string().contains(needle), "{args}: {error}");
        assert_next_object_succeeds(&transform).await;
    }
    let discarded = transform
        .pool_stats()
        .discarded
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        discarded - discarded_before,
        4,
        "each trapped instance is replaced"
    );
}

#[tokio::test]
async fn oversized_buffered_output_is_refused() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    let error = call(&transform, "big:2000000").await.unwrap_err();
    assert!(
        matches!(error, ObjectError::Aborted(Abort::OutputLimit { limit }) if limit == 1 << 20),
        "{error}"
    );
    assert_eq!(call(&transform, "big:1000").await.unwrap().len(), 1000);
}

#[tokio::test]
async fn typed_errors_keep_the_instance() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    assert!(
        matches!(call(&transform, "bad-input").await, Err(ObjectError::BadInput(m)) if m == "nope")
    );
    assert!(matches!(call(&transform, "failed").await, Err(ObjectError::Failed(m)) if m == "nope"));
    assert_next_object_succeeds(&transform).await;
    let stats = transform.pool_stats();
    assert_eq!(stats.created.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        stats.discarded.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn the_guest_sees_no_environment_no_files_and_no_network() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    // SAFETY: set before anything reads the environment concurrently in this test.
    unsafe { std::env::set_var("AIS_WASM_TEST_SECRET", "hunter2") };
    assert_eq!(call(&transform, "env").await.unwrap(), b"");
    let passwd = call(&transform, "fs:/etc/passwd").await.unwrap();
    assert!(!passwd.starts_with(b"root:"), "the guest read /etc/passwd");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let net = call(&transform, &format!("net:{addr}")).await.unwrap();
    assert_ne!(net, b"connected", "the guest opened a TCP connection");
}

#[tokio::test]
async fn a_flood_of_guest_output_does_not_block_the_object() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    // 2 × 10,000 lines of 100 bytes: far beyond the per-object log budget.
    assert_eq!(call(&transform, "flood:10000").await.unwrap(), b"payload");
}

#[tokio::test]
async fn streaming_guests_that_stall_or_skip_their_input() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    let object = |args: &str| ObjectRequest {
        path: "o".into(),
        args: args.into(),
        ..Default::default()
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let input = InputStream::new(&b"never read"[..], Some(10));
    assert_eq!(
        transform
            .streaming(input, sender, &object("never-read"))
            .await
            .unwrap(),
        0
    );
    assert!(receiver.recv().await.is_none());

    let (sender, _receiver) = tokio::sync::mpsc::channel(4);
    let input = InputStream::new(&b"spin"[..], None);
    let error = transform
        .streaming(input, sender, &object("loop"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ObjectError::Aborted(Abort::Timeout(_))),
        "{error}"
    );

    let (sender, mut receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let data = vec![5u8; 300_000];
    let input = InputStream::new(std::io::Cursor::new(data.clone()), Some(300_000));
    let collect = async {
        let mut out = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            out.extend_from_slice(&chunk);
        }
        out
    };
    let echo = object("");
    let (written, out) = tokio::join!(transform.streaming(input, sender, &echo), collect);
    assert_eq!(written.unwrap(), 300_000);
    assert_eq!(out, data);
}

#[tokio::test]
async fn a_receiver_that_goes_away_aborts_the_stream_as_an_output_error() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let transform = hostile(&runtime).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    drop(receiver);
    let input = InputStream::new(std::io::Cursor::new(vec![1u8; 1 << 20]), None);
    let object = ObjectRequest {
        path: "o".into(),
        args: String::new(),
        ..Default::default()
    };
    let error = transform
        .streaming(input, sender, &object)
        .await
        .unwrap_err();
    assert!(matches!(error, ObjectError::Output(_)), "{error}");
    assert_next_object_succeeds(&transform).await;
}

#[tokio::test]
async fn fresh_mode_creates_an_instance_per_object() {
    let runtime = runtime(InstanceMode::Fresh, None);
    let transform = hostile(&runtime).await;
    for _ in 0..3 {
        assert_next_object_succeeds(&transform).await;
    }
    // One at load time, then one per object.
    assert_eq!(
        transform
            .pool_stats()
            .created
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

/// Fresh instances stop hostile guests as pooled ones do (the memory limit: above),
/// and a read past the memory traps even where the slot's instance before grew it.
#[tokio::test]
async fn fresh_instances_stop_hostile_guests_too() {
    let runtime = runtime(InstanceMode::Fresh, None);
    let transform = hostile(&runtime).await;
    // 1 MiB past the initial memory, grown and dirtied in the slot the next
    // instance takes.
    assert_eq!(call(&transform, "grown").await.unwrap(), b"0");
    for (args, needle) in [
        ("oob", "out of bounds memory access"),
        ("panic", "boom"),
        ("abort", "unreachable"),
        ("stack", "call stack exhausted"),
        ("loop", "exceeded its deadline"),
    ] {
        let error = call(&transform, args).await.unwrap_err();
        assert!(matches!(error, ObjectError::Aborted(_)), "{args}: {error}");
        assert!(error.to_string().contains(needle), "{args}: {error}");
        assert_next_object_succeeds(&transform).await;
    }
}

#[tokio::test]
async fn a_fresh_instance_starts_from_the_components_image() {
    // A kept instance remembers its earlier objects and what they wrote.
    let pooled = runtime(InstanceMode::Pooled, None);
    let kept = hostile(&pooled).await;
    assert_eq!(call(&kept, "residue").await.unwrap(), b"0 0");
    assert_eq!(call(&kept, "residue").await.unwrap(), b"1 10485760");
    // A fresh one sees neither, though its slot and the pages it keeps mapped are
    // the last instance's.
    let fresh = runtime(InstanceMode::Fresh, None);
    let each = hostile(&fresh).await;
    for _ in 0..3 {
        assert_eq!(call(&each, "residue").await.unwrap(), b"0 0");
    }
    // Nor the memory the last instance grew in the same slot.
    for _ in 0..3 {
        assert_eq!(call(&each, "grown").await.unwrap(), b"0");
    }
}

#[tokio::test]
async fn init_errors_fail_the_load() {
    let runtime = runtime(InstanceMode::Pooled, None);
    let wasm = std::fs::read(component("host/tests/components/hostile")).unwrap();
    let config = vec![("fail-init".to_string(), "yes".to_string())];
    let Err(error) = runtime.load(wasm, config).await else {
        panic!("init failure was ignored")
    };
    assert!(
        matches!(&error, LoadError::FirstInstance(ObjectError::Failed(m)) if m == "init refused"),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "the component's first instance failed: its init returned an error: init refused"
    );
}

#[tokio::test]
async fn the_compile_cache_is_used_on_the_second_load() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(component("examples/echo")).unwrap();
    let (_, first) = runtime(InstanceMode::Pooled, Some(cache.path()))
        .load(wasm.clone(), vec![])
        .await
        .unwrap();
    assert_eq!(first.cache, CacheStatus::Stored);
    let (transform, second) = runtime(InstanceMode::Pooled, Some(cache.path()))
        .load(wasm, vec![])
        .await
        .unwrap();
    assert_eq!(second.cache, CacheStatus::Hit);
    assert_next_object_succeeds(&transform).await;

    // A page of machine code lost on disk: compiled again, not run.
    let entry = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut code = std::fs::read(&entry).unwrap();
    let middle = code.len() / 2;
    code[middle..middle + 4096].fill(0);
    std::fs::write(&entry, code).unwrap();
    let (transform, third) = runtime(InstanceMode::Pooled, Some(cache.path()))
        .load(std::fs::read(component("examples/echo")).unwrap(), vec![])
        .await
        .unwrap();
    assert_eq!(third.cache, CacheStatus::Stored);
    assert_next_object_succeeds(&transform).await;
}
