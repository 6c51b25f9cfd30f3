//! `GET /v2/<name>/tags/list` with `n`/`last` pagination and a `Link` header. A repository that
//! routes to an upstream lists the upstream's tags (the cached ones when it fails), as
//! registry:2 does in proxy mode.

use axum::response::Response;
use berth_oci::RepoName;
use berth_registry::read::ReadStore;
use http::header;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;

use crate::dispatch::json;
use crate::request::{url, Req};
use crate::{ApiError, Ctx};

/// What is escaped of a `?ns=` value carried into a `Link`: everything but what host names
/// are made of.
const NS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b':');

/// Lists tags in lexical order, from the store the dispatcher picked.
pub async fn list(
    ctx: &Ctx,
    req: &Req,
    store: &dyn ReadStore,
    repo: &RepoName,
) -> Result<Response, ApiError> {
    let n = req.query.page_size()?;
    let last = req.query.get("last");
    let page = store.tags(repo, n, last).await?;
    // The client's own name goes back to it (what it listed), not the stored one.
    let repo = req.requested.as_ref().unwrap_or(repo);
    let mut extra = Vec::new();
    if page.more {
        if let (Some(n), Some(last)) = (n, page.items.last()) {
            // The next page must route like this one: `?ns=` goes along.
            let ns = req
                .query
                .get("ns")
                .map(|ns| format!("&ns={}", utf8_percent_encode(ns, NS_ENCODE)))
                .unwrap_or_default();
            let next = url(
                ctx,
                &req.headers,
                &format!("/v2/{repo}/tags/list?n={n}&last={last}{ns}"),
            );
            extra.push((header::LINK, format!("<{next}>; rel=\"next\"")));
        }
    }
    json(
        &json!({"name": repo.as_str(), "tags": page.items}),
        "application/json",
        extra,
    )
}
