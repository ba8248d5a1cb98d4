//! Pure retry policy for OTLP exports (gRPC statuses; OTLP/HTTP responses are mapped onto them):
//! which statuses are retried, and how long to wait.
//!
//! - UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED, OUT_OF_RANGE and DATA_LOSS are retried with
//!   exponential backoff and jitter, as the OTLP specification says; with a `RetryInfo`, after the
//!   delay the server asks for.
//! - RESOURCE_EXHAUSTED that says the request was too large (gRPC's "larger than max", HTTP 413) is
//!   [`Retry::Split`]: the request is split in two and each half sent (and split again if needed).
//! - Any other RESOURCE_EXHAUSTED is throttling: retried after its `RetryInfo`, else with backoff.
//!   The specification retries it only with a `RetryInfo`; the agent retries it anyway, because
//!   dropping a restart under load is what it exists to avoid, and the backoff bounds the load.
//! - Everything else is permanent: the batch is dropped and counted with its reason.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

/// First backoff delay.
pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// Longest backoff delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest server-requested delay honoured (a larger RetryInfo is capped).
pub(crate) const RETRY_INFO_MAX: Duration = Duration::from_secs(600);

/// What to do after a failed export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Retry after an exponential backoff with jitter.
    Backoff,
    /// Retry after the delay the server asked for (RetryInfo).
    After(Duration),
    /// The request was too large for the receiver: split it and send the halves.
    Split,
    /// Do not retry: drop the batch and count it.
    Never,
}

/// Classifies a gRPC status code and the server's RetryInfo delay, if any.
pub(crate) fn classify_code(code: Code, retry_info: Option<Duration>) -> Retry {
    let requested = retry_info.filter(|d| !d.is_zero()).map(|d| d.min(RETRY_INFO_MAX));
    match code {
        Code::ResourceExhausted => requested.map_or(Retry::Backoff, Retry::After),
        Code::Unavailable => requested.map_or(Retry::Backoff, Retry::After),
        Code::Cancelled | Code::DeadlineExceeded | Code::Aborted | Code::OutOfRange | Code::DataLoss => Retry::Backoff,
        _ => Retry::Never,
    }
}

/// Classifies a tonic status, reading its RetryInfo detail.
pub(crate) fn classify(status: &tonic::Status) -> Retry {
    if is_too_large(status) {
        return Retry::Split;
    }
    let retry_info = status.get_details_retry_info().and_then(|r| r.retry_delay);
    classify_code(status.code(), retry_info)
}

/// The receiver refused the request for its size: gRPC servers say "received message larger than
/// max" (RESOURCE_EXHAUSTED), tonic servers "message length too large" (OUT_OF_RANGE); an OTLP/HTTP
/// 413 is mapped to "request too large".
pub(crate) fn is_too_large(status: &tonic::Status) -> bool {
    let m = status.message();
    match status.code() {
        Code::ResourceExhausted => m.contains("larger than max") || m.contains("too large"),
        // tonic servers: "decoded message length too large".
        Code::OutOfRange => m.contains("message length too large"),
        _ => false,
    }
}

/// The backoff before retry number `attempt` (0-based): `BACKOFF_INITIAL * 2^attempt`, capped at
/// `BACKOFF_MAX`, then scaled by `jitter` in [0.5, 1.0] (so concurrent agents spread out).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = BACKOFF_INITIAL.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX)).min(BACKOFF_MAX);
    base.mul_f64(jitter.clamp(0.5, 1.0))
}

/// A low-cardinality reason label for a status code (`unavailable`, `invalid_argument`, ...).
pub fn reason(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let s = Duration::from_secs;
        let cases: Vec<(Code, Option<Duration>, Retry)> = vec![
            (Code::Unavailable, None, Retry::Backoff),
            (Code::Unavailable, Some(s(3)), Retry::After(s(3))),
            (Code::Unavailable, Some(Duration::ZERO), Retry::Backoff),
            (Code::DeadlineExceeded, None, Retry::Backoff),
            (Code::Aborted, None, Retry::Backoff),
            (Code::Cancelled, None, Retry::Backoff),
            (Code::OutOfRange, None, Retry::Backoff),
            (Code::DataLoss, None, Retry::Backoff),
            (Code::ResourceExhausted, Some(s(2)), Retry::After(s(2))),
            (Code::ResourceExhausted, Some(s(3600)), Retry::After(RETRY_INFO_MAX)),
            (Code::ResourceExhausted, None, Retry::Backoff),
            (Code::InvalidArgument, None, Retry::Never),
            (Code::InvalidArgument, Some(s(1)), Retry::Never),
            (Code::Unauthenticated, None, Retry::Never),
            (Code::PermissionDenied, None, Retry::Never),
            (Code::Unimplemented, None, Retry::Never),
            (Code::NotFound, None, Retry::Never),
            (Code::Internal, None, Retry::Never),
            (Code::Unknown, None, Retry::Never),
        ];
        for (code, info, want) in cases {
            assert_eq!(classify_code(code, info), want, "{code:?} with RetryInfo {info:?}");
        }
    }

    #[test]
    fn retry_info_is_read_from_the_status_details() {
        use tonic_types::{ErrorDetails, StatusExt};
        let status = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
        );
        assert_eq!(classify(&status), Retry::After(Duration::from_millis(1500)));
        assert_eq!(classify(&tonic::Status::resource_exhausted("full")), Retry::Backoff, "throttling is retried");
        let too_large =
            tonic::Status::resource_exhausted("grpc: received message larger than max (5242880 vs. 4194304)");
        assert_eq!(classify(&too_large), Retry::Split);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        assert_eq!(backoff(0, 1.0), BACKOFF_INITIAL);
        assert_eq!(backoff(1, 1.0), BACKOFF_INITIAL * 2);
        assert_eq!(backoff(3, 0.5), BACKOFF_INITIAL * 4);
        assert_eq!(backoff(30, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX, 0.0), BACKOFF_MAX / 2, "jitter is clamped to [0.5, 1]");
    }
}
