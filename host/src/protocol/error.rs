//! Every failure of an object, mapped to an HTTP status in this one place (protocol
//! document §7.1). Bodies are short text naming the object and the cause: the target
//! shows them to users as `ETL error: <body>`. The few answers about the server
//! itself (health, reload, a method or request no object can have) are made where
//! they are asked for.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::etl::EtlError;
use crate::pipeline::{PipelineError, PutUrlError};
use crate::runtime::{Abort, Fault, ObjectError, ObjectRequest};
use crate::sink::{DIRECT_PUT_TRANSIENT, PutError, RETRY_REASON};
use crate::source::SourceError;

/// A failed request: status and body, decided here and nowhere else.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub body: String,
    /// Add `Ais-Etl-Retry-Reason: direct-put-transient` (only with 503).
    pub retry: bool,
}

impl HttpError {
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        HttpError {
            status,
            body: body.into(),
            retry: false,
        }
    }

    /// The error for one object, naming it (and logged in its scope).
    pub fn for_object(object: &ObjectRequest, error: EtlError) -> Self {
        let retry = matches!(error, EtlError::DirectPutOneShot(_));
        let status = status_of(&error);
        // The next hop's error body goes back verbatim, as the references do; an
        // empty one would leave the user "ETL error: " and nothing.
        let body = match &error {
            EtlError::DirectPut(PutError::Status { body, .. }) if !body.is_empty() => {
                String::from_utf8_lossy(body).into_owned()
            }
            _ => format!("{}: {error}", object.path),
        };
        let (parent, object) = (object.span(), &object.path);
        if status.is_server_error() {
            tracing::warn!(parent: parent, object, %status, "{error}");
        } else {
            tracing::info!(parent: parent, object, %status, "{error}");
        }
        HttpError {
            status,
            body,
            retry,
        }
    }
}

impl From<PipelineError> for HttpError {
    fn from(error: PipelineError) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, error.to_string())
    }
}

fn status_of(error: &EtlError) -> StatusCode {
    match error {
        EtlError::Source(source) => source_status(source),
        EtlError::Transform(object) => match (object.fault(), object) {
            // The transform says the object cannot be transformed: a 4xx, which the
            // target reports and does not retry.
            (Fault::BadInput, _) => StatusCode::UNPROCESSABLE_ENTITY,
            (_, ObjectError::Aborted(Abort::Timeout(_))) => StatusCode::GATEWAY_TIMEOUT,
            // Its input did not arrive in time, as when read before the call.
            (_, ObjectError::Input(error)) if error.kind() == std::io::ErrorKind::TimedOut => {
                StatusCode::GATEWAY_TIMEOUT
            }
            // The source failed as the guest read it: as if it had while opened. A
            // file's read error is the host's.
            (_, ObjectError::Input(error)) => error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<SourceError>())
                .map_or(StatusCode::INTERNAL_SERVER_ERROR, source_status),
            (Fault::Guest | Fault::Host, _) => StatusCode::INTERNAL_SERVER_ERROR,
        },
        EtlError::PutUrl(PutUrlError::MissingTargetUrl) => StatusCode::INTERNAL_SERVER_ERROR,
        // A name no URL path carries; AIStore never sends one.
        EtlError::PutUrl(PutUrlError::DotSegmentName(_)) => StatusCode::BAD_REQUEST,
        EtlError::DirectPut(PutError::Status { status, .. }) => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        EtlError::DirectPut(_) | EtlError::DirectPutExhausted { .. } => StatusCode::BAD_GATEWAY,
        EtlError::DirectPutOneShot(_) => StatusCode::SERVICE_UNAVAILABLE,
        EtlError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        EtlError::Held(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn source_status(source: &SourceError) -> StatusCode {
    match source {
        SourceError::FqnNotFound(_) => StatusCode::NOT_FOUND,
        // §11: an FQN outside the object paths the policy allows; never opened.
        SourceError::FqnRefused { .. } => StatusCode::FORBIDDEN,
        SourceError::FqnDenied { .. } => StatusCode::FORBIDDEN,
        SourceError::FqnUnreadable { .. }
        | SourceError::FqnChunked { .. }
        | SourceError::Consumed
        | SourceError::NoTargetUrl => StatusCode::INTERNAL_SERVER_ERROR,
        SourceError::Body(_) | SourceError::Download { .. } => StatusCode::BAD_REQUEST,
        // Passed on when an error: a redirect passed on would be a success.
        SourceError::Upstream { status, .. } => StatusCode::from_u16(*status)
            .ok()
            .filter(|status| status.as_u16() >= 400)
            .unwrap_or(StatusCode::BAD_GATEWAY),
        SourceError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        SourceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        if self.retry {
            response
                .headers_mut()
                .insert(RETRY_REASON, HeaderValue::from_static(DIRECT_PUT_TRANSIENT));
        }
        response
    }
}
