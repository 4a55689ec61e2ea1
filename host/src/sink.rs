//! Where a result goes besides the response: a direct put to the next hop, and what
//! the next hop's answer means for our own caller (protocol document §6.4, §7.4).

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

/// `Ais-Direct-Put-Length` on a 204: bytes delivered downstream (§6.4), read from a
/// next hop's answer and set on our own.
pub const DIRECT_PUT_LENGTH: &str = "ais-direct-put-length";

/// `Ais-Etl-Retry-Reason: direct-put-transient` with a 503 (§7.3): a direct put failed
/// as a retry may cure, and the one-shot body it came from cannot be sent again by
/// whoever answers so. Sent to our caller; taken from a next stage as transient.
pub const RETRY_REASON: &str = "ais-etl-retry-reason";
pub const DIRECT_PUT_TRANSIENT: &str = "direct-put-transient";

/// The next hop's answer, mapped per §6.4.
pub enum Answer {
    /// The object reached its destination: a target stored it (200, empty) or a
    /// later stage delivered it (204). `length` is what we report onward.
    Delivered { length: u64 },
    /// The hop answered 200 with a body (the last stage of an inline pipeline, or a
    /// stage hop whose output was empty): pass it back to our caller.
    Returned {
        first: Bytes,
        rest: BoxStream<'static, Result<Bytes, PutError>>,
    },
}

/// Why a direct put failed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// A failure that a retry may cure: refused (a stage's pod restarting, a target
    /// coming back), reset, broken pipe, or a next stage's 503 saying it met one of
    /// those with a body it could not send again. Retried like FastAPI's `ConnectError`
    /// and the rest (§7.4), or the 503 contract for a one-shot source (§7.3).
    #[error("{0}")]
    Transient(String),
    /// The next hop answered neither 200, 204 nor an error: a redirect (not
    /// followed), an informational or another success status. Passing it back would
    /// tell the target the object was delivered.
    #[error(
        "the next hop answered {0}, which says neither that it took the object (200, 204) \
         nor why not (a redirect is not followed)"
    )]
    Unexpected(u16),
    /// The next hop answered an error status; it is passed back as is.
    #[error(
        "the next hop answered {status}: {}",
        match body.is_empty() {
            true => "with no body".into(),
            false => String::from_utf8_lossy(body),
        }
    )]
    Status { status: u16, body: Bytes },
}

/// Direct puts: the client and the retry policy.
#[derive(Clone)]
pub struct DirectPut {
    pub client: crate::outbound::Clients,
    /// Local retries after a transient failure (`AIS_DIRECT_PUT_RETRIES`).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one, capped at 30 s.
    pub backoff: Duration,
}

impl DirectPut {
    /// The delay before retry number `attempt` (0-based): 1 s, 2 s, 4 s, … by default.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff
            .saturating_mul(1 << attempt.min(16))
            .min(Duration::from_secs(30))
    }

    /// One attempt. `sent` is the size of the body when known; `to_target` says
    /// whether the hop is an AIStore target (an empty 200 then means "stored").
    pub async fn put(
        &self,
        url: &str,
        rest: Option<&str>,
        body: reqwest::Body,
        length: Option<u64>,
        to_target: bool,
    ) -> Result<Answer, PutError> {
        let mut request = self.client.here().put(url).body(body);
        if let Some(rest) = rest {
            request = request.header("ais-node-url", rest);
        }
        if let Some(length) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        match status {
            204 => {
                let length = response
                    .headers()
                    .get(DIRECT_PUT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                    .unwrap_or(0);
                Ok(Answer::Delivered { length })
            }
            200 => {
                let first = response.chunk().await.map_err(classify)?;
                match first {
                    // §6.4 and §13 Q3: only a target's empty 200 means "stored"; a
                    // stage's empty 200 is an empty result and is passed back.
                    None if to_target => Ok(Answer::Delivered {
                        length: length.unwrap_or(0),
                    }),
                    first => Ok(Answer::Returned {
                        first: first.unwrap_or_default(),
                        rest: response.bytes_stream().map_err(classify).boxed(),
                    }),
                }
            }
            100..=399 => Err(PutError::Unexpected(status)),
            // §13 Q20: a next stage whose own direct put failed that way could not
            // send its one-shot body again, but this stage may: a held result goes
            // again, a file is read again, and a one-shot source passes the 503 on
            // to the target, which replays its request (where Python passes a plain
            // 503 back, and the object fails).
            503 if response
                .headers()
                .get(RETRY_REASON)
                .is_some_and(|reason| reason == DIRECT_PUT_TRANSIENT) =>
            {
                let body = crate::outbound::body_head(response, 4096).await;
                Err(PutError::Transient(format!(
                    "the next stage could not deliver it, and a retry may: {}",
                    String::from_utf8_lossy(&body)
                )))
            }
            _ => Err(PutError::Status {
                status,
                body: crate::outbound::body_head(response, 4096).await,
            }),
        }
    }
}

fn classify(error: reqwest::Error) -> PutError {
    let refused = error.is_connect()
        && std::iter::successors(std::error::Error::source(&error), |e| e.source())
            .filter_map(|e| e.downcast_ref::<io::Error>())
            .any(|e| e.kind() == io::ErrorKind::ConnectionRefused);
    let root = std::iter::successors(std::error::Error::source(&error), |e| e.source())
        .last()
        .map(|e| e.to_string());
    // Without the URL: it may carry the ETL's secret.
    let message = error.without_url().to_string();
    let cause = match root {
        Some(root) => format!("{message}: {root}"),
        None => message,
    };
    PutError::Transient(match refused {
        true => format!("the next hop refused the connection: {cause}"),
        false => format!("the connection to the next hop failed: {cause}"),
    })
}
