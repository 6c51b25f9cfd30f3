//! A repository's page: its tags (cosign `.sig`/`.att`/`.sbom` tags folded under the image
//! they belong to), searched by substring and paged; per tag on the page its digest, size,
//! push date and platforms. Sorted by name, only the page's tags are read, so a repository
//! with 10,000 tags costs one tag listing plus a page's worth of reads. Sorted by push date or
//! size, every tag's date and size are read once (each distinct manifest parsed once) and kept
//! for [`FACTS_REUSE`], so paging through the sorted list does not read them again.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::response::Response;
use berth_oci::{Reference, RepoName, Tag};
use futures_util::StreamExt;
use http::StatusCode;

use crate::html::{date, esc, pager, search_form, short_digest, size, sort_links, ListQuery};
use crate::manifest::{self, cosign_tag};
use crate::repos::MAX_PAGE;
use crate::Page;

/// Tags per page when none is asked for.
const DEFAULT_PAGE: usize = 50;
/// Tags of a page read at once.
const CONCURRENCY: usize = 16;
/// How long the dates and sizes read for sorting are reused.
pub const FACTS_REUSE: Duration = Duration::from_secs(30);
/// Repositories whose sorting facts are kept at once.
const FACTS_KEPT: usize = 16;
/// The sort choices; the first is the default.
const SORTS: [(&str, &str); 3] = [("name", "Name"), ("pushed", "Push date"), ("size", "Size")];

/// What sorting by date or size needs of one tag.
#[derive(Clone, Copy, Default)]
struct Facts {
    pushed: Option<SystemTime>,
    size: Option<u64>,
}

/// Each tag's [`Facts`], by tag name.
type FactsByTag = Arc<HashMap<String, Facts>>;

/// Per repository (and search), every tag's [`Facts`] and when they were read.
pub struct TagFacts {
    kept: Mutex<HashMap<String, (Instant, FactsByTag)>>,
    /// Readings under way at once: each reads every tag of a repository, and a viewer could
    /// ask for many searches at once.
    readings: tokio::sync::Semaphore,
}

impl Default for TagFacts {
    fn default() -> Self {
        TagFacts {
            kept: Mutex::default(),
            readings: tokio::sync::Semaphore::new(2),
        }
    }
}

/// One row of the tag table.
struct Row {
    tag: String,
    digest: Option<String>,
    size: Option<u64>,
    pushed: Option<SystemTime>,
    platforms: Vec<String>,
    kind: Option<String>,
}

/// The answer for a repository the viewer may not see or that does not exist: the same, so
/// nobody learns which names exist.
pub fn not_found(page: &Page<'_>) -> Response {
    page.message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such repository, or you may not pull it.",
    )
}

