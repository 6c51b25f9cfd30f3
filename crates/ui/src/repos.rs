//! The repository list: every repository the viewer may pull, from the registry's catalog
//! (the listing `_catalog` serves), searched by substring, grouped into private repositories
//! and, with a pull-through cache, one group per upstream, and paged.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::response::Response;
use berth_oci::RepoName;
use http::StatusCode;

use crate::html::{esc, pager, search_form};
use crate::Page;

/// Page size when none is asked for.
const DEFAULT_PAGE: usize = 50;
/// The largest page.
pub(crate) const MAX_PAGE: usize = 200;
/// Catalog names read per call.
const CATALOG_CHUNK: usize = 10_000;
/// The most repository names one request looks at (the catalog's own bound).
const MAX_SCANNED: usize = 100_000;

/// `GET <base>`: the repository list.
pub async fn list(page: &Page<'_>) -> Response {
    let q = page.param("q").map(str::to_owned);
    let start = page.number("start", 0, MAX_SCANNED);
    let n = page.number("n", DEFAULT_PAGE, MAX_PAGE).max(1);
    let mut body = String::from("<h1>Repositories</h1>");
    if let Some(note) = page.nothing_visible_note() {
        let _ = write!(body, "<p class=\"warn\">{note}</p>");
        return page.html(StatusCode::OK, "Repositories", &body);
    }
    // Every name, in the catalog's order (by name, component by component).
    let mut names = Vec::new();
    let mut last: Option<String> = None;
    let mut truncated = false;
    loop {
        let chunk = match page
            .registry()
            .catalog(CATALOG_CHUNK, last.as_deref())
            .await
        {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::error!(error = %e, "web UI: cannot list repositories");
                return page.message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Repositories",
                    "The repository list cannot be read from storage right now.",
                );
            }
        };
        last = chunk.items.last().cloned();
        names.extend(chunk.items);
        if !chunk.more {
            break;
        }
        if names.len() >= MAX_SCANNED {
            truncated = true;
            break;
        }
    }
    let needle = q.as_deref().map(str::to_lowercase);
    // Private repositories first, then one group per upstream host.
    let mut private = Vec::new();
    let mut cached: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        if let Some(needle) = &needle {
            if !name.to_lowercase().contains(needle.as_str()) {
                continue;
            }
        }
        if !page.may_pull(&name).await {
            continue;
        }
        match upstream_of(page, &name) {
            Some(host) => cached.entry(host).or_default().push(name),
            None => private.push(name),
        }
    }
    let mut rows: Vec<(Option<String>, String)> =
        private.into_iter().map(|name| (None, name)).collect();
    for (host, names) in cached {
        rows.extend(names.into_iter().map(|name| (Some(host.clone()), name)));
    }
    let total = rows.len();
    let shown: Vec<_> = rows.into_iter().skip(start).take(n).collect();
    body.push_str(&search_form(
        page.base(),
        q.as_deref(),
        "Search repositories",
    ));
    body.push_str(&pager(
        page.base(),
        q.as_deref(),
        start,
        n,
        shown.len(),
        total,
    ));
    let mut group: Option<Option<String>> = None;
    for (upstream, name) in &shown {
        if group.as_ref() != Some(upstream) {
            if group.is_some() {
                body.push_str("</tbody></table>");
            }
            let heading = match upstream {
                None => "Private repositories".to_owned(),
                Some(host) => format!("Cached from {}", esc(host)),
            };
            let _ = write!(
                body,
                "<h2>{heading}</h2><table><thead><tr><th>Repository</th></tr></thead><tbody>"
            );
            group = Some(upstream.clone());
        }
        let _ = write!(
            body,
            "<tr><td><a href=\"{}r/{}\">{}</a></td></tr>",
            esc(page.base()),
            esc(name),
            esc(name)
        );
    }
    if group.is_some() {
        body.push_str("</tbody></table>");
    }
    if truncated {
        let _ = write!(
            body,
            "<p class=\"note\">Only the first {MAX_SCANNED} repositories were looked at; search to narrow the list.</p>"
        );
    }
    body.push_str(
        "<p class=\"note\">Sorted by name. Sorting by push date is not offered: it would read \
         every repository's tags on each request.</p>",
    );
    page.html(StatusCode::OK, "Repositories", &body)
}

/// The upstream host a stored repository is cached from, with a pull-through cache.
fn upstream_of(page: &Page<'_>, name: &str) -> Option<String> {
    let proxy = page.ui.ctx.proxy.as_ref()?;
    let repo: RepoName = name.parse().ok()?;
    let route = proxy.route(&repo, None)?;
    (route.local == repo).then(|| route.upstream.host().to_owned())
}
