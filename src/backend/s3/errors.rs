//! SDK errors to [`BackendError`]: the one place that reads the status and
//! error code of an S3 answer and decides what it means (missing object,
//! existing object, access denied, transient or permanent), and that turns
//! error chains into one-line messages.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::retry::ErrorKind;

use crate::backend::{BackendError, FileKind};

/// HTTP statuses that mean "try again later" (timeout, throttling, server trouble).
const TRANSIENT_STATUS: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// Error codes that mean the same, whatever the status (the SDK's throttling
/// and transient codes that S3 servers send).
const TRANSIENT_CODES: [&str; 9] = [
    "RequestTimeout",
    "RequestTimeoutException",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "TooManyRequestsException",
    "InternalError",
    "ServiceUnavailable",
];

/// What an SDK error says, reduced to what the mapping needs.
pub(super) struct ErrInfo {
    pub(super) status: Option<u16>,
    pub(super) code: Option<String>,
    pub(super) message: String,
    /// See [`BackendError::is_transient`].
    pub(super) transient: bool,
}

impl ErrInfo {
    /// The `Remote` error of a failed `what`, transient if this answer was.
    pub(super) fn remote(self, what: impl Into<String>) -> BackendError {
        BackendError::Remote {
            what: what.into(),
            message: self.message,
            transient: self.transient,
        }
    }
}

pub(super) fn err_info<E>(err: &SdkError<E, HttpResponse>) -> ErrInfo
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.as_service_error().and_then(|e| e.code()).map(str::to_string);
    let message = match (err.as_service_error(), &code) {
        (Some(se), Some(code)) => {
            let msg = se.message().unwrap_or("");
            let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
            if msg.is_empty() {
                format!("{code}{status}")
            } else {
                format!("{code}{status}: {msg}")
            }
        }
        _ => match status {
            Some(s) if err.as_service_error().is_some() => format!("HTTP {s}"),
            _ => error_chain(err),
        },
    };
    ErrInfo {
        status,
        code: code.clone(),
        message: one_line(&message),
        transient: is_transient(err, status, code.as_deref()),
    }
}

/// The rule of [`BackendError::is_transient`] for S3, as the SDK's standard
/// retry mode sees it: no answer in time, a broken connection, a response
/// that could not be read, or an answer that says "later" (a status of
/// [`TRANSIENT_STATUS`] or a code of [`TRANSIENT_CODES`]). Everything else
/// (a request that could not be built, credentials, 4xx answers) is permanent.
fn is_transient<E>(err: &SdkError<E, HttpResponse>, status: Option<u16>, code: Option<&str>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => {
            d.is_io()
                || d.is_timeout()
                || matches!(
                    d.as_other(),
                    Some(ErrorKind::TransientError | ErrorKind::ThrottlingError | ErrorKind::ServerError)
                )
        }
        SdkError::ServiceError(_) => {
            status.is_some_and(|s| TRANSIENT_STATUS.contains(&s)) || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    }
}

/// An error and its sources as "a: b: c" (the SDK's `DisplayErrorContext`
/// appends a Debug dump, too much for a message line).
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A failure found here rather than reported by the server (a verification
/// that failed, an answer missing what it must carry): permanent.
pub(super) fn remote(what: impl Into<String>, message: impl Into<String>) -> BackendError {
    BackendError::Remote {
        what: what.into(),
        message: message.into(),
        transient: false,
    }
}

/// A response body that broke off after its headers arrived (the SDK retries
/// only up to the headers): transient, like the connection failure it is.
pub(super) fn body_failed(what: impl Into<String>, err: &(dyn std::error::Error + 'static)) -> BackendError {
    BackendError::Remote {
        what: what.into(),
        message: one_line(&error_chain(err)),
        transient: true,
    }
}

fn is_not_found(info: &ErrInfo) -> bool {
    match info.code.as_deref() {
        Some("NoSuchKey") | Some("NotFound") | Some("NoSuchVersion") => true,
        // A missing bucket is a configuration problem, not a missing file.
        Some("NoSuchBucket") => false,
        _ => info.status == Some(404),
    }
}

pub(super) fn is_access_denied(info: &ErrInfo) -> bool {
    info.status == Some(403) || info.code.as_deref() == Some("AccessDenied")
}

/// The generic mapping: missing object → `NotFound`, anything else → `Remote`.
pub(super) fn map_err<E>(err: SdkError<E, HttpResponse>, op: &str, kind: FileKind, name: &str) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    map_info(err_info(&err), op, kind, name)
}

/// The mapping of a write sent with `If-None-Match: *` (a PUT, or the
/// completion of a multipart upload): `412 Precondition Failed` means the
/// object exists → `AlreadyExists`; anything else as [`map_err`].
pub(super) fn map_create_err<E>(err: SdkError<E, HttpResponse>, op: &str, kind: FileKind, name: &str) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let info = err_info(&err);
    if info.status == Some(412) {
        return BackendError::AlreadyExists {
            kind,
            name: name.to_string(),
        };
    }
    map_info(info, op, kind, name)
}