/// `GET <base>r/<name>`.
pub async fn show(page: &Page<'_>, name: &str) -> Response {
    let Ok(repo) = name.parse::<RepoName>() else {
        return not_found(page);
    };
    if !page.may_pull(repo.as_str()).await {
        return not_found(page);
    }
    let all = match page.registry().all_tags(&repo).await {
        Ok(all) => all,
        Err(berth_registry::RegistryError::NameUnknown(_)) => return not_found(page),
        Err(e) => {
            tracing::error!(error = %e, repository = %repo, "web UI: cannot list tags");
            return page.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Tags",
                "The tag list cannot be read from storage right now.",
            );
        }
    };
    let q = page.param("q").map(str::to_owned);
    let needle = q.as_deref().map(str::to_lowercase);
    let (signatures, tags): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|t| cosign_tag(t).is_some());
    let signatures: HashSet<String> = signatures.into_iter().collect();
    let tags: Vec<String> = match &needle {
        Some(needle) => tags
            .into_iter()
            .filter(|t| t.to_lowercase().contains(needle.as_str()))
            .collect(),
        None => tags,
    };
    let sort = page
        .param("sort")
        .filter(|s| SORTS.iter().skip(1).any(|(key, _)| key == s))
        .map(str::to_owned);
    let mut tags = tags;
    if let Some(sort) = sort.as_deref() {
        let key = format!("{repo}\n{}", needle.as_deref().unwrap_or(""));
        let facts = facts(page, &repo, &key, &tags).await;
        tags.sort_by_cached_key(|t| {
            let f = facts.get(t).copied().unwrap_or_default();
            let key = match sort {
                "pushed" => f.pushed.map_or(0, |t| {
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos())
                }),
                _ => u128::from(f.size.unwrap_or(0)),
            };
            (std::cmp::Reverse(key), t.clone())
        });
    }
    let total = tags.len();
    let start = page.number("start", 0, total);
    let n = page.number("n", DEFAULT_PAGE, MAX_PAGE).max(1);
    let page_tags: Vec<String> = tags.into_iter().skip(start).take(n).collect();
    let rows: Vec<Row> = futures_util::stream::iter(page_tags)
        .map(|tag| row(page, &repo, tag))
        .buffered(CONCURRENCY)
        .collect()
        .await;

    let base = esc(page.base());
    let path = format!("{}r/{}", page.base(), repo);
    let mut body = format!("<h1>{}</h1>", esc(repo.as_str()));
    if let Some(usage) = page.ui.usage.current(&page.ui.ctx.registry) {
        if let Some(used) = usage.repository(repo.as_str()) {
            let _ = write!(
                body,
                "<p class=\"storage\">Storage: <strong>{}</strong> only here (what deleting the \
                 repository, then collecting garbage, frees), {} shared with other repositories; \
                 {} manifests (as of {} ago).</p>",
                size(used.unique_bytes),
                size(used.shared_bytes),
                used.manifests,
                usage.age()
            );
        }
    }
    let query = ListQuery {
        q: q.as_deref(),
        sort: sort.as_deref(),
    };
    body.push_str(&search_form(&path, query, "Search tags"));
    body.push_str(&sort_links(&path, query, &SORTS));
    body.push_str(&pager(&path, query, start, n, rows.len(), total));
    body.push_str(
        "<table><thead><tr><th>Tag</th><th>Digest</th><th>Type</th><th>Platforms</th>\
         <th class=\"num\">Size</th><th>Pushed</th><th>Signatures</th></tr></thead><tbody>",
    );
    for r in &rows {
        let link = format!("{base}r/{}/-/{}", esc(repo.as_str()), esc(&r.tag));
        let digest = r.digest.as_deref().map_or_else(String::new, |d| {
            format!(
                "<span class=\"digest\" title=\"{}\">{}</span>",
                esc(d),
                esc(&short_digest(d))
            )
        });
        let folded = r.digest.as_deref().map_or_else(String::new, |d| {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            ["sig", "att", "sbom"]
                .iter()
                .filter(|kind| signatures.contains(&format!("sha256-{hex}.{kind}")))
                .map(|kind| format!("<span class=\"badge\">{kind}</span>"))
                .collect()
        });
        let _ = write!(
            body,
            "<tr><td><a href=\"{link}\">{}</a></td><td>{digest}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td>{folded}</td></tr>",
            esc(&r.tag),
            esc(r.kind.as_deref().unwrap_or("")),
            esc(&r.platforms.join(", ")),
            r.size.map_or_else(String::new, size),
            r.pushed.map_or_else(String::new, date),
        );
    }
    body.push_str("</tbody></table>");
    if !signatures.is_empty() {
        let _ = write!(
            body,
            "<p class=\"note\">{} cosign signature, attestation and SBOM tags are shown under \
             the image they belong to.</p>",
            signatures.len()
        );
    }
    body.push_str(match sort.as_deref() {
        None => "<p class=\"note\">The push date is when the tag was last set.</p>",
        Some(_) => {
            "<p class=\"note\">The push date is when the tag was last set. Dates and \
             sizes for sorting are read again at most every 30 seconds.</p>"
        }
    });
    if crate::delete::refusal(page, &repo).await.is_none() {
        let _ = write!(
            body,
            "<p class=\"actions\"><a class=\"button danger\" href=\"{base}r/{}/-delete\">Delete repository</a></p>",
            esc(repo.as_str())
        );
    }
    page.html(StatusCode::OK, repo.as_str(), &body)
}

