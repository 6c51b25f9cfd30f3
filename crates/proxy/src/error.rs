//! Why a pull through the cache failed: what an upstream did ([`UpstreamError`]), and what the
//! client is answered when nothing is cached ([`ProxyError`]). Errors are `Clone` because one
//! upstream fetch answers every client waiting for it (single flight).

use std::time::Duration;

/// A failed pull through the cache: the read side's error ([`berth_registry::read::ReadError`]),
/// since the cache is one of the read stores, under the name the cache's callers know. A client
/// only sees one when Berth never had the content: with a cached copy, upstream failures are
/// logged and the copy is served.
pub use berth_registry::read::{ReadError as ProxyError, What};

/// What went wrong talking to an upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, DNS or TLS failure, or the connection broke.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No response headers (or no body data) within the configured time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An HTTP status that is not success (401/403 after auth, 404, 429, 5xx, ...).
    #[error("answered HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// `Retry-After` of a 429 or 503.
        retry_after: Option<Duration>,
    },
    /// The upstream sent content that does not match its digest or does not parse.
    #[error("invalid content: {0}")]
    Invalid(String),
    /// The upstream was marked down after a recent failure and a cached copy exists.
    #[error("marked down after a recent failure")]
    Down,
    /// An answer larger than its limit (see [`crate::body`]); reading stopped at the limit.
    #[error("{what} larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was being read (`manifest`, `token response`, ...).
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A redirect or token realm that points somewhere Berth does not go (see
    /// [`crate::guard`]).
    #[error("refused: {0}")]
    Refused(String),
}

impl UpstreamError {
    /// Whether the upstream positively says the thing does not exist (or is not ours to see).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Status { status, .. } if matches!(status, 401 | 403 | 404))
    }

    /// Whether trying again soon may help (network trouble or a server error, not a refusal).
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Unreachable(_) | UpstreamError::Timeout(_) => true,
            UpstreamError::Status { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            UpstreamError::Invalid(_)
            | UpstreamError::Down
            | UpstreamError::TooLarge { .. }
            | UpstreamError::Refused(_) => false,
        }
    }

    /// The client-facing error when nothing is cached.
    pub fn into_proxy(self, what: What, host: &str) -> ProxyError {
        if !self.is_not_found() {
            crate::metrics::upstream_error(host, &self);
        }
        let host = host.to_owned();
        match self {
            e if e.is_not_found() => ProxyError::NotFound {
                what,
                host,
                detail: e.to_string(),
            },
            UpstreamError::Status {
                status: 429,
                retry_after,
            } => ProxyError::TooManyRequests { host, retry_after },
            e => ProxyError::Unavailable {
                host,
                detail: e.to_string(),
            },
        }
    }
}
