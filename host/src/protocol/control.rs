//! The WebSocket control message (`WebsocketCtrlMsg`, §4.4): the JSON object that
//! precedes each request on `/ws` and says what follows it.
//!
//! Self-contained on purpose (serde only, no `crate::` paths): the fuzz crate
//! (`fuzz/`) compiles this file on its own rather than the whole host.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Error, Visitor};

/// One request's control message. Every key may be absent (empty).
///
/// The target writes strings as Go holds them, bytes that need not be UTF-8 (an
/// object named `caf\xe9` reaches the wire as is), so none is refused for it: the
/// object's name is kept byte for byte, since it names the object at the next hop,
/// and the other values are read lossily (invalid bytes become U+FFFD).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Control {
    /// The request's `Ais-Node-Url`: next hops, comma-separated (§6.1).
    #[serde(deserialize_with = "lossy")]
    pub pipeline: String,
    /// `etl_args`, untrimmed.
    #[serde(deserialize_with = "lossy")]
    pub etl_args: String,
    /// The object's FQN, `PathEscape`d once (§5.3), so ASCII; empty: a data message
    /// follows.
    #[serde(deserialize_with = "lossy")]
    pub fqn: String,
    /// The object's name, unescaped.
    #[serde(deserialize_with = "raw")]
    pub path: Vec<u8>,
}

/// Why a control message was refused (the reply is a TEXT diagnostic).
#[derive(Debug, thiserror::Error)]
#[error("Invalid control message: {reason}")]
pub struct ControlError {
    pub reason: String,
    /// Whether a data message follows all the same, as far as the message shows: it
    /// must be read past, or it would be taken for the next request's control message
    /// and every later reply would answer the request before it.
    pub data_follows: bool,
}

impl Control {
    /// Parse a control message. The target sends a compact JSON object with string
    /// values and omits empty keys; unknown keys are ignored.
    pub fn parse(message: &[u8]) -> Result<Control, ControlError> {
        let refused = |reason: String| ControlError {
            reason,
            data_follows: !names_fqn(message),
        };
        // serde would read a struct from an array too (`["pipeline", "args"]`); the
        // target only ever sends an object, and Go's decoder refuses anything else.
        let first = message.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(refused("expected a JSON object".into()));
        }
        serde_json::from_slice(message).map_err(|error| refused(error.to_string()))
    }

    /// Whether a data message carrying the object follows this control message.
    pub fn expects_data(&self) -> bool {
        self.fqn.is_empty()
    }
}

/// Whether a message that is not valid JSON still has a non-empty `"fqn"` string
/// (whether data follows is decided by that alone, §4.4).
fn names_fqn(message: &[u8]) -> bool {
    let key = b"\"fqn\"";
    (0..message.len()).any(|at| {
        let Some(rest) = message[at..].strip_prefix(key) else {
            return false;
        };
        let rest = rest.trim_ascii_start();
        let Some(rest) = rest.strip_prefix(b":") else {
            return false;
        };
        let rest = rest.trim_ascii_start();
        rest.strip_prefix(b"\"")
            .is_some_and(|value| value.first().is_some_and(|&b| b != b'"'))
    })
}

/// A JSON string as its bytes, escapes decoded, whether UTF-8 or not.
struct Bytes;

impl Visitor<'_> for Bytes {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Vec<u8>, E> {
        Ok(text.as_bytes().to_vec())
    }
}

fn raw<'de, D: Deserializer<'de>>(value: D) -> Result<Vec<u8>, D::Error> {
    value.deserialize_bytes(Bytes)
}

fn lossy<'de, D: Deserializer<'de>>(value: D) -> Result<String, D::Error> {
    let bytes = raw(value)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_may_be_absent_and_unknown_keys_are_ignored() {
        assert_eq!(Control::parse(b"{}").unwrap(), Control::default());
        let control =
            Control::parse(br#"{"path":"a b","fqn":"%2Fx","extra":[1,{"k":null}]}"#).unwrap();
        assert_eq!(control.path, b"a b");
        assert!(!control.expects_data());
    }

    #[test]
    fn names_that_are_not_utf8_are_kept_byte_for_byte() {
        // What jsoniter writes for Go strings holding such bytes: they pass as is.
        let control = Control::parse(
            b"{\"pipeline\":\"http://h:1/\xff\",\"etl_args\":\"a\xe9\",\"path\":\"caf\xe9 \\u00e9\\n\",\
              \"other\":\"\xfe\"}",
        )
        .unwrap();
        assert_eq!(control.path, b"caf\xe9 \xc3\xa9\n");
        assert_eq!(control.pipeline, "http://h:1/\u{fffd}");
        assert_eq!(control.etl_args, "a\u{fffd}");
        assert!(control.expects_data());
    }

    #[test]
    fn a_refused_message_says_whether_data_follows() {
        for (bad, data_follows) in [
            (&b""[..], true),
            (b"[]", true),
            (br#"["pipeline","args"]"#, true),
            (b"null", true),
            (b" 1", true),
            (br#"{"path":1}"#, true),
            (br#"{"path":1,"fqn":""}"#, true),
            (br#"{"path":1,"fqn":"%2Fx"}"#, false),
            (br#"{"path":1, "fqn" : "%2Fx"}"#, false),
            (br#"{"fqn":"%2Fx","path":"#, false),
            (br#"{"fqn":"%2Fx","path":null}"#, false),
        ] {
            let error = Control::parse(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(error.to_string().starts_with("Invalid control message: "));
            assert_eq!(
                error.data_follows,
                data_follows,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
