//! Deleting from the UI: a tag, a manifest with every tag on it, or a whole repository. Each
//! GET shows first exactly what would go (every tag that points at the same digest: deleting
//! by digest takes them all, the surprise Joxit users meet); the POST repeats the check and
//! deletes through the API's own delete path ([`berth_api::delete_for`]: same registry call,
//! same notifications). Offered only where the API would allow it: deletes enabled, not
//! read-only, not a pull-through cached repository, and the viewer may delete there.

use std::collections::HashMap;
use std::fmt::Write;

use axum::response::Response;
use berth_auth::Action;
use berth_oci::{Digest, Reference, RepoName, Tag};
use berth_registry::RegistryError;
use http::StatusCode;

use crate::html::{esc, short_digest};
use crate::repo::not_found;
use crate::Page;

/// Tags listed by name on a confirmation page; past it, a count.
const MAX_LISTED: usize = 200;

/// Why the viewer may not delete in `repo` (which they may pull), or `None` when they may.
pub async fn refusal(page: &Page<'_>, repo: &RepoName) -> Option<&'static str> {
    let registry = page.registry();
    if !registry.delete_enabled() {
        return Some("Deleting is turned off on this registry (storage.delete.enabled).");
    }
    if registry.read_only() {
        return Some("The registry is in read-only mode.");
    }
    // The API's own rule for writes under the pull-through cache.
    let cached = page.ui.ctx.proxy.as_ref().is_some_and(|p| {
        let route = p.route(repo, None).filter(|r| &r.local == repo);
        p.write_refusal(repo, route.as_ref()).is_some()
    });
    if cached {
        return Some(
            "This repository is a pull-through cache of an upstream registry; the cache's expiry and size limits remove its content.",
        );
    }
    if !page.may(repo.as_str(), Action::Delete).await {
        return Some("You may not delete in this repository.");
    }
    None
}

/// The repository, when the viewer may see it; else the not-found page.
async fn visible(page: &Page<'_>, name: &str) -> Result<RepoName, Response> {
    match name.parse::<RepoName>() {
        Ok(repo) if page.may_pull(repo.as_str()).await => Ok(repo),
        _ => Err(not_found(page)),
    }
}

/// `r/<name>/-/<reference>/delete`: GET shows what deleting the tag (or the manifest, by
/// digest) removes; POST deletes it.
pub async fn manifest(
    page: &Page<'_>,
    name: &str,
    reference: &str,
    form: Option<&HashMap<String, String>>,
) -> Response {
    let repo = match visible(page, name).await {
        Ok(repo) => repo,
        Err(response) => return response,
    };
    let Ok(reference) = reference.parse::<Reference>() else {
        return not_found(page);
    };
    if let Some(why) = refusal(page, &repo).await {
        return page.message(StatusCode::FORBIDDEN, "Cannot delete", why);
    }
    let registry = page.registry();
    let digest = match registry.resolve_manifest(&repo, &reference).await {
        Ok(digest) => digest,
        Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => {
            return page.message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such image in this repository (it may have been deleted already).",
            )
        }
        Err(e) => return storage_error(page, &repo, &e),
    };
    let tags = match registry.tags_pointing_at(&repo, &digest).await {
        Ok(tags) => tags,
        Err(e) => return storage_error(page, &repo, &e),
    };
    if let Some(form) = form {
        // Delete what the person saw: a tag moved since the confirmation is left alone.
        if form.get("digest").map(String::as_str) != Some(digest.to_string().as_str()) {
            return page.message(
                StatusCode::CONFLICT,
                "Changed meanwhile",
                "The tag now points at another image than the one shown: nothing was deleted. Go back and reload.",
            );
        }
        return match berth_api::delete_for(
            page.ui.ctx.as_ref(),
            &repo,
            &reference,
            page.viewer.user.as_deref(),
            page.client(),
        )
        .await
        {
            Ok(()) => {
                tracing::info!(repository = %repo, reference = %reference, user = page.viewer.user.as_deref().unwrap_or(""), "web UI: deleted");
                let what = match &reference {
                    Reference::Tag(tag) => {
                        format!("Tag <code>{}</code> was deleted.", esc(tag.as_str()))
                    }
                    Reference::Digest(d) => format!(
                        "Manifest <code>{}</code> was deleted{}.",
                        esc(&d.to_string()),
                        match tags.len() {
                            0 => String::new(),
                            1 => " with its tag".to_owned(),
                            n => format!(" with its {n} tags"),
                        }
                    ),
                };
                done(page, &repo, &what)
            }
            Err(e) => {
                tracing::warn!(repository = %repo, reference = %reference, error = %e.message, "web UI: delete refused");
                page.message(e.status, "Not deleted", &e.message)
            }
        };
    }
    let mut body = String::new();
    let image_page = format!("{}r/{}/-/{}", page.base(), repo, reference_text(&reference));
    let action = format!(
        "{}r/{}/-/{}/delete",
        page.base(),
        repo,
        reference_text(&reference)
    );
    match &reference {
        Reference::Tag(tag) => {
            let others: Vec<&Tag> = tags.iter().filter(|t| *t != tag).collect();
            let _ = write!(
                body,
                "<h1>Delete tag {}:{}?</h1><p>Only the tag is removed. The manifest \
                 <code>{}</code> it points at stays",
                esc(repo.as_str()),
                esc(tag.as_str()),
                esc(&digest.to_string())
            );
            if others.is_empty() {
                body.push_str(
                    ", untagged, until retention or garbage collection removes it; pulls by \
                     digest keep working until then.</p>",
                );
            } else {
                let _ = write!(
                    body,
                    ", and these other tags still point at it:</p>{}",
                    tag_list(&others)
                );
            }
            let _ = write!(
                body,
                "<p>To remove the image itself with every tag, <a href=\"{}\">delete the manifest</a> instead.</p>",
                esc(&format!("{}r/{}/-/{}/delete", page.base(), repo, digest))
            );
            body.push_str(&confirm_form(
                page,
                &action,
                &digest,
                &format!("Delete tag {tag}"),
                &image_page,
            ));
        }
        Reference::Digest(_) => {
            let _ = write!(
                body,
                "<h1>Delete manifest {}@{}?</h1>",
                esc(repo.as_str()),
                esc(&short_digest(&digest.to_string()))
            );
            let _ = write!(
                body,
                "<p>The manifest <code>{}</code> is removed",
                esc(&digest.to_string())
            );
            if tags.is_empty() {
                body.push_str("; no tag points at it.</p>");
            } else {
                let listed: Vec<&Tag> = tags.iter().collect();
                let _ = write!(
                    body,
                    " with <strong>every tag that points at it ({})</strong>:</p>{}",
                    tags.len(),
                    tag_list(&listed)
                );
            }
            body.push_str(
                "<p class=\"note\">Its layers stay until garbage collection finds no other \
                 manifest using them. An index's platform manifests are separate manifests and \
                 stay.</p>",
            );
            body.push_str(&confirm_form(
                page,
                &action,
                &digest,
                "Delete manifest",
                &image_page,
            ));
        }
    }
    page.html(StatusCode::OK, "Delete", &body)
}