fn map_info(info: ErrInfo, op: &str, kind: FileKind, name: &str) -> BackendError {
    if is_not_found(&info) {
        return BackendError::NotFound {
            kind,
            name: name.to_string(),
        };
    }
    info.remote(format!("{op} {kind} {name}"))
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn answer(status: u16, code: Option<&str>) -> SdkError<GetObjectError, HttpResponse> {
        let mut meta = ErrorMetadata::builder().message("said the server");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        SdkError::service_error(
            GetObjectError::generic(meta.build()),
            HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    fn mapped(err: SdkError<GetObjectError, HttpResponse>) -> BackendError {
        map_create_err(err, "read", FileKind::Pack, "p")
    }

    #[test]
    fn answers_map_to_kinds() {
        assert!(mapped(answer(404, Some("NoSuchKey"))).is_not_found());
        assert!(mapped(answer(404, None)).is_not_found());
        assert!(!mapped(answer(404, Some("NoSuchBucket"))).is_not_found());
        assert!(matches!(
            mapped(answer(412, Some("PreconditionFailed"))),
            BackendError::AlreadyExists { .. }
        ));
        // Only a conditional write reads 412 as "exists".
        assert!(matches!(
            map_err(answer(412, Some("PreconditionFailed")), "read", FileKind::Pack, "p"),
            BackendError::Remote { .. }
        ));
        assert!(is_access_denied(&err_info(&answer(403, Some("AccessDenied")))));
        match mapped(answer(500, Some("InternalError"))) {
            BackendError::Remote { what, message, .. } => {
                assert_eq!(what, "read pack p");
                assert_eq!(message, "InternalError (HTTP 500): said the server");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transient_or_permanent() {
        for (status, code) in [
            (500, Some("InternalError")),
            (503, Some("SlowDown")),
            (503, None),
            (429, None),
            (400, Some("RequestTimeout")),
        ] {
            assert!(mapped(answer(status, code)).is_transient(), "{status} {code:?}");
        }
        for (status, code) in [
            (400, Some("InvalidArgument")),
            (403, Some("AccessDenied")),
            (404, Some("NoSuchKey")),
            (404, Some("NoSuchBucket")),
            (412, None),
            (416, Some("InvalidRange")),
        ] {
            assert!(!mapped(answer(status, code)).is_transient(), "{status} {code:?}");
        }
        let io = SdkError::<GetObjectError, HttpResponse>::dispatch_failure(ConnectorError::io("reset".into()));
        assert!(mapped(io).is_transient());
        let timeout = SdkError::<GetObjectError, HttpResponse>::timeout_error("slow");
        assert!(mapped(timeout).is_transient());
        let user = SdkError::<GetObjectError, HttpResponse>::dispatch_failure(ConnectorError::user("bad uri".into()));
        assert!(!mapped(user).is_transient());
        let build = SdkError::<GetObjectError, HttpResponse>::construction_failure("no bucket");
        assert!(!mapped(build).is_transient());
        assert!(!remote("create pack p", "upload not verified").is_transient());
        assert!(body_failed("read pack p", &std::io::Error::other("eof")).is_transient());
    }
}
