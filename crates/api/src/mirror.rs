//! The pull-through cache as the handlers see it: whether a request routes to an upstream
//! (by containerd's `?ns=`, a host path prefix or the default upstream), refusing writes into
//! upstream namespaces, and the OCI errors for pulls that failed upstream.

use berth_oci::RepoName;
use berth_proxy::{ProxyError, Refusal, What};
use http::{header, HeaderValue, StatusCode};

use crate::request::Req;
use crate::{ApiError, Ctx, Endpoint, ErrorCode};

/// Resolves the repository of `endpoint` once, before authorization: the returned endpoint
/// names the repository that is actually read or written (`docker.io/library/alpine` for
/// `alpine` with a default upstream, `evil.io/b/secret` for `b/secret?ns=evil.io`), and
/// `req.route` holds its upstream route, if any. Authorization, storage, the upstream fetch,
/// notifications, metrics and logs all see this one name, so no routing input (`?ns=`, a host
/// prefix, the default upstream) can make them disagree.
pub fn resolve(ctx: &Ctx, req: &mut Req, endpoint: Endpoint) -> Result<Endpoint, ApiError> {
    let Some(proxy) = &ctx.proxy else {
        return Ok(endpoint);
    };
    let Some(requested) = endpoint.repository().cloned() else {
        return Ok(endpoint);
    };
    let ns = req.query.get("ns");
    if let Some(ns) = proxy.unknown_namespace(ns) {
        tracing::info!(ns, repo = %requested, "refused: ?ns= names a registry no upstream is configured for");
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            StatusCode::NOT_FOUND,
            format!("no upstream is configured for the registry {ns} (?ns={ns}); add it to proxy.upstreams to cache it"),
        ));
    }
    let route = proxy.route(&requested, ns);
    let endpoint = match &route {
        Some(route) if route.local != requested => endpoint.with_repository(route.local.clone()),
        _ => endpoint,
    };
    req.route = route;
    req.requested = Some(requested);
    Ok(endpoint)
}

/// The repository `endpoint` reads when its `?ns=` is left out, for authorizing a request
/// that [`resolve`] refused for its `?ns=`: only a caller who may read what the same path
/// reads without it learns that no upstream stands for that namespace. (The same resolution
/// the built-in token server applies to the names it is asked for.)
pub fn without_ns(ctx: &Ctx, endpoint: Endpoint) -> Endpoint {
    match endpoint.repository().cloned() {
        Some(repo) => endpoint.with_repository(resolve_source(ctx, repo)),
        None => endpoint,
    }
}

/// The name a mount's `from` repository resolves to, the same way a pull of it would (host
/// prefix or default upstream; `?ns=` names the target's registry, not the source's).
pub fn resolve_source(ctx: &Ctx, from: RepoName) -> RepoName {
    match ctx.proxy.as_ref().and_then(|p| p.route(&from, None)) {
        Some(route) => route.local,
        None => from,
    }
}

/// Refuses a write (push, delete) into a repository an upstream owns: `405 UNSUPPORTED` in
/// registry:2's proxy mode (what it answers), `403 DENIED` with the reason otherwise. `repo`
/// is the resolved name and `req.route` its route ([`resolve`]).
pub fn check_write(ctx: &Ctx, req: &Req, repo: &RepoName) -> Result<(), ApiError> {
    let Some(proxy) = &ctx.proxy else {
        return Ok(());
    };
    match proxy.write_refusal(repo, req.route.as_ref()) {
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
        ProxyError::Registry(e) => ApiError::from(e.as_ref()),
        ProxyError::Storage(detail) => ApiError::internal(detail),
    }
}