/// `r/<name>/-delete`: GET lists what deleting the whole repository removes; POST deletes
/// every manifest (with its tags), then any tag left.
pub async fn repository(
    page: &Page<'_>,
    name: &str,
    form: Option<&HashMap<String, String>>,
) -> Response {
    let repo = match visible(page, name).await {
        Ok(repo) => repo,
        Err(response) => return response,
    };
    if let Some(why) = refusal(page, &repo).await {
        return page.message(StatusCode::FORBIDDEN, "Cannot delete", why);
    }
    let registry = page.registry();
    let (revisions, tags) = match (
        registry.manifest_revisions(&repo).await,
        registry.all_tags(&repo).await,
    ) {
        (Ok(revisions), Ok(tags)) => (revisions, tags),
        (_, Err(RegistryError::NameUnknown(_))) => return not_found(page),
        (Err(e), _) | (_, Err(e)) => return storage_error(page, &repo, &e),
    };
    if form.is_some() {
        let ctx = page.ui.ctx.as_ref();
        let user = page.viewer.user.as_deref();
        let mut deleted = 0usize;
        let references = revisions
            .iter()
            .map(|d| Reference::Digest(d.clone()))
            // Tags left over (pointing at a revision that is gone) go last.
            .chain(
                tags.iter()
                    .filter_map(|t| t.parse().ok().map(Reference::Tag)),
            );
        for reference in references {
            match berth_api::delete_for(ctx, &repo, &reference, user, page.client()).await {
                Ok(()) => deleted += usize::from(matches!(reference, Reference::Digest(_))),
                // Gone already: with the manifest before it, or by someone else.
                Err(e) if e.status == StatusCode::NOT_FOUND => {}
                Err(e) => {
                    tracing::warn!(repository = %repo, reference = %reference, error = %e.message, "web UI: repository delete stopped");
                    return page.message(
                        e.status,
                        "Not all deleted",
                        &format!("{deleted} manifests were deleted, then: {}", e.message),
                    );
                }
            }
        }
        tracing::info!(repository = %repo, manifests = deleted, user = user.unwrap_or(""), "web UI: repository deleted");
        return done(
            page,
            &repo,
            &format!(
                "Deleted {deleted} manifests and {} tags of <code>{}</code>. Their layers stay until garbage collection finds no other manifest using them.",
                tags.len(),
                esc(repo.as_str())
            ),
        );
    }
    let mut body = format!(
        "<h1>Delete repository {}?</h1><p>All <strong>{}</strong> manifests and \
         <strong>{}</strong> tags are removed",
        esc(repo.as_str()),
        revisions.len(),
        tags.len()
    );
    if tags.is_empty() {
        body.push_str(".</p>");
    } else {
        body.push_str(":</p>");
        let parsed: Vec<Tag> = tags.iter().filter_map(|t| t.parse().ok()).collect();
        body.push_str(&tag_list(&parsed.iter().collect::<Vec<_>>()));
    }
    if let Some(used) = page
        .ui
        .usage
        .current(&page.ui.ctx.registry)
        .and_then(|u| u.repository(repo.as_str()).cloned())
    {
        let _ = write!(
            body,
            "<p>Garbage collection then frees <strong>{}</strong> that only this repository uses; \
             {} it shares with other repositories stay.</p>",
            crate::html::size(used.unique_bytes),
            crate::html::size(used.shared_bytes)
        );
    }
    body.push_str(
        "<p class=\"note\">As in registry:2, the name stays in the catalog with no tags until \
         something is pushed to it again; layers stay until garbage collection.</p>",
    );
    let action = format!("{}r/{}/-delete", page.base(), repo);
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"danger\">Delete repository {}</button> \
         <a href=\"{}r/{}\">Cancel</a></form>",
        esc(&action),
        page.csrf_field(),
        esc(repo.as_str()),
        esc(page.base()),
        esc(repo.as_str())
    );
    page.html(StatusCode::OK, "Delete", &body)
}

