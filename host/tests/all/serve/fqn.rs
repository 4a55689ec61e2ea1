//! `etl_fqn` confinement (§5.3, §11): only files shaped like AIStore objects
//! (`<mountpath>/@<provider>[/#<namespace>]/<bucket>/%ob/<object>`), under
//! `ETL_FQN_ROOTS` when it is set, both as written and after symbolic links. Anything
//! else is 403 (a TEXT diagnostic over WebSocket), and the file is never opened: the
//! FIFOs below would hang any server that opened them.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::SinkExt;

use super::harness::{
    RawResponse, Server, ServerBuilder, client, etl_fqn_param, path_escape, query_escape, request,
};
use super::ws;

const SECRET: &[u8] = b"SECRET CONTENT outside the mountpaths";

/// A mountpath (`mp1`, the configured root) beside files it must not expose.
struct Layout {
    _dir: tempfile::TempDir,
    /// The temporary directory, symbolic links resolved.
    base: PathBuf,
    /// The configured mountpath.
    root: PathBuf,
    /// Another configured mountpath, empty.
    spare: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let layout = Layout {
            root: base.join("mp1"),
            spare: base.join("mp2"),
            _dir: dir,
            base,
        };
        std::fs::create_dir_all(&layout.spare).unwrap();
        let outside = layout.base.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
        mkfifo(&outside.join("fifo"));
        // A well-formed object on a mountpath that is not configured.
        layout.write(&outside.join("mp9/@ais/src/%ob/o"), b"other mountpath");

        layout.write(&layout.object("good"), b"good object");
        layout.write(&layout.root.join("@ais/src/not-an-object"), SECRET);
        layout.write(&layout.root.join("@ais/src/%wk/work-file"), SECRET);
        std::fs::create_dir_all(layout.object("a-directory")).unwrap();
        mkfifo(&layout.object("fifo"));
        for (link, to) in [
            ("link-secret", outside.join("secret.txt")),
            ("link-outside-dir", outside.clone()),
            ("link-fifo", outside.join("fifo")),
            ("link-other-mountpath", outside.join("mp9/@ais/src/%ob/o")),
            ("link-inside", layout.object("good")),
        ] {
            std::os::unix::fs::symlink(to, layout.object(link)).unwrap();
        }
        // The mountpath reached through a symbolic link, as a deployment may mount it.
        std::os::unix::fs::symlink(&layout.root, layout.base.join("link-to-mp1")).unwrap();
        layout
    }

    /// The FQN of object `name` of bucket `ais://src` on the configured mountpath.
    fn object(&self, name: &str) -> PathBuf {
        self.root.join("@ais/src/%ob").join(name)
    }

    fn write(&self, path: &Path, data: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let name = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
}

/// `etl_fqn=` with `value` as the target's `PathEscape` output, query-encoded again.
fn wire(value: &str) -> String {
    format!("etl_fqn={}", query_escape(value))
}

/// hpush with an FQN, bounded so that a server that opened a FIFO fails the test.
async fn put(server: &Server, object: &str, fqn_param: &str) -> RawResponse {
    let target = format!("/{object}?{fqn_param}");
    tokio::time::timeout(
        Duration::from_secs(20),
        request(server.addr, "PUT", &target, &[], b""),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to PUT {target}: was a FIFO opened?"))
}

fn assert_refused(response: &RawResponse, object: &str, cause: &str, case: &str) {
    assert_eq!(response.status, 403, "{case}: {response:?}");
    let body = String::from_utf8_lossy(&response.body);
    assert!(body.starts_with(&format!("{object}: ")), "{case}: {body}");
    assert!(body.contains(cause), "{case}: {cause:?} not in {body:?}");
    assert!(!body.contains("SECRET"), "{case}: {body}");
}

async fn assert_healthy_and_serving(server: &Server, layout: &Layout) {
    let response = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = put(server, "src/good", &etl_fqn_param(&layout.object("good"))).await;
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"good object"[..])
    );
}

