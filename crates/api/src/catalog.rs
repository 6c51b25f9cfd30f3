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

/// How many repository names one catalog request may look at while skipping the ones the
/// caller may not see. The loop is driven by request input (`n`, `last`), so it has a bound
/// of its own: past it the page ends early and `Link` lets the client go on from there.
const MAX_SCANNED: usize = 100_000;

/// A page of repositories the caller may see, and where the next page starts.
struct VisiblePage {
    items: Vec<String>,
    /// The name to continue after, when more may follow.
    next: Option<String>,
}

/// A page of `n` repositories the caller may see, after `last`. Hidden repositories are
/// skipped by reading further pages, so a page is short only at the end of the catalog or
/// after [`MAX_SCANNED`] names.
async fn visible_page(
    ctx: &Ctx,
    grant: &Grant,
    n: usize,
    last: Option<&str>,
) -> Result<VisiblePage, ApiError> {
    if n == 0 {
        return Ok(VisiblePage {
            items: Vec::new(),
            next: None,
        });
    }
    let Some(auth) = &ctx.auth else {
        let Page { items, more } = ctx.registry.catalog(n, last).await?;
        let next = more.then(|| items.last().cloned()).flatten();
        return Ok(VisiblePage { items, next });
    };
    let mut items = Vec::new();
    let mut cursor = last.map(str::to_owned);
    let mut scanned = 0usize;
    loop {
        let page = ctx.registry.catalog(n, cursor.as_deref()).await?;
        for name in page.items {
            if items.len() == n {
                // More visible names may follow; the Link header lets the client ask.
                let next = items.last().cloned();
                return Ok(VisiblePage { items, next });
            }
            scanned += 1;
            if auth.may_list(grant, &name) {
                items.push(name.clone());
            }
            cursor = Some(name);
        }
        if !page.more {
            return Ok(VisiblePage { items, next: None });
        }
        if scanned >= MAX_SCANNED {
            return Ok(VisiblePage {
                items,
                next: cursor,
            });
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
    if let Some(last) = &page.next {
        let last = utf8_percent_encode(last, NON_ALPHANUMERIC);
        let next = url(
            ctx,
            &req.headers,
            &format!("/v2/_catalog?n={n}&last={last}"),
        );
        extra.push((header::LINK, format!("<{next}>; rel=\"next\"")));
    }
    json(
        &json!({"repositories": page.items}),
        "application/json",
        extra,
    )
}

/// Storage use per repository (the `berth du` report as JSON), limited like the catalog to
/// the repositories the caller may see. It walks the whole store, so one walk is shared by
/// every caller for 30 s ([`berth_registry::usage::USAGE_REUSE`]).
/// The registry-wide totals are sent only to a caller who sees every repository: summed over
/// hidden repositories they would tell how much is stored where the caller may not look.
pub async fn usage(ctx: &Ctx, grant: &Grant) -> Result<Response, ApiError> {
    let mut report = (*ctx.registry.usage_shared().await?).clone();
    let before = report.repositories.len();
    if let Some(auth) = &ctx.auth {
        report
            .repositories
            .retain(|r| auth.may_list(grant, &r.name));
    }
    let hidden = before - report.repositories.len();
    let mut value = serde_json::to_value(&report).map_err(ApiError::internal)?;
    if let (true, Some(fields)) = (hidden > 0, value.as_object_mut()) {
        for total in USAGE_TOTALS {
            fields.remove(*total);
        }
        fields.insert("partial".into(), true.into());
    }
    json(&value, "application/json", Vec::new())
}

/// The report's registry-wide fields (see [`berth_registry::usage::UsageReport`]).
const USAGE_TOTALS: &[&str] = &["blobs", "bytes", "unreferenced_blobs", "unreferenced_bytes"];
