//! `Ais-Node-Url` (and the WebSocket `pipeline` field): parsing the list of next hops,
//! and composing the direct-put request to the first of them (protocol document §6).
//!
//! Self-contained on purpose (`percent-encoding`, `url` and `thiserror`, no `crate::`
//! paths): the fuzz crate (`fuzz/`) compiles this file on its own.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

/// What `Ais-Node-Url` says: where the result goes next and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// The first entry.
    pub next: NextHop,
    /// Everything after the first comma, trimmed: the next hop's own `Ais-Node-Url`.
    pub rest: Option<String>,
}

/// The first entry of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port` as written.
    pub authority: String,
    /// The path as received, still escaped; empty for an ETL stage.
    pub path: String,
    /// The query as received, without `?`.
    pub query: Option<String>,
}

/// Why a pipeline value was refused (the caller answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("Invalid pipeline header: Pipeline header contains empty entry")]
    EmptyEntry,
    #[error("Invalid pipeline header: {entry:?} is not an absolute http(s) URL")]
    BadUrl { entry: String },
}

/// Parse a pipeline as the Python reference does (`parse_etl_pipeline`): absent,
/// empty or blank means none; any empty entry is an error.
pub fn parse(value: &str) -> Result<Option<Pipeline>, PipelineError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.split(',').any(|entry| entry.trim().is_empty()) {
        return Err(PipelineError::EmptyEntry);
    }
    let (first, rest) = match value.split_once(',') {
        Some((first, rest)) => (first.trim(), Some(rest.trim().to_string())),
        None => (value, None),
    };
    Ok(Some(Pipeline {
        next: NextHop::parse(first)?,
        rest,
    }))
}

impl NextHop {
    fn parse(entry: &str) -> Result<Self, PipelineError> {
        let bad = || PipelineError::BadUrl {
            entry: entry.to_string(),
        };
        let (scheme, remainder) = entry.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        // Split by hand: a URL parser would turn "http://h:1" into "http://h:1/",
        // and whether a path is present decides what kind of hop this is.
        let (before_fragment, _) = remainder.split_once('#').unwrap_or((remainder, ""));
        let (before_query, query) = match before_fragment.split_once('?') {
            Some((head, query)) => (head, Some(query.to_string())),
            None => (before_fragment, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(slash) => before_query.split_at(slash),
            None => (before_query, ""),
        };
        // `host[:port]` only, the host a name or an IP address (IPv6 in brackets).
        // The URL parser alone would accept more and read it differently: `\` as a
        // path separator, `user@` as credentials, percent-escapes and non-ASCII
        // names decoded; the direct put would then go elsewhere than the entry says.
        let authority_char = |c: char| c.is_ascii_alphanumeric() || "-._~:[]".contains(c);
        if authority.is_empty() || !authority.chars().all(authority_char) {
            return Err(bad());
        }
        let url = url::Url::parse(&format!("{scheme}://{authority}/")).map_err(|_| bad())?;
        if url.path() != "/" || url.host().is_none() {
            return Err(bad());
        }
        Ok(NextHop {
            scheme,
            authority: authority.to_string(),
            path: path.to_string(),
            query,
        })
    }

    /// An AIStore target (the destination) rather than another ETL stage: the entry
    /// has a path, even just `/`.
    pub fn is_target(&self) -> bool {
        !self.path.is_empty()
    }

    /// The URL of the direct put (§6.3).
    ///
    /// - Stage hop: the current object's path, escaped as it decodes back to the same
    ///   name (`object_path_escaped`, with its leading `/`).
    /// - Target hop: the path of our `AIS_TARGET_URL` (the per-ETL object endpoint and
    ///   secret) followed by the entry's path, kept escaped as received.
    ///
    /// The scheme is the entry's own. Both references take it from `AIS_TARGET_URL`
    /// even for stage hops, which breaks pipelines in HTTPS clusters (ETL pods serve
    /// plain HTTP; protocol document §13 Q7); for target hops the two agree, since
    /// the target writes its own scheme into the entry.
    ///
    /// The query is the entry's, verbatim (`owt`, `uuid`); a non-empty `etl_args`
    /// replaces any `etl_args` in it.
    pub fn put_url(
        &self,
        target_path: Option<&str>,
        object_path_escaped: &str,
        etl_args: &str,
    ) -> Result<String, PutUrlError> {
        let path = if self.is_target() {
            let prefix = target_path
                .ok_or(PutUrlError::MissingTargetUrl)?
                .trim_end_matches('/');
            format!("{prefix}{}", keep_dot_segments(&self.path)?)
        } else {
            keep_dot_segments(object_path_escaped)?
        };
        let mut params: Vec<String> = self
            .query
            .iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
            .filter(|p| etl_args.is_empty() || !(*p == "etl_args" || p.starts_with("etl_args=")))
            .map(str::to_string)
            .collect();
        if !etl_args.is_empty() {
            let encoded: String =
                url::form_urlencoded::byte_serialize(etl_args.as_bytes()).collect();
            params.push(format!("etl_args={encoded}"));
        }
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        Ok(format!("{}://{}{path}{query}", self.scheme, self.authority))
    }
}

/// An object path (leading `/`, escaped) that survives the outbound client's URL
/// parser unchanged. That parser follows WHATWG, which reads `\` as `/`, sent as
/// `%5C` instead, and removes `.` and `..` segments (also spelled `%2e`), but object
/// names may contain them and must reach the next hop as they are (§4.6). When the
/// path has such a segment, its separators are sent as `%2F` instead: the next stage
/// percent-decodes the path once (§5.2) and a target decodes everything after the
/// secret as one item (§10), so both still read the same name. Other paths are sent
/// as received (§6.3).
///
/// A name that is a dot segment as a whole (`.`, `..`, also spelled `%2e`) has no
/// such form: it is refused. AIStore refuses such names too (`cos.ValidateOname`).
fn keep_dot_segments(path: &str) -> Result<String, PutUrlError> {
    let path = path.replace('\\', "%5C");
    let object = path.strip_prefix('/').unwrap_or(&path);
    let dot_segment = |segment: &str| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    };
    if dot_segment(object) {
        return Err(PutUrlError::DotSegmentName(object.to_string()));
    }
    Ok(if object.split('/').any(dot_segment) {
        format!("/{}", object.replace('/', "%2F"))
    } else {
        path
    })
}

