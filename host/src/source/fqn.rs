//! `etl_fqn`: the path of the object's file on the target's mountpaths, which the
//! pod sees read-only at the same paths (protocol document §5.3), and which files
//! such a path may name (§11).
//!
//! Decoding follows the references (percent-decoding, lexical normalisation). The
//! references stop there, so anyone who can reach the pod's port can read any file
//! the pod can read; [`FqnPolicy`] confines FQNs to files shaped like AIStore
//! objects (`fs/fs.go`, `MakePathFQN`), optionally under configured mountpath roots,
//! as written and as opened (`super::file`). Legitimate target traffic never notices.
//!
//! This file is self-contained on purpose (std, `percent-encoding` and `thiserror`,
//! no `crate::` paths): the fuzz crate (`fuzz/`) compiles it on its own rather than
//! building the whole host, wasmtime included, with coverage instrumentation. Keep
//! it that way, or make the fuzz crate depend on the host.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Decode an FQN as the references do: the value arrives query-decoded (HTTP) or as
/// the JSON string (WebSocket); it is percent-decoded once more (plain RFC 3986: `+`
/// stays `+`), trimmed, and normalised lexically into an absolute path. The result
/// is raw bytes, not necessarily UTF-8.
pub fn decode(value: &str) -> PathBuf {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(value.trim()).collect();
    normalize(PathBuf::from(OsString::from_vec(bytes)))
}

/// Join to `/` and resolve `.` and `..` without touching the filesystem, like
/// Python's `os.path.normpath("/" + path)`: `..` never climbs above `/`.
fn normalize(path: PathBuf) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The content-type directory of objects (`fs.ObjCT`); work files, EC slices and
/// chunks live beside it under other names and are never handed to an ETL.
const OBJECT_CONTENT_TYPE: &[u8] = b"%ob";

/// Which files an `etl_fqn` may name. Built once at start-up from `ETL_FQN_ROOTS`.
///
/// A path is accepted when it is an AIStore object FQN,
/// `<mountpath>/@<provider>[/#<namespace> | /@<uuid>#<namespace>]/<bucket>/%ob/<object>`,
/// both as written (after normalisation) and as the file actually opened resolves, and,
/// when roots are configured, when `<mountpath>` is one of the roots or lies under
/// one. Checking the path as written first means a refused path is never looked up
/// on disk, so the answer says nothing about which files exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FqnPolicy {
    /// Each configured root as written (normalised) and as resolved; empty: any
    /// mountpath.
    roots: Vec<PathBuf>,
}

/// Why an FQN was refused (the caller answers 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FqnRefusal {
    /// The path does not have the shape of an object's file on a mountpath.
    #[error(
        "is not an AIStore object path (<mountpath>/@<provider>[/#<namespace>]/<bucket>/%ob/<object>)"
    )]
    NotAnObjectPath,
    /// The path is an object path, but not under any configured root.
    #[error("is not under any mountpath root in ETL_FQN_ROOTS")]
    OutsideRoots,
    /// The path is acceptable as written, but a symbolic link takes it elsewhere.
    #[error("leads through a symbolic link to a file that is not an allowed object path")]
    LinkOutside,
    /// The path names a directory, device, FIFO or socket rather than a file.
    #[error("is not a regular file")]
    NotAFile,
    /// The path holds a NUL byte, which no file name can.
    #[error("holds a NUL byte, which no file name can")]
    Nul,
}

/// Why `ETL_FQN_ROOTS` is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("ETL_FQN_ROOTS entry {0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("ETL_FQN_ROOTS entry {} cannot be resolved: {error}", root.display())]
    Unresolvable { root: PathBuf, error: io::Error },
    #[error("ETL_FQN_ROOTS entry {} is not a directory; list mountpaths", .0.display())]
    NotADirectory(PathBuf),
    /// Set, but to separators only: taken for unset, it would accept any mountpath.
    #[error(
        "ETL_FQN_ROOTS {0:?} names no directory; list mountpaths, or unset it to accept \
         any mountpath"
    )]
    NoEntries(String),
}

