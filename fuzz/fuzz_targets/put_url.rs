//! Direct-put URL composition (`NextHop::put_url`): never panics; the result parses
//! as a URL whose scheme, host and port are the entry's, whatever the object's name,
//! `etl_args` and `AIS_TARGET_URL` path; and a stage hop's path decodes back to the
//! object's name.
#![no_main]

use ais_wasm_fuzz::pipeline::{self, PutUrlError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    // Four fields, newline-separated: entry, object name, etl_args, target path.
    let mut fields = input.splitn(4, '\n');
    let entry = fields.next().unwrap_or("");
    let name = fields.next().unwrap_or("");
    let args = fields.next().unwrap_or("");
    // An `AIS_TARGET_URL` path is what the URL parser made of it at start-up.
    let target_path = url::Url::parse(&format!("http://t/{}", fields.next().unwrap_or("")))
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| "/v1/etl/_object/e/s".into());

    let Ok(Some(pipeline)) = pipeline::parse(entry) else {
        return;
    };
    let next = &pipeline.next;
    let declared = url::Url::parse(&format!("{}://{}/", next.scheme, next.authority))
        .expect("an accepted entry's authority parses");
    // The whole authority is an authority: nothing in it reads as a path, a query,
    // or credentials.
    assert_eq!(declared.path(), "/", "{entry:?}");
    assert_eq!(declared.username(), "", "{entry:?}");
    assert_eq!(declared.password(), None, "{entry:?}");

    // Object paths as the protocol module hands them over: a WebSocket name escaped
    // by `escape_path`, or an HTTP request's raw path (no `?`, `#` or controls).
    let raw: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '?' && *c != '#')
        .collect();
    for object_path in [pipeline::escape_path(name.as_bytes()), format!("/{raw}")] {
        let url = match next.put_url(Some(&target_path), &object_path, args) {
            Ok(url) => url,
            // Only a name (or a target's path) that is `.` or `..` as a whole.
            Err(PutUrlError::DotSegmentName(name)) => {
                let name = name.to_ascii_lowercase().replace("%2e", ".");
                assert!(name == "." || name == "..", "{name:?}");
                continue;
            }
            Err(PutUrlError::MissingTargetUrl) => unreachable!("AIS_TARGET_URL is set"),
        };
        let parsed =
            url::Url::parse(&url).unwrap_or_else(|e| panic!("{url:?} does not parse: {e}"));
        assert_eq!(parsed.scheme(), next.scheme, "{url:?}");
        assert_eq!(parsed.host_str(), declared.host_str(), "{url:?}");
        assert_eq!(
            parsed.port_or_known_default(),
            declared.port_or_known_default()
        );
        assert_eq!(parsed.fragment(), None, "{url:?}");
        if !next.is_target() && object_path == pipeline::escape_path(name.as_bytes()) {
            let sent = percent_encoding::percent_decode_str(parsed.path()).collect::<Vec<u8>>();
            assert_eq!(sent, format!("/{name}").into_bytes(), "{url:?}");
        }
        assert_eq!(
            next.put_url(None, &object_path, args).is_ok(),
            !next.is_target()
        );
    }
});