const NOT_AN_OBJECT: &str = "is not an AIStore object path";
const OUTSIDE_ROOTS: &str = "is not under any mountpath root in ETL_FQN_ROOTS";
const LINK_OUTSIDE: &str = "leads through a symbolic link";
const NOT_A_FILE: &str = "is not a regular file";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_from_the_configured_mountpath_are_403_and_not_opened() {
    let layout = Layout::new();
    let server = ServerBuilder::new("examples/echo")
        // A list, as a deployment with several mountpaths has.
        .env(
            "ETL_FQN_ROOTS",
            format!("{}:{}", layout.root.display(), layout.spare.display()),
        )
        .start()
        .await;
    assert_healthy_and_serving(&server, &layout).await;

    let root = layout.root.to_str().unwrap();
    let base = layout.base.to_str().unwrap();
    // From the object directory, four levels up is `base`.
    let up = format!("{root}/@ais/src/%ob/../../../..");
    let escaped_dots = |path: &str| path_escape(path).replace("..", "%2E%2E");
    let cases: Vec<(&str, String, &str)> = vec![
        ("absolute", wire(&path_escape("/etc/passwd")), NOT_AN_OBJECT),
        ("relative", wire("etc%2Fpasswd"), NOT_AN_OBJECT),
        (
            "dot-dot",
            wire(&path_escape(&format!("{up}/outside/secret.txt"))),
            NOT_AN_OBJECT,
        ),
        (
            "dot-dot past /",
            wire(&path_escape(&format!("{up}/../../../../../../etc/passwd"))),
            NOT_AN_OBJECT,
        ),
        // `%2E%2E` in the PathEscape'd value: one decoding too many would be needed
        // to see dots, and it happens (§5.3), so normalisation must follow it.
        (
            "encoded dot-dot",
            wire(&escaped_dots(&format!("{up}/outside/secret.txt"))),
            NOT_AN_OBJECT,
        ),
        (
            "encoded dot-dot onto the FIFO",
            wire(&escaped_dots(&format!("{up}/outside/fifo"))),
            NOT_AN_OBJECT,
        ),
        (
            "dot-dot into another mountpath",
            wire(&path_escape(&format!("{up}/outside/mp9/@ais/src/%ob/o"))),
            OUTSIDE_ROOTS,
        ),
        // `%252E` decodes to the literal name `%2E%2E`, never to `..`: outside the
        // object shape here, so refused without a lookup.
        (
            "double-encoded dot-dot",
            wire(&format!(
                "{}%2F%252E%252E%2Fsecret.txt",
                path_escape(&format!("{base}/outside"))
            )),
            NOT_AN_OBJECT,
        ),
        (
            "not under %ob",
            wire(&path_escape(&format!("{root}/@ais/src/not-an-object"))),
            NOT_AN_OBJECT,
        ),
        (
            "a work file",
            wire(&path_escape(&format!("{root}/@ais/src/%wk/work-file"))),
            NOT_AN_OBJECT,
        ),
        (
            "the FIFO itself",
            wire(&path_escape(&format!("{base}/outside/fifo"))),
            NOT_AN_OBJECT,
        ),
        (
            "another mountpath",
            etl_fqn_param(&layout.base.join("outside/mp9/@ais/src/%ob/o")),
            OUTSIDE_ROOTS,
        ),
        (
            "symlink to a file outside",
            etl_fqn_param(&layout.object("link-secret")),
            LINK_OUTSIDE,
        ),
        (
            "symlinked directory leading outside",
            etl_fqn_param(&layout.object("link-outside-dir").join("secret.txt")),
            LINK_OUTSIDE,
        ),
        (
            "symlink to a FIFO outside",
            etl_fqn_param(&layout.object("link-fifo")),
            LINK_OUTSIDE,
        ),
        (
            "symlink to another mountpath",
            etl_fqn_param(&layout.object("link-other-mountpath")),
            LINK_OUTSIDE,
        ),
        (
            "a directory",
            etl_fqn_param(&layout.object("a-directory")),
            NOT_A_FILE,
        ),
        (
            "a FIFO shaped like an object",
            etl_fqn_param(&layout.object("fifo")),
            NOT_A_FILE,
        ),
    ];
    for (case, fqn, cause) in &cases {
        let response = put(&server, "src/o", fqn).await;
        assert_refused(&response, "src/o", cause, case);
    }

    // hpull refuses the same way (§4.3), and never falls back to the target.
    let uname = path_escape("ais/@#/src/o");
    let response = client()
        .get(server.url(&format!("/{uname}?{}", wire(&path_escape("/etc/passwd")))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().starts_with("ais/@#/src/o: "));

    // An object path under the root that does not exist is 404, whatever its name:
    // the double-encoded dots are the literal name `%2E%2E`.
    for fqn in [
        etl_fqn_param(&layout.object("missing")),
        wire(&format!(
            "{}%2F%252E%252E%2F%252E%252E%2Foutside%2Fsecret.txt",
            path_escape(&format!("{root}/@ais/src/%ob"))
        )),
    ] {
        let response = put(&server, "src/o", &fqn).await;
        assert_eq!(response.status, 404, "{fqn}: {response:?}");
    }
    // A link that stays among the objects is followed.
    let response = put(
        &server,
        "src/o",
        &etl_fqn_param(&layout.object("link-inside")),
    )
    .await;
    assert_eq!(response.body, b"good object");

    assert_healthy_and_serving(&server, &layout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refusals_are_text_diagnostics() {
    let layout = Layout::new();
    let server = ServerBuilder::new("examples/echo")
        .env("ETL_FQN_ROOTS", &layout.root)
        .start()
        .await;
    let mut socket = ws::connect(&server).await;
    for (fqn, cause) in [
        (path_escape("/etc/passwd"), NOT_AN_OBJECT),
        (
            path_escape(layout.object("link-secret").to_str().unwrap()),
            LINK_OUTSIDE,
        ),
        (
            path_escape(layout.object("link-fifo").to_str().unwrap()),
            LINK_OUTSIDE,
        ),
    ] {
        socket
            .send(ws::control("", "", &fqn, "dir/o"))
            .await
            .unwrap();
        let reply = ws::text(ws::next_reply(&mut socket).await);
        assert!(reply.contains("dir/o: etl_fqn"), "{reply}");
        assert!(reply.contains(cause), "{cause:?} not in {reply:?}");
        assert!(!reply.contains("SECRET"), "{reply}");
    }
    // The connection still serves, from a data message and from an FQN.
    ws::send_object(&mut socket, ws::control("", "", "", "o"), b"still here").await;
    assert_eq!(ws::binary(ws::next_reply(&mut socket).await), "still here");
    let good = path_escape(layout.object("good").to_str().unwrap());
    socket.send(ws::control("", "", &good, "o")).await.unwrap();
    assert_eq!(ws::binary(ws::next_reply(&mut socket).await), "good object");
}

/// A root that is a symbolic link admits the files under the directory it leads
/// to, whichever of the two paths the FQN uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_mountpath_root_is_legitimate() {
    let layout = Layout::new();
    let link = layout.base.join("link-to-mp1");
    let server = ServerBuilder::new("examples/echo")
        .env("ETL_FQN_ROOTS", &link)
        .start()
        .await;
    for fqn in [
        link.join("@ais/src/%ob/good"),
        layout.object("good"),
        link.join("@ais/src/%ob/link-inside"),
    ] {
        let response = put(&server, "src/good", &etl_fqn_param(&fqn)).await;
        assert_eq!(response.status, 200, "{}: {response:?}", fqn.display());
        assert_eq!(response.body, b"good object");
    }
    let response = put(
        &server,
        "src/o",
        &etl_fqn_param(&link.join("@ais/src/%ob/link-secret")),
    )
    .await;
    assert_refused(&response, "src/o", LINK_OUTSIDE, "link through the root");
}

/// Without `ETL_FQN_ROOTS`, any object path is accepted, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_roots_the_object_shape_is_still_required() {
    let layout = Layout::new();
    let server = ServerBuilder::new("examples/echo").start().await;
    assert_healthy_and_serving(&server, &layout).await;
    let other = layout.base.join("outside/mp9/@ais/src/%ob/o");
    let response = put(&server, "src/o", &etl_fqn_param(&other)).await;
    assert_eq!(response.body, b"other mountpath");
    for (case, fqn, cause) in [
        ("absolute", wire(&path_escape("/etc/passwd")), NOT_AN_OBJECT),
        (
            "secret",
            etl_fqn_param(&layout.base.join("outside/secret.txt")),
            NOT_AN_OBJECT,
        ),
        (
            "symlink",
            etl_fqn_param(&layout.object("link-secret")),
            LINK_OUTSIDE,
        ),
        (
            "fifo",
            etl_fqn_param(&layout.base.join("outside/fifo")),
            NOT_AN_OBJECT,
        ),
    ] {
        let response = put(&server, "src/o", &fqn).await;
        assert_refused(&response, "src/o", cause, case);
    }
}

#[test]
fn unusable_roots_stop_the_server_from_starting() {
    for (roots, needle) in [
        ("/nonexistent/ais-wasm-root", "cannot be resolved"),
        ("relative/root", "is not an absolute path"),
        ("/etc/passwd", "is not a directory"),
        // Set, yet naming nothing: not taken for unset, which would admit any path.
        (" : , ", "names no directory"),
    ] {
        let (status, stderr) = ServerBuilder::new("examples/echo")
            .env("ETL_FQN_ROOTS", roots)
            .start_expecting_failure();
        assert!(!status.success());
        assert!(
            stderr.contains("ETL_FQN_ROOTS") && stderr.contains(needle),
            "{roots}: {stderr}"
        );
    }
}

/// An object the kernel must read from disk (evicted from the page cache) is loaded
/// on the blocking pool rather than on the request's thread, and served whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_not_in_the_page_cache_are_served_too() {
    use std::os::fd::AsRawFd;
    // On disk in the target directory: /tmp may be a tmpfs, which cannot evict.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fqn = dir.path().join("mp/@ais/src/%ob/cold");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::create_dir_all(fqn.parent().unwrap()).unwrap();
    std::fs::write(&fqn, &data).unwrap();
    // Read whole (echo buffers objects under 1 MiB) and streamed to the guest (upper
    // streams).
    for (component, expected) in [
        ("examples/echo", data.clone()),
        ("examples/upper", data.to_ascii_uppercase()),
    ] {
        let server = ServerBuilder::new(component).start().await;
        for transport in ["hpush", "ws"] {
            let file = std::fs::File::open(&fqn).unwrap();
            file.sync_all().unwrap();
            // SAFETY: a valid descriptor.
            let advice =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(advice, 0);
            let body = match transport {
                "hpush" => {
                    let response = put(&server, "src/cold", &etl_fqn_param(&fqn)).await;
                    assert_eq!(response.status, 200, "{response:?}");
                    response.body
                }
                _ => {
                    let mut socket = ws::connect(&server).await;
                    let fqn = path_escape(fqn.to_str().unwrap());
                    socket
                        .send(ws::control("", "", &fqn, "src/cold"))
                        .await
                        .unwrap();
                    ws::binary(ws::next_reply(&mut socket).await).to_vec()
                }
            };
            assert!(
                body == expected,
                "{component} over {transport}: the object came back wrong"
            );
        }
    }
}
