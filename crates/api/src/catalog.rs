//! `GET /v2/_catalog` with `n`/`last` pagination and a `Link` header.

use axum::response::Response;
use http::header;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use crate::dispatch::json;
use crate::request::{url, Req};
use crate::{ApiError, Ctx};

/// Page size when the client gives none (registry:2's `catalog.maxentries` default).
const DEFAULT_PAGE: usize = 1000;
/// Larger requests are clamped; the `Link` header lets the client go on.
const MAX_PAGE: usize = 10_000;

/// Lists repositories in walk order.
pub async fn list(ctx: &Ctx, req: &Req) -> Result<Response, ApiError> {
    let n = req.query.page_size()?.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    let page = ctx.registry.catalog(n, req.query.get("last")).await?;
    let mut extra = Vec::new();
    if page.more {
        if let Some(last) = page.items.last() {
            let last = utf8_percent_encode(last, NON_ALPHANUMERIC);
            let next = url(
                ctx,
                &req.headers,
                &format!("/v2/_catalog?n={n}&last={last}"),
            );
            extra.push((header::LINK, format!("<{next}>; rel=\"next\"")));
        }
    }
    json(
        &json!({"repositories": page.items}),
        "application/json",
        extra,
    )
}