/// The date and size of each of `tags`, kept under `key` (the repository and the search)
/// for [`FACTS_REUSE`].
async fn facts(page: &Page<'_>, repo: &RepoName, key: &str, tags: &[String]) -> FactsByTag {
    let cache = &page.ui.tag_facts;
    {
        let kept = cache.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, facts)) = kept.get(key) {
            if at.elapsed() < FACTS_REUSE {
                return facts.clone();
            }
        }
    }
    let Ok(_reading) = cache.readings.acquire().await else {
        return FactsByTag::default();
    };
    let registry = page.registry();
    let parsed: Vec<(String, Tag)> = tags
        .iter()
        .filter_map(|t| t.parse().ok().map(|tag| (t.clone(), tag)))
        .collect();
    let read: Vec<(String, Option<SystemTime>, Option<berth_oci::Digest>)> =
        futures_util::stream::iter(parsed)
            .map(|(name, tag)| tag_facts(registry, repo, name, tag))
            .buffer_unordered(CONCURRENCY * 2)
            .collect()
            .await;
    // Each distinct manifest parsed once: 10,000 tags usually name a few images.
    let mut sizes: HashMap<berth_oci::Digest, Option<u64>> = HashMap::new();
    let mut out = HashMap::with_capacity(read.len());
    for (name, pushed, digest) in read {
        let size = match digest {
            Some(d) => match sizes.get(&d) {
                Some(size) => *size,
                None => {
                    let size = registry
                        .get_manifest(repo, &Reference::Digest(d.clone()))
                        .await
                        .ok()
                        .and_then(|m| manifest::parse(&m.body, &m.media_type).compressed_size());
                    sizes.insert(d, size);
                    size
                }
            },
            None => None,
        };
        out.insert(name, Facts { pushed, size });
    }
    let facts = Arc::new(out);
    let mut kept = cache.kept.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= FACTS_KEPT {
        kept.retain(|_, (at, _)| at.elapsed() < FACTS_REUSE);
        if kept.len() >= FACTS_KEPT {
            kept.clear();
        }
    }
    kept.insert(key.to_owned(), (Instant::now(), facts.clone()));
    facts
}

/// One tag's push date and manifest digest.
async fn tag_facts(
    registry: &berth_registry::Registry,
    repo: &RepoName,
    name: String,
    tag: Tag,
) -> (String, Option<SystemTime>, Option<berth_oci::Digest>) {
    let pushed = registry.tag_pushed_at(repo, &tag).await.ok().flatten();
    let digest = registry
        .resolve_manifest(repo, &Reference::Tag(tag))
        .await
        .ok();
    (name, pushed, digest)
}

/// Reads what one tag row shows; a tag that cannot be read shows its name only.
async fn row(page: &Page<'_>, repo: &RepoName, tag: String) -> Row {
    let mut row = Row {
        tag,
        digest: None,
        size: None,
        pushed: None,
        platforms: Vec::new(),
        kind: None,
    };
    let Ok(parsed) = row.tag.parse::<Tag>() else {
        return row;
    };
    let registry = page.registry();
    row.pushed = registry.tag_pushed_at(repo, &parsed).await.ok().flatten();
    match registry.get_manifest(repo, &Reference::Tag(parsed)).await {
        Ok(stored) => {
            let summary = manifest::parse(&stored.body, &stored.media_type);
            row.digest = Some(stored.digest.to_string());
            row.size = summary.compressed_size();
            row.platforms = summary.platforms();
            row.kind = Some(kind(&summary));
        }
        Err(e) => tracing::debug!(error = %e, tag = row.tag, "web UI: tag not readable"),
    }
    row
}

/// A short name for what a manifest is.
pub fn kind(summary: &manifest::Summary) -> String {
    match (&summary.content, &summary.artifact_type) {
        (_, Some(artifact)) => artifact.clone(),
        (manifest::Content::Index(_), None) => "index".to_owned(),
        (manifest::Content::Image { .. }, None) => "image".to_owned(),
        (manifest::Content::Other, None) => summary.media_type.clone(),
    }
}