impl FqnPolicy {
    /// Any object path on any mountpath: the shape is checked, the location is not.
    pub fn any_mountpath() -> Self {
        FqnPolicy { roots: Vec::new() }
    }

    /// Object paths under these roots only (a mountpath, or a directory holding
    /// mountpaths). Each root is resolved now, so that a root which is itself a
    /// symbolic link still admits the files it leads to; a root that does not
    /// exist is a configuration error.
    pub fn under(roots: &[PathBuf]) -> Result<Self, RootsError> {
        let mut all = Vec::new();
        for root in roots {
            let resolved =
                std::fs::canonicalize(root).map_err(|error| RootsError::Unresolvable {
                    root: root.clone(),
                    error,
                })?;
            if !resolved.is_dir() {
                return Err(RootsError::NotADirectory(root.clone()));
            }
            all.push(normalize(root.clone()));
            all.push(resolved);
        }
        Ok(FqnPolicy::with_resolved_roots(all))
    }

    /// A policy from roots taken as they are, without looking at the filesystem (for
    /// callers that resolved them already, and for fuzzing).
    pub fn with_resolved_roots(mut roots: Vec<PathBuf>) -> Self {
        roots.sort();
        roots.dedup();
        FqnPolicy { roots }
    }

    /// Split an `ETL_FQN_ROOTS` value: absolute paths separated by `:` or `,`;
    /// blank entries are skipped, but not all of a value that is not blank.
    pub fn parse_roots(list: &str) -> Result<Vec<PathBuf>, RootsError> {
        let roots: Vec<PathBuf> = list
            .split([':', ','])
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                if entry.starts_with('/') {
                    Ok(normalize(PathBuf::from(entry)))
                } else {
                    Err(RootsError::NotAbsolute(entry.to_string()))
                }
            })
            .collect::<Result<_, _>>()?;
        if roots.is_empty() && !list.trim().is_empty() {
            return Err(RootsError::NoEntries(list.to_string()));
        }
        Ok(roots)
    }

    /// The configured roots, as written and as resolved; empty when any mountpath
    /// is accepted.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Check a path as written, without touching the filesystem; what is accepted
    /// comes back parsed, for its chunk manifest and uname. The path must be absolute
    /// and normalised ([`decode`] returns such paths).
    pub fn check<'p>(&self, path: &'p Path) -> Result<ObjectPath<'p>, FqnRefusal> {
        if path.as_os_str().as_bytes().contains(&0) {
            return Err(FqnRefusal::Nul);
        }
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::RootDir if parts.is_empty() => {}
                Component::Normal(part) => parts.push(part.as_bytes()),
                _ => return Err(FqnRefusal::NotAnObjectPath),
            }
        }
        if !path.has_root() {
            return Err(FqnRefusal::NotAnObjectPath);
        }
        // The mountpath is at least one directory, and a root's whole depth.
        let found = match self.roots.is_empty() {
            true => object_path_from(&parts, 1),
            false => (self.roots.iter())
                .filter(|root| path.starts_with(root))
                .find_map(|root| object_path_from(&parts, (root.components().count() - 1).max(1))),
        };
        if let Some((at, shape)) = found {
            return Ok(ObjectPath { parts, at, shape });
        }
        // Tell "wrong place" from "not an object at all", for the error message.
        let under_a_root = self.roots.iter().any(|root| path.starts_with(root));
        if under_a_root || object_path_from(&parts, 1).is_none() {
            Err(FqnRefusal::NotAnObjectPath)
        } else {
            Err(FqnRefusal::OutsideRoots)
        }
    }
}

/// Where, from `parts[start..]` on, an object path's provider is (`@<provider>`,
/// an optional namespace, `<bucket>`, `%ob` and at least one component of object
/// name; `fs/fqn.go`, `ParsedFQN.Init`), and its shape: the first such place. What
/// precedes the provider is the mountpath. Linear in the number of components: each
/// candidate is checked in constant steps.
fn object_path_from(parts: &[&[u8]], start: usize) -> Option<(usize, Shape)> {
    (start..parts.len()).find_map(|k| Some((k, object_path_at(&parts[k..])?)))
}

