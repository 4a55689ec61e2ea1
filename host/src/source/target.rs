//! Reading an object from the target: `GET AIS_TARGET_URL/<uname>` (hpull without an
//! FQN, protocol document §4.3 and §10).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use crate::outbound::Clients;

/// The target's per-ETL object endpoint (`AIS_TARGET_URL`), and the clients to call
/// it with.
pub struct Target {
    pub url: String,
    pub clients: Clients,
}

impl Target {
    /// Where the target serves `uname` (§4.3).
    pub fn object_url(&self, uname: &[u8], latest_ver: bool) -> String {
        object_url(&self.url, uname, latest_ver)
    }

    /// The calling thread's client.
    pub fn client(&self) -> reqwest::Client {
        self.clients.here()
    }
}

/// Python's `quote(path, safe="@")`: the uname travels as one escaped segment, so
/// `/`, `%`, `?`, `#`, space and non-ASCII all survive; `@` stays literal.
const UNAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// The URL of `uname` (as it arrived: bytes, not necessarily UTF-8) on the target.
/// `latest-ver` is forwarded (the references drop it, so the flag had no effect;
/// §13 Q8).
fn object_url(target_url: &str, uname: &[u8], latest_ver: bool) -> String {
    let mut url = format!(
        "{}/{}",
        target_url.trim_end_matches('/'),
        percent_encode(uname, UNAME)
    );
    if latest_ver {
        url.push_str("?latest-ver=true");
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_is_one_escaped_segment() {
        assert_eq!(
            object_url(
                "http://t:8081/v1/etl/_object/e/s",
                b"ais/@#/src/imgs/cat 1.jpg",
                false
            ),
            "http://t:8081/v1/etl/_object/e/s/ais%2F@%23%2Fsrc%2Fimgs%2Fcat%201.jpg"
        );
        assert_eq!(
            object_url("http://t:1/p/", b"ais/@#/b/a%b?c#d\xe9", true),
            "http://t:1/p/ais%2F@%23%2Fb%2Fa%25b%3Fc%23d%E9?latest-ver=true"
        );
    }
}