/// A reference as written in the UI's paths.
fn reference_text(reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => t.to_string(),
        Reference::Digest(d) => d.to_string(),
    }
}

/// The tags as a list, the first [`MAX_LISTED`] by name.
fn tag_list(tags: &[&Tag]) -> String {
    let mut out = String::from("<ul class=\"tags\">");
    for tag in tags.iter().take(MAX_LISTED) {
        let _ = write!(out, "<li><code>{}</code></li>", esc(tag.as_str()));
    }
    out.push_str("</ul>");
    if tags.len() > MAX_LISTED {
        let _ = write!(out, "<p>… and {} more tags.</p>", tags.len() - MAX_LISTED);
    }
    out
}

/// The confirmation form: the digest shown goes with it, so a tag moved meanwhile is not
/// deleted.
fn confirm_form(
    page: &Page<'_>,
    action: &str,
    digest: &Digest,
    label: &str,
    cancel: &str,
) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">{}<input type=\"hidden\" name=\"digest\" value=\"{}\">\
         <button type=\"submit\" class=\"danger\">{}</button> <a href=\"{}\">Cancel</a></form>",
        esc(action),
        page.csrf_field(),
        esc(&digest.to_string()),
        esc(label),
        esc(cancel)
    )
}

/// The page after a delete: what happened, and the way back to the repository.
fn done(page: &Page<'_>, repo: &RepoName, what: &str) -> Response {
    let body = format!(
        "<h1>Deleted</h1><p role=\"status\">{what}</p><p><a href=\"{}r/{}\">Back to {}</a></p>",
        esc(page.base()),
        esc(repo.as_str()),
        esc(repo.as_str())
    );
    page.html(StatusCode::OK, "Deleted", &body)
}

/// A storage failure: logged with its details, a plain message to the viewer.
fn storage_error(page: &Page<'_>, repo: &RepoName, e: &RegistryError) -> Response {
    tracing::error!(error = %e, repository = %repo, "web UI: cannot read for a delete");
    page.message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Delete",
        "The repository cannot be read from storage right now.",
    )
}