/// Where an object path's parts are, from its provider on: the namespace, if any,
/// is the part after the provider; the bucket is at `bucket`, the content type
/// after it, and the object's name after that.
#[derive(Debug)]
struct Shape {
    namespace: bool,
    bucket: usize,
}

fn object_path_at(parts: &[&[u8]]) -> Option<Shape> {
    let (provider, rest) = parts.split_first()?;
    let is_provider = provider.len() > 1
        && provider[0] == b'@'
        && provider[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !is_provider {
        return None;
    }
    // `#name`: a local namespace; `@uuid#name`: a remote cluster's namespace, its
    // name empty for that cluster's global one (`makePathBuf` writes `@uuid#`).
    let namespace = rest.first().is_some_and(|part| is_namespace(part));
    let bucket = 1 + usize::from(namespace);
    match &parts[bucket..] {
        [bucket_name, content_type, _object, ..]
            if !matches!(bucket_name.first(), None | Some(b'@' | b'#' | b'%'))
                && *content_type == OBJECT_CONTENT_TYPE =>
        {
            Some(Shape { namespace, bucket })
        }
        _ => None,
    }
}

/// The content-type directory of chunked objects' completed manifests
/// (`fs.ChunkMetaCT`).
const CHUNK_MANIFEST_CONTENT_TYPE: &[u8] = b"%ut";

/// A path [`FqnPolicy::check`] accepted, as it parsed it: its components, where its
/// provider is, and its shape.
#[derive(Debug)]
pub struct ObjectPath<'p> {
    parts: Vec<&'p [u8]>,
    at: usize,
    shape: Shape,
}

impl ObjectPath<'_> {
    /// Where the completed manifest of the object is if it is stored in chunks (a
    /// multipart upload): at the same name under `%ut` (`Ufest._fqns`). Such an
    /// object has only its first chunk in its file (`core/ufest.go`, `chunk1Path`),
    /// and the target names that file all the same (`ext/etl/communicator.go`: "TODO
    /// -- FIXME: consider chunked case").
    pub fn chunk_manifest(&self) -> PathBuf {
        let content_type = self.at + self.shape.bucket + 1;
        let mut manifest = PathBuf::from("/");
        for (i, part) in self.parts.iter().enumerate() {
            match i == content_type {
                true => manifest.push(OsStr::from_bytes(CHUNK_MANIFEST_CONTENT_TYPE)),
                false => manifest.push(OsStr::from_bytes(part)),
            }
        }
        manifest
    }

    /// The object's uname, `<provider>/@<uuid>#<namespace>/<bucket>/<object>`, by
    /// which the target serves it.
    pub fn uname(&self) -> Vec<u8> {
        let (parts, at) = (&self.parts, self.at);
        let bucket = at + self.shape.bucket;
        let mut uname = parts[at][1..].to_vec();
        uname.push(b'/');
        match self.shape.namespace {
            // `@uuid#name` as it is; `#name` (local) is `@#name`, and none is `@#`.
            true if parts[at + 1][0] == b'@' => uname.extend_from_slice(parts[at + 1]),
            true => uname.extend([b"@", parts[at + 1]].concat()),
            false => uname.extend_from_slice(b"@#"),
        }
        uname.push(b'/');
        uname.extend_from_slice(parts[bucket]);
        for part in &parts[bucket + 2..] {
            uname.push(b'/');
            uname.extend_from_slice(part);
        }
        uname
    }
}

