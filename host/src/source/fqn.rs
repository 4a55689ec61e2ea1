//! `etl_fqn`: the path of the object's file on the target's mountpaths, which the
//! pod sees read-only at the same paths (protocol document §5.3).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, PathBuf};

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
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(decode("%2Fx%FF").as_os_str().as_bytes(), b"/x\xff");
    }
}
