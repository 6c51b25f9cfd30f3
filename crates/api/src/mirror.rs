//! The pull-through cache as the handlers see it: whether a request routes to an upstream
//! (by containerd's `?ns=`, a host path prefix or the default upstream), refusing writes into
//! upstream namespaces, and the OCI errors for pulls that failed upstream.

use berth_oci::RepoName;
use berth_proxy::{ProxyError, Refusal, Route, What};
use http::{header, HeaderValue, StatusCode};

use crate::request::Req;
use crate::{ApiError, Ctx, ErrorCode};

/// The upstream route of a pull, or `None` for a repository served from storage only.
pub fn route(ctx: &Ctx, req: &Req, repo: &RepoName) -> Option<Route> {
    ctx.proxy.as_ref()?.route(repo, req.query.get("ns"))
}

/// Refuses a write (push, delete) into a repository an upstream owns: `405 UNSUPPORTED` in
/// registry:2's proxy mode (what it answers), `403 DENIED` with the reason otherwise.
pub fn check_write(ctx: &Ctx, req: Option<&Req>, repo: &RepoName) -> Result<(), ApiError> {
    let Some(proxy) = &ctx.proxy else {
        return Ok(());
    };
    let ns = req.and_then(|r| r.query.get("ns"));
    match proxy.write_refusal(repo, ns) {
        None => Ok(()),
        Some(Refusal::Unsupported) => Err(ApiError::new(
            ErrorCode::Unsupported,
            StatusCode::METHOD_NOT_ALLOWED,
            "The operation is unsupported.",
        )),
        Some(Refusal::Denied(message)) => Err(ApiError::new(
            ErrorCode::Denied,
            StatusCode::FORBIDDEN,
            message,
        )),
    }
}

/// The client's answer to a pull that failed upstream with nothing cached. The upstream's own
/// words are logged, not sent.
pub fn error(e: ProxyError) -> ApiError {
    match e {
        ProxyError::NotFound { what, host, detail } => {
            tracing::info!(upstream = host, detail, "not found upstream");
            let (code, thing) = match what {
                What::Manifest => (ErrorCode::ManifestUnknown, "manifest unknown"),
                What::Blob => (ErrorCode::BlobUnknown, "blob unknown to registry"),
                What::Repository => (
                    ErrorCode::NameUnknown,
                    "repository name not known to registry",
                ),
            };
            ApiError::new(
                code,
                StatusCode::NOT_FOUND,
                format!("{thing}: not found at upstream {host}"),
            )
        }
        ProxyError::TooManyRequests { host, retry_after } => {
            let e = ApiError::new(
                ErrorCode::TooManyRequests,
                StatusCode::TOO_MANY_REQUESTS,
                format!("upstream {host} is rate limiting this registry and the content is not cached yet; try again later"),
            );
            match retry_after {
                Some(d) => {
                    e.with_header(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)))
                }
                None => e,
            }
        }
        ProxyError::Unavailable { host, detail } => {
            tracing::warn!(
                upstream = host,
                detail,
                "upstream failed and nothing is cached"
            );
            ApiError::new(
                ErrorCode::Unknown,
                StatusCode::BAD_GATEWAY,
                format!("upstream {host} is unavailable and the content is not cached yet; try again later"),
            )
        }
        ProxyError::Storage(detail) => ApiError::internal(detail),
    }
}
