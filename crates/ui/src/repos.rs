//! The repository list: every repository the viewer may pull, from the registry's catalog
//! (the listing `_catalog` serves), searched by substring, grouped into private repositories
//! and, with a pull-through cache, one group per upstream, sorted by name, last push or size
//! (those two from the cached usage report, whose age the page states), and paged.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::response::Response;
use berth_oci::RepoName;
use http::StatusCode;

use crate::html::{date, esc, pager, search_form, size, sort_links, ListQuery};
use crate::usage::Snapshot;
use crate::Page;

/// Page size when none is asked for.
const DEFAULT_PAGE: usize = 50;
/// The largest page.
pub(crate) const MAX_PAGE: usize = 200;
/// Catalog names read per call.
const CATALOG_CHUNK: usize = 10_000;
/// The most repository names one request looks at (the catalog's own bound).
const MAX_SCANNED: usize = 100_000;

/// How long a page sorted by push date or size waits for the very first usage report.
const FIRST_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The sort choices; the first is the default.
const SORTS: [(&str, &str); 3] = [("name", "Name"), ("pushed", "Last push"), ("size", "Size")];

/// `GET <base>`: the repository list.
pub async fn list(page: &Page<'_>) -> Response {
    let q = page.param("q").map(str::to_owned);
    let sort = page
        .param("sort")
        .filter(|s| SORTS.iter().skip(1).any(|(key, _)| key == s))
        .map(str::to_owned);
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
    let usage = match sort {
        Some(_) => {
            page.ui
                .usage
                .wait(&page.ui.ctx.registry, FIRST_REPORT_WAIT)
                .await
        }
        None => page.ui.usage.current(&page.ui.ctx.registry),
    };
    let mut groups = vec![(None, private)];
    groups.extend(cached.into_iter().map(|(host, names)| (Some(host), names)));
    let mut rows: Vec<(Option<String>, String)> = Vec::new();
    for (host, mut names) in groups {
        if let (Some(sort), Some(usage)) = (sort.as_deref(), &usage) {
            sort_names(&mut names, sort, usage);
        }
        rows.extend(names.into_iter().map(|name| (host.clone(), name)));
    }
    let total = rows.len();
    let shown: Vec<_> = rows.into_iter().skip(start).take(n).collect();
    let query = ListQuery {
        q: q.as_deref(),
        sort: sort.as_deref(),
    };
    body.push_str(&search_form(page.base(), query, "Search repositories"));
    body.push_str(&sort_links(page.base(), query, &SORTS));
    body.push_str(&pager(page.base(), query, start, n, shown.len(), total));
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
                "<h2>{heading}</h2><table><thead><tr><th>Repository</th><th class=\"num\">Tags</th>\
                 <th class=\"num\">Size</th><th>Last push</th></tr></thead><tbody>"
            );
            group = Some(upstream.clone());
        }
        let used = usage.as_ref().and_then(|u| u.repository(name));
        let _ = write!(
            body,
            "<tr><td><a href=\"{}r/{}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(page.base()),
            esc(name),
            esc(name),
            used.map_or_else(String::new, |u| u.tags.to_string()),
            used.map_or_else(String::new, |u| size(u.unique_bytes + u.shared_bytes)),
            used.and_then(|u| u.last_pushed).map_or_else(String::new, date),
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
    match &usage {
        Some(usage) => {
            let _ = write!(
                body,
                "<p class=\"note\">Tags, sizes and push dates as of {} ago (recounted in the \
                 background at most once a minute). A size counts every blob the repository's \
                 manifests use, shared ones included.</p>",
                usage.age()
            );
        }
        None => body.push_str(
            "<p class=\"note\">Tags, sizes and push dates are being counted; reload in a \
             moment to see them and to sort by them.</p>",
        ),
    }
    page.html(StatusCode::OK, "Repositories", &body)
}

/// Sorts `names` by `sort` (`pushed`: newest first; `size`: largest first), names the report
/// does not know (pushed since) first, each tie by name.
fn sort_names(names: &mut [String], sort: &str, usage: &Snapshot) {
    names.sort_by_cached_key(|name| {
        let used = usage.repository(name);
        let key = match (sort, used) {
            (_, None) => u128::MAX,
            ("pushed", Some(u)) => u.last_pushed.map_or(0, |t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            }),
            (_, Some(u)) => u128::from(u.unique_bytes + u.shared_bytes),
        };
        (std::cmp::Reverse(key), name.clone())
    });
}

/// The upstream host a stored repository is cached from, with a pull-through cache.
pub(crate) fn upstream_of(page: &Page<'_>, name: &str) -> Option<String> {
    let proxy = page.ui.ctx.proxy.as_ref()?;
    let repo: RepoName = name.parse().ok()?;
    let route = proxy.route(&repo, None)?;
    (route.local == repo).then(|| route.upstream.host().to_owned())
}
