//! `GET /v2/_catalog` with `n`/`last` pagination and a `Link` header, and Berth's
//! `GET /v2/_berth/usage`: the same repositories with their storage use.

use axum::response::Response;
use berth_auth::Grant;
use berth_registry::tags::Page;
use http::header;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use crate::dispatch::json;
use crate::request::{url, Req};
use crate::{ApiError, Ctx};

/// A page of `n` repositories the caller may see, after `last`. Hidden repositories are
/// skipped by reading further pages, so a page is only short at the end of the catalog.
async fn visible_page(
    ctx: &Ctx,
    grant: &Grant,
    n: usize,
    last: Option<&str>,
) -> Result<Page, ApiError> {
    let Some(auth) = &ctx.auth else {
        return Ok(ctx.registry.catalog(n, last).await?);
    };
    let mut items = Vec::new();
    let mut cursor = last.map(str::to_owned);
    loop {
        let page = ctx.registry.catalog(n, cursor.as_deref()).await?;
        cursor = page.items.last().cloned();
        for name in page.items {
            if items.len() == n {
                // More visible names may follow; the Link header lets the client ask.
                return Ok(Page { items, more: true });
            }
            if auth.may_list(grant, &name) {
                items.push(name);
            }
        }
        if !page.more {
            return Ok(Page { items, more: false });
        }
    }
}

/// Page size when the client gives none (registry:2's `catalog.maxentries` default).
const DEFAULT_PAGE: usize = 1000;
/// Larger requests are clamped; the `Link` header lets the client go on.
const MAX_PAGE: usize = 10_000;

/// Lists repositories in walk order; with access rules, only those the caller may pull.
pub async fn list(ctx: &Ctx, req: &Req, grant: &Grant) -> Result<Response, ApiError> {
    let n = req.query.page_size()?.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    let page = visible_page(ctx, grant, n, req.query.get("last")).await?;
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

/// Storage use per repository (the `berth du` report as JSON), limited like the catalog to
/// the repositories the caller may see. It walks the whole store: meant for an operator or
/// the web UI, not for every page load of a busy dashboard.
pub async fn usage(ctx: &Ctx, grant: &Grant) -> Result<Response, ApiError> {
    let mut report = ctx.registry.usage().await?;
    if let Some(auth) = &ctx.auth {
        report
            .repositories
            .retain(|r| auth.may_list(grant, &r.name));
    }
    let value = serde_json::to_value(&report).map_err(ApiError::internal)?;
    json(&value, "application/json", Vec::new())
}
