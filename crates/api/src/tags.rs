//! `GET /v2/<name>/tags/list` with `n`/`last` pagination and a `Link` header.

use axum::response::Response;
use berth_oci::RepoName;
use http::header;
use serde_json::json;

use crate::dispatch::json;
use crate::request::{url, Req};
use crate::{ApiError, Ctx};

/// Lists tags in lexical order.
pub async fn list(ctx: &Ctx, req: &Req, repo: &RepoName) -> Result<Response, ApiError> {
    let n = req.query.page_size()?;
    let last = req.query.get("last");
    let page = ctx.registry.list_tags(repo, n, last).await?;
    let mut extra = Vec::new();
    if page.more {
        if let (Some(n), Some(last)) = (n, page.items.last()) {
            let next = url(
                ctx,
                &req.headers,
                &format!("/v2/{repo}/tags/list?n={n}&last={last}"),
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
