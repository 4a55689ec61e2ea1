//! The encodings a target puts on the wire (§5 of the protocol document), written
//! from the specification rather than borrowed from the server under test.
//!
//! Self-contained (std, `percent-encoding`, `url`): the fuzz crate compiles this file
//! on its own too (`fuzz/src/lib.rs`).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

/// Go's `url.PathEscape`: keeps letters, digits, `-._~` and `$&+:=@`.
const GO_PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b':')
    .remove(b'=')
    .remove(b'@');

/// Go's `url.PathEscape`: one path segment (`/` becomes `%2F`).
pub fn path_escape(s: &str) -> String {
    path_escape_bytes(s.as_bytes())
}

/// [`path_escape`] of any bytes (Go strings need not be UTF-8, nor do file names).
pub fn path_escape_bytes(bytes: &[u8]) -> String {
    percent_encode(bytes, GO_PATH_SEGMENT).to_string()
}

/// An object path for a request line, `/` kept (§5.2: the hpush path).
pub fn escape_path(s: &str) -> String {
    s.split('/').map(path_escape).collect::<Vec<_>>().join("/")
}

/// Go's `url.QueryEscape` (`url.Values.Encode`): space becomes `+`.
pub fn query_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The `fqn` of a WebSocket control message: `PathEscape(FQN)`, encoded once.
pub fn ws_fqn(fqn: &Path) -> String {
    path_escape_bytes(fqn.as_os_str().as_bytes())
}

/// `etl_fqn=<value>` as the target sends it: `PathEscape`, then query-encoded again
/// (§5.3: double-encoded on the wire).
pub fn etl_fqn_query(fqn: &Path) -> String {
    format!("etl_fqn={}", query_escape(&ws_fqn(fqn)))
}

/// `/<bucket>/<object>`: where a target sends an hpush.
pub fn hpush_path(bucket: &str, object: &str) -> String {
    format!("/{}/{}", path_escape(bucket), escape_path(object))
}

/// `/<uname as one escaped segment>`: where a target sends an hpull (§4.3).
pub fn hpull_path(uname: &str) -> String {
    format!("/{}", path_escape(uname))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of §5.3.
    #[test]
    fn fqn_is_double_encoded() {
        let fqn = Path::new("/data/mp1/@ais/src/%ob/imgs/cat 1.jpg");
        assert_eq!(
            ws_fqn(fqn),
            "%2Fdata%2Fmp1%2F@ais%2Fsrc%2F%25ob%2Fimgs%2Fcat%201.jpg"
        );
        assert_eq!(
            etl_fqn_query(fqn),
            "etl_fqn=%252Fdata%252Fmp1%252F%40ais%252Fsrc%252F%2525ob%252Fimgs%252Fcat%25201.jpg"
        );
    }

    /// §4.3 and §14.
    #[test]
    fn paths() {
        assert_eq!(
            hpull_path("ais/@#/src/imgs/cat 1.jpg"),
            "/ais%2F@%23%2Fsrc%2Fimgs%2Fcat%201.jpg"
        );
        assert_eq!(hpush_path("src", "imgs/cat 1.jpg"), "/src/imgs/cat%201.jpg");
    }
}