fn is_namespace(part: &[u8]) -> bool {
    match part.split_first() {
        Some((b'#', name)) => !name.is_empty(),
        Some((b'@', uuid_name)) => match uuid_name.iter().position(|&b| b == b'#') {
            Some(hash) => hash > 0,
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_encoded_fqn_from_the_wire() {
        // §5.3 worked example: the query decoder already undid the outer layer.
        let query: Vec<(String, String)> = url::form_urlencoded::parse(
            b"etl_fqn=%252Fdata%252Fmp1%252F%40ais%252Fsrc%252F%2525ob%252Fimgs%252Fcat%25201.jpg",
        )
        .into_owned()
        .collect();
        assert_eq!(
            decode(&query[0].1),
            PathBuf::from("/data/mp1/@ais/src/%ob/imgs/cat 1.jpg")
        );
    }

    #[test]
    fn plus_stays_plus_and_paths_are_normalised() {
        assert_eq!(decode("%2Fa%2Fb+c"), PathBuf::from("/a/b+c"));
        assert_eq!(decode(" rel/x "), PathBuf::from("/rel/x"));
        assert_eq!(decode("/a/b/../../etc/x"), PathBuf::from("/etc/x"));
        assert_eq!(decode("/../../x"), PathBuf::from("/x"));
        assert_eq!(decode("//a/./b//c"), PathBuf::from("/a/b/c"));
        assert_eq!(decode("%zz"), PathBuf::from("/%zz"));
    }

    #[test]
    fn non_utf8_bytes_survive() {
        assert_eq!(decode("%2Fx%FF").as_os_str().as_bytes(), b"/x\xff");
    }

    fn check(policy: &FqnPolicy, path: &str) -> Result<(), FqnRefusal> {
        policy.check(Path::new(path)).map(|_| ())
    }

    #[test]
    fn object_paths_have_the_shape_of_make_path_fqn() {
        let any = FqnPolicy::any_mountpath();
        for path in [
            "/data/mp1/@ais/src/%ob/imgs/cat 1.jpg",
            "/mp/@aws/b/%ob/o",
            "/mp/@ais/#ns/b/%ob/o",
            "/mp/@ais/@Zuuid#ns/b/%ob/a/b/c",
            // A remote cluster's global namespace.
            "/mp/@ais/@Zuuid#/b/%ob/o",
            "/a/b/c/@gcp/b/%ob/%ob/x",
            // A bucket named like a provider, an object named like a namespace.
            "/mp/@ais/@ais/b/%ob/#x",
        ] {
            assert_eq!(check(&any, path), Ok(()), "{path}");
        }
        for path in [
            "/etc/passwd",
            "/",
            "/@ais/b/%ob/o",           // no mountpath
            "/mp/@ais/b/%ob",          // no object
            "/mp/@ais/b/%ob/",         // no object either
            "/mp/@ais/b/%wk/o",        // a work file
            "/mp/@ais/%ob/o",          // no bucket
            "/mp/@AIS/b/%ob/o",        // providers are lower case
            "/mp/@/b/%ob/o",           // empty provider
            "/mp/ais/b/%ob/o",         // no @
            "/mp/@ais/#/b/%ob/o",      // empty namespace
            "/mp/@ais/@U/b/%ob/o",     // neither a namespace nor a bucket
            "/mp/@ais/@#n/b/%ob/o",    // a remote namespace without its cluster
            "/mp/@ais/#ns/#b/%ob/o",   // a bucket cannot start with #
            "/mp/@ais/b/%ob/../../x",  // not normalised
            "mp/@ais/b/%ob/o",         // relative
            "/mp/@ais/b/c/%ob/o",      // two buckets
            "/mp/@ais/b/%ob%ob/o/x",   // not the object content type
            "/mp/@ais/#ns/@u#n/%ob/o", // two namespaces
        ] {
            assert_eq!(
                check(&any, path),
                Err(FqnRefusal::NotAnObjectPath),
                "{path}"
            );
        }
        assert_eq!(check(&any, "/mp/@ais/b/%ob/a\0b"), Err(FqnRefusal::Nul));
    }

    #[test]
    fn a_chunked_object_is_looked_up_by_its_manifest_and_fetched_by_its_uname() {
        for (path, manifest, uname) in [
            (
                "/data/mp1/@ais/src/%ob/imgs/cat 1.jpg",
                "/data/mp1/@ais/src/%ut/imgs/cat 1.jpg",
                "ais/@#/src/imgs/cat 1.jpg",
            ),
            ("/mp/@aws/b/%ob/o", "/mp/@aws/b/%ut/o", "aws/@#/b/o"),
            (
                "/mp/@ais/#ns/b/%ob/o",
                "/mp/@ais/#ns/b/%ut/o",
                "ais/@#ns/b/o",
            ),
            (
                "/mp/@ais/@Zuuid#ns/b/%ob/a/%ob/c",
                "/mp/@ais/@Zuuid#ns/b/%ut/a/%ob/c",
                "ais/@Zuuid#ns/b/a/%ob/c",
            ),
            (
                "/mp/@ais/@Zuuid#/b/%ob/o",
                "/mp/@ais/@Zuuid#/b/%ut/o",
                "ais/@Zuuid#/b/o",
            ),
            // A mountpath named like a provider, an object named like a namespace.
            (
                "/mp/@ais/@ais/b/%ob/#x",
                "/mp/@ais/@ais/b/%ut/#x",
                "ais/@#/b/#x",
            ),
        ] {
            let object = FqnPolicy::any_mountpath().check(Path::new(path)).unwrap();
            assert_eq!(object.chunk_manifest(), Path::new(manifest), "{path}");
            let found = String::from_utf8(object.uname()).unwrap();
            assert_eq!(found, uname, "{path}");
        }
    }

    #[test]
    fn a_root_shaped_like_an_object_path_is_mountpath_in_the_parse_too() {
        // The object path starts after the root, in the check as in what it returns.
        let root = "/mp/@ais/b/%ob/dir";
        let policy = FqnPolicy::with_resolved_roots(vec![root.into()]);
        let object = policy
            .check(Path::new("/mp/@ais/b/%ob/dir/@gcp/c/%ob/o"))
            .unwrap();
        assert_eq!(object.uname(), b"gcp/@#/c/o");
        assert_eq!(
            object.chunk_manifest(),
            Path::new("/mp/@ais/b/%ob/dir/@gcp/c/%ut/o")
        );
    }

    #[test]
    fn roots_confine_the_mountpath() {
        let policy = FqnPolicy::with_resolved_roots(vec!["/ais".into(), "/data/mp1".into()]);
        assert_eq!(check(&policy, "/ais/mp3/@ais/b/%ob/o"), Ok(()));
        assert_eq!(check(&policy, "/ais/@ais/b/%ob/o"), Ok(()));
        assert_eq!(check(&policy, "/data/mp1/@ais/b/%ob/o"), Ok(()));
        for (path, refusal) in [
            ("/data/mp10/@ais/b/%ob/o", FqnRefusal::OutsideRoots),
            ("/data/@ais/b/%ob/o", FqnRefusal::OutsideRoots),
            ("/tmp/x/@ais/b/%ob/o", FqnRefusal::OutsideRoots),
            ("/data/mp1/x", FqnRefusal::NotAnObjectPath),
            ("/etc/passwd", FqnRefusal::NotAnObjectPath),
            // The shape must follow the root: a provider above it does not count.
            ("/data/@ais/mp1/%ob/o", FqnRefusal::OutsideRoots),
        ] {
            assert_eq!(check(&policy, path), Err(refusal), "{path}");
        }
    }

    #[test]
    fn roots_are_split_on_colons_and_commas() {
        let roots = FqnPolicy::parse_roots(" /ais/mp1:/ais/mp2, /x/../y ,,").unwrap();
        assert_eq!(
            roots,
            [
                PathBuf::from("/ais/mp1"),
                PathBuf::from("/ais/mp2"),
                PathBuf::from("/y")
            ]
        );
        assert!(FqnPolicy::parse_roots("").unwrap().is_empty());
        assert!(matches!(
            FqnPolicy::parse_roots("/a:rel"),
            Err(RootsError::NotAbsolute(entry)) if entry == "rel"
        ));
    }
}
