//! The pull-through cache as the dispatcher sees it: whether a request routes to an upstream
//! (by containerd's `?ns=`, a host path prefix or the default upstream), and then the read store
//! its reads go through. Writes into upstream namespaces are refused by the write policy
//! ([`crate::policy`]); failed pulls map to OCI errors in [`crate::error`].

use berth_oci::RepoName;
use berth_proxy::ReadThrough;
use http::StatusCode;

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

/// The store the reads of `req` are served from: the pull-through cache for its route when
/// [`resolve`] found one, else `None` (the registry itself). Picked once, in the dispatcher.
pub fn read_through(ctx: &Ctx, req: &Req) -> Option<ReadThrough> {
    match (&req.route, &ctx.proxy) {
        (Some(route), Some(proxy)) => Some(proxy.read_through(route.clone())),
        _ => None,
    }
}
