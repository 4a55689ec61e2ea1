//! The WebSocket control message (`WebsocketCtrlMsg`, §4.4): the JSON object that
//! precedes each request on `/ws` and says what follows it.
//!
//! Self-contained on purpose (serde only, no `crate::` paths): the fuzz crate
//! (`fuzz/`) compiles this file on its own rather than the whole host.

use serde::Deserialize;

/// One request's control message. Every key may be absent (empty).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Control {
    /// The request's `Ais-Node-Url`: next hops, comma-separated (§6.1).
    pub pipeline: String,
    /// `etl_args`, untrimmed.
    pub etl_args: String,
    /// The object's FQN, `PathEscape`d once (§5.3); empty: a data message follows.
    pub fqn: String,
    /// The object's name, unescaped.
    pub path: String,
}

/// Why a control message was refused (the reply is a TEXT diagnostic).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("Invalid control message: {0}")]
    Json(serde_json::Error),
    /// serde would read a struct from an array too (`["pipeline", "args"]`); the
    /// target only ever sends an object, and Go's decoder refuses anything else.
    #[error("Invalid control message: expected a JSON object")]
    NotAnObject,
}

impl Control {
    /// Parse a control message. The target sends a compact JSON object with string
    /// values and omits empty keys; unknown keys are ignored.
    pub fn parse(message: &[u8]) -> Result<Control, ControlError> {
        let first = message.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(ControlError::NotAnObject);
        }
        serde_json::from_slice(message).map_err(ControlError::Json)
    }

    /// Whether a data message carrying the object follows this control message.
    pub fn expects_data(&self) -> bool {
        self.fqn.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_may_be_absent_and_unknown_keys_are_ignored() {
        assert_eq!(Control::parse(b"{}").unwrap(), Control::default());
        let control =
            Control::parse(br#"{"path":"a b","fqn":"%2Fx","extra":[1,{"k":null}]}"#).unwrap();
        assert_eq!(control.path, "a b");
        assert!(!control.expects_data());
        for bad in [
            &b""[..],
            b"[]",
            br#"["pipeline","args"]"#,
            b"null",
            b" 1",
            br#"{"path":1}"#,
            b"{\"path\":\"\xff\"}",
        ] {
            let error = Control::parse(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(error.to_string().starts_with("Invalid control message"));
        }
    }
}
