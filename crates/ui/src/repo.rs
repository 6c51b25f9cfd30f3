//! A repository's page: its tags (cosign `.sig`/`.att`/`.sbom` tags folded under the image
//! they belong to), searched by substring and paged; per tag on the page its digest, size,
//! push date and platforms. Only the page's tags are read, so a repository with 10,000 tags
//! costs one tag listing plus a page's worth of reads.

use std::collections::HashSet;
use std::fmt::Write;
use std::time::SystemTime;

use axum::response::Response;
use berth_oci::{Reference, RepoName, Tag};
use futures_util::StreamExt;
use http::StatusCode;

use crate::html::{date, esc, pager, search_form, short_digest, size};
use crate::manifest::{self, cosign_tag};
use crate::repos::MAX_PAGE;
use crate::Page;

/// Tags per page when none is asked for.
const DEFAULT_PAGE: usize = 50;
/// Tags of a page read at once.
const CONCURRENCY: usize = 16;

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
    body.push_str(&search_form(&path, q.as_deref(), "Search tags"));
    body.push_str(&pager(&path, q.as_deref(), start, n, rows.len(), total));
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
    body.push_str(
        "<p class=\"note\">Tags sorted by name; the push date is when the tag was last set.</p>",
    );
    if crate::delete::refusal(page, &repo).await.is_none() {
        let _ = write!(
            body,
            "<p class=\"actions\"><a class=\"button danger\" href=\"{base}r/{}/-delete\">Delete repository</a></p>",
            esc(repo.as_str())
        );
    }
    page.html(StatusCode::OK, repo.as_str(), &body)
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