/// Why no direct-put URL could be composed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutUrlError {
    /// A target hop needs `AIS_TARGET_URL` for its path prefix and secret.
    #[error("the next hop is an AIStore target, but AIS_TARGET_URL is not set")]
    MissingTargetUrl,
    /// The object's name (or a target entry's path) is `.` or `..`.
    #[error(
        "the name {0:?} cannot travel to the next hop: URL paths drop `.` and `..` segments \
         (and AIStore never names an object so)"
    )]
    DotSegmentName(String),
}

/// Characters escaped in an object path placed in a URL path: everything but
/// unreserved characters, `/` (kept as a separator) and `@` (kept literal, as
/// AIStore's own escaping does).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b'@');

/// `/` + the object path escaped so it decodes back to itself, byte for byte (for a
/// WebSocket request, which carries the name unescaped).
pub fn escape_path(object_path: &[u8]) -> String {
    format!("/{}", percent_encode(object_path, PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_blank_and_single_entries() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   "), Ok(None));
        let one = parse(" http://10.0.0.7:31402 ").unwrap().unwrap();
        assert_eq!(one.next.authority, "10.0.0.7:31402");
        assert!(!one.next.is_target());
        assert_eq!(one.rest, None);
    }

    #[test]
    fn rest_is_everything_after_the_first_comma_trimmed() {
        let p = parse("http://a:1 , http://b:2,http://t:3/ais%2F@%23%2Fdst%2Fx?owt=3&uuid=J")
            .unwrap()
            .unwrap();
        assert_eq!(p.next.authority, "a:1");
        assert_eq!(
            p.rest.as_deref(),
            Some("http://b:2,http://t:3/ais%2F@%23%2Fdst%2Fx?owt=3&uuid=J")
        );
    }

    #[test]
    fn empty_entries_are_refused() {
        for value in [
            ",http://a:1",
            "http://a:1,",
            "http://a:1,,http://b:2",
            "http://a:1,   ,http://b:2",
            ",,",
        ] {
            assert_eq!(parse(value), Err(PipelineError::EmptyEntry), "{value:?}");
        }
        assert!(parse("http://a:1").is_ok());
        assert!(parse("EmptyEntry").is_err());
    }

    #[test]
    fn malformed_entries_are_refused_without_panicking() {
        for value in [
            "a:1",
            "ftp://a:1",
            "http://",
            "http:///x",
            "http://a b:1",
            "http://[::1",
            "http://fe80::1:8000",
            "://x",
        ] {
            assert!(
                matches!(parse(value), Err(PipelineError::BadUrl { .. })),
                "{value:?}"
            );
        }
        assert!(parse("http://[::1]:8000").is_ok());
    }

    /// Found by fuzz/fuzz_targets/put_url.rs: `https://ԣ\` was accepted, and the URL
    /// parser read its authority as a host and a path (`\` separates path segments in
    /// WHATWG URLs). So `http://a.example\@b.example:1` sent the direct put to
    /// `a.example`, where Python's parser, like a reader, sees `b.example`.
    #[test]
    fn fuzz_found_a_backslash_in_the_authority_read_as_a_path() {
        for value in [
            "https://\u{523}\\",
            "http://a\\b:1",
            "http://evil.example\\@h:1",
            "http://user@h:1",
            "http://user:pass@h:1",
            "http://h%2Fx:1",
            "http://ü.example:1",
        ] {
            assert!(
                matches!(parse(value), Err(PipelineError::BadUrl { .. })),
                "{value:?}"
            );
        }
        for value in [
            "http://10.0.0.7:31402",
            "http://h-1.example_x:1",
            "http://[fe80::1]:8000",
        ] {
            assert!(parse(value).is_ok(), "{value:?}");
        }
    }

    #[test]
    fn stage_hop_puts_to_the_current_object_path() {
        let p = parse("http://h:31000").unwrap().unwrap();
        let url = p
            .next
            .put_url(Some("/v1/etl/_object/e/s"), "/src/imgs/cat%201.jpg", "")
            .unwrap();
        assert_eq!(url, "http://h:31000/src/imgs/cat%201.jpg");
        let url = p.next.put_url(None, "/src/a%3Fb%23c", "x y").unwrap();
        assert_eq!(url, "http://h:31000/src/a%3Fb%23c?etl_args=x+y");
    }

    #[test]
    fn target_hop_puts_under_the_etl_object_endpoint_keeping_the_query() {
        let p = parse(
            "http://10.0.0.3:51082/ais%2F@%23%2Fdst%2Fdir%2Fcat%201.jpg?owt=3&uuid=Zx9kQ2mLp",
        )
        .unwrap()
        .unwrap();
        assert!(p.next.is_target());
        let url = p
            .next
            .put_url(Some("/v1/etl/_object/etl/secret"), "/ignored", "jpeg q")
            .unwrap();
        assert_eq!(
            url,
            "http://10.0.0.3:51082/v1/etl/_object/etl/secret/ais%2F@%23%2Fdst%2Fdir%2Fcat%201.jpg?owt=3&uuid=Zx9kQ2mLp&etl_args=jpeg+q"
        );
        let replaced = parse("http://t:1/o?etl_args=old&owt=3").unwrap().unwrap();
        assert_eq!(
            replaced.next.put_url(Some("/p"), "", "new").unwrap(),
            "http://t:1/p/o?owt=3&etl_args=new"
        );
        assert_eq!(
            replaced.next.put_url(Some("/p"), "", "").unwrap(),
            "http://t:1/p/o?etl_args=old&owt=3"
        );
        assert!(parse("http://t:1/").unwrap().unwrap().next.is_target());
        assert_eq!(
            p.next.put_url(None, "", ""),
            Err(PutUrlError::MissingTargetUrl)
        );
    }

    /// Found by fuzz/fuzz_targets/put_url.rs: an object named `.` (a WebSocket
    /// `path`, or `PUT /.`) went to a stage as `/.`, which the URL parser turned into
    /// `/`: the stage saw an object with an empty name.
    #[test]
    fn fuzz_found_a_name_that_is_one_dot_segment() {
        let stage = parse("http://h:1").unwrap().unwrap().next;
        for path in ["/.", "/..", "/%2E", "/.%2e", "."] {
            assert!(
                matches!(
                    stage.put_url(None, path, ""),
                    Err(PutUrlError::DotSegmentName(_))
                ),
                "{path:?}"
            );
        }
        let target = parse("http://t:1/..").unwrap().unwrap().next;
        assert!(matches!(
            target.put_url(Some("/v1/etl/_object/e/s"), "/o", ""),
            Err(PutUrlError::DotSegmentName(_))
        ));
        // Longer names keep working.
        assert_eq!(stage.put_url(None, "/..a", "").unwrap(), "http://h:1/..a");
        assert_eq!(
            stage.put_url(None, "/a/..", "").unwrap(),
            "http://h:1/a%2F.."
        );
    }

    #[test]
    fn dot_segments_survive_the_url_parser() {
        let stage = parse("http://h:1").unwrap().unwrap().next;
        for name in [
            "src/a//b/./c/../d/",
            "src/..",
            "src/%2E%2e/x",
            "./a",
            "src/a\\b",
        ] {
            let url = stage.put_url(None, &format!("/{name}"), "").unwrap();
            let parsed = reqwest::Url::parse(&url).unwrap();
            let decoded = percent_encoding::percent_decode_str(&parsed.path()[1..])
                .decode_utf8()
                .unwrap();
            let expected = percent_encoding::percent_decode_str(name)
                .decode_utf8()
                .unwrap();
            assert_eq!(decoded, expected, "{name}");
        }
        // Without dot segments, the path goes out exactly as received.
        let url = stage.put_url(None, "/src/a//b/.c/..d/", "").unwrap();
        assert_eq!(
            reqwest::Url::parse(&url).unwrap().path(),
            "/src/a//b/.c/..d/"
        );
        let target = parse("http://t:1/ais%2F@%23%2Fdst%2F..")
            .unwrap()
            .unwrap()
            .next;
        assert_eq!(
            target.put_url(Some("/v1/etl/_object/e/s"), "", "").unwrap(),
            "http://t:1/v1/etl/_object/e/s/ais%2F@%23%2Fdst%2F.."
        );
    }

    #[test]
    fn escaped_paths_decode_back_to_the_name() {
        // A name that is not UTF-8 (Go's strings need not be) survives too.
        let name = b"dir/\xc3\xbc/a b?c#d%e@f+g\xe9";
        let escaped = escape_path(name);
        assert_eq!(escaped, "/dir/%C3%BC/a%20b%3Fc%23d%25e@f%2Bg%E9");
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(&escaped[1..]).collect();
        assert_eq!(decoded, name);
    }
}
