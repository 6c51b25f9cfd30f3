//! An image page: for an index its per-platform table; for an image its layers and config
//! (created, labels, environment, entrypoint, command, history); its annotations, its
//! referrers, the cosign tags that belong to it, and pull commands.

use std::fmt::Write;

use axum::response::Response;
use berth_oci::{Digest, Reference, RepoName, Tag};
use futures_util::StreamExt;
use http::StatusCode;
use serde_json::Value;

use crate::html::{esc, short_digest, size};
use crate::manifest::{self, Content};
use crate::repo::{kind, not_found};
use crate::{pull, Page};

/// Index entries whose own manifests are read for their sizes; past it, sizes are not shown.
const MAX_CHILDREN_READ: usize = 64;
/// The largest image config read and shown.
const MAX_CONFIG: u64 = 1024 * 1024;
/// History lines shown.
const MAX_HISTORY: usize = 200;

/// `GET <base>r/<name>/-/<tag or digest>`.
pub async fn show(page: &Page<'_>, name: &str, reference: &str) -> Response {
    let (Ok(repo), Ok(reference)) = (name.parse::<RepoName>(), reference.parse::<Reference>())
    else {
        return not_found(page);
    };
    if !page.may_pull(repo.as_str()).await {
        return not_found(page);
    }
    let registry = page.registry();
    let stored = match registry.get_manifest(&repo, &reference).await {
        Ok(stored) => stored,
        Err(
            berth_registry::RegistryError::ManifestUnknown(_)
            | berth_registry::RegistryError::NameUnknown(_),
        ) => {
            return page.message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such image in this repository, or you may not pull it.",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, repository = %repo, "web UI: cannot read a manifest");
            return page.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Image",
                "The image cannot be read from storage right now.",
            );
        }
    };
    let summary = manifest::parse(&stored.body, &stored.media_type);
    let digest = stored.digest.to_string();
    let base = esc(page.base());
    let repo_link = format!("{base}r/{}", esc(repo.as_str()));
    let tag = match &reference {
        Reference::Tag(tag) => Some(tag.to_string()),
        Reference::Digest(_) => None,
    };
    let title = match &tag {
        Some(tag) => format!("{repo}:{tag}"),
        None => format!("{repo}@{digest}"),
    };
    let mut body = format!(
        "<p><a href=\"{repo_link}\">{}</a></p><h1>{}</h1><table><tbody>\
         <tr><th>Digest</th><td><code>{}</code></td></tr>\
         <tr><th>Type</th><td>{}</td></tr><tr><th>Media type</th><td><code>{}</code></td></tr>",
        esc(repo.as_str()),
        esc(&title),
        esc(&digest),
        esc(&kind(&summary)),
        esc(&summary.media_type),
    );
    if let Some(total) = summary.compressed_size() {
        let _ = write!(
            body,
            "<tr><th>Compressed size</th><td>{}</td></tr>",
            size(total)
        );
    }
    if let Some(subject) = &summary.subject {
        let _ = write!(
            body,
            "<tr><th>Subject</th><td><a href=\"{repo_link}/-/{s}\"><code>{s}</code></a></td></tr>",
            s = esc(subject)
        );
    }
    body.push_str("</tbody></table>");

    match &summary.content {
        Content::Index(children) => body.push_str(&platforms(page, &repo, children).await),
        Content::Image { config, layers } => {
            body.push_str("<h2>Layers</h2><table><thead><tr><th>#</th><th>Digest</th>\
                <th>Media type</th><th class=\"num\">Size</th></tr></thead><tbody>");
            for (i, layer) in layers.iter().enumerate() {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td></tr>",
                    i + 1,
                    esc(&layer.digest),
                    esc(&layer.media_type),
                    size(layer.size)
                );
            }
            body.push_str("</tbody></table>");
            if let Some(config) = config {
                body.push_str(&config_section(page, &repo, config).await);
            }
        }
        Content::Other => body.push_str(
            "<p class=\"note\">This manifest is neither an image nor an index; its content is not shown.</p>",
        ),
    }
    body.push_str(&annotations("Annotations", &summary.annotations));
    body.push_str(&referrers(page, &repo, &stored.digest).await);
    body.push_str(&pull::section(
        &page.pull_host(),
        repo.as_str(),
        tag.as_deref(),
        &digest,
    ));
    if crate::delete::refusal(page, &repo).await.is_none() {
        let here = format!("{base}r/{}/-/", esc(repo.as_str()));
        body.push_str("<h2>Delete</h2><p class=\"actions\">");
        if let Some(tag) = &tag {
            let _ = write!(
                body,
                "<a class=\"button danger\" href=\"{here}{}/delete\">Delete tag {}</a> ",
                esc(tag),
                esc(tag)
            );
        }
        let _ = write!(
            body,
            "<a class=\"button danger\" href=\"{here}{}/delete\">Delete manifest</a></p>",
            esc(&digest)
        );
    }
    page.html(StatusCode::OK, &title, &body)
}

/// An index's platform table: os/arch/variant, digest and compressed size per entry.
async fn platforms(page: &Page<'_>, repo: &RepoName, children: &[manifest::Child]) -> String {
    let base = esc(page.base());
    let mut out = String::from(
        "<h2>Platforms</h2><table><thead><tr><th>Platform</th><th>Digest</th><th>Type</th>\
         <th class=\"num\">Compressed size</th></tr></thead><tbody>",
    );
    for (i, child) in children.iter().enumerate() {
        let mut child_size = String::new();
        let mut child_kind = child.media_type.clone();
        if i < MAX_CHILDREN_READ {
            if let Ok(d) = child.digest.parse::<Digest>() {
                if let Ok(stored) = page
                    .registry()
                    .get_manifest(repo, &Reference::Digest(d))
                    .await
                {
                    let s = manifest::parse(&stored.body, &stored.media_type);
                    child_size = s.compressed_size().map_or_else(String::new, size);
                    child_kind = kind(&s);
                }
            }
        }
        let _ = write!(
            out,
            "<tr><td>{}</td><td><a href=\"{base}r/{}/-/{d}\"><code>{d}</code></a></td><td>{}</td>\
             <td class=\"num\">{child_size}</td></tr>",
            esc(&child.platform),
            esc(repo.as_str()),
            esc(&child_kind),
            d = esc(&child.digest),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The image config: created, platform, labels, environment, entrypoint, command, history.
async fn config_section(page: &Page<'_>, repo: &RepoName, config: &manifest::Blob) -> String {
    let Some(json) = read_config(page, repo, config).await else {
        return String::new();
    };
    let mut out = String::from("<h2>Config</h2><table><tbody>");
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(created) = text(&json, "created") {
        let _ = write!(out, "<tr><th>Created</th><td>{}</td></tr>", esc(&created));
    }
    if let (Some(os), Some(arch)) = (text(&json, "os"), text(&json, "architecture")) {
        let _ = write!(
            out,
            "<tr><th>Platform</th><td>{}/{}</td></tr>",
            esc(&os),
            esc(&arch)
        );
    }
    let runtime = json.get("config").cloned().unwrap_or(Value::Null);
    let list = |key: &str| -> Option<String> {
        let items: Vec<String> = runtime
            .get(key)?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(esc)
            .collect();
        Some(format!("<code>{}</code>", items.join(" ")))
    };
    for (label, key) in [("Entrypoint", "Entrypoint"), ("Command", "Cmd")] {
        if let Some(value) = list(key) {
            let _ = write!(out, "<tr><th>{label}</th><td>{value}</td></tr>");
        }
    }
    if let Some(dir) = text(&runtime, "WorkingDir").filter(|d| !d.is_empty()) {
        let _ = write!(
            out,
            "<tr><th>Working directory</th><td><code>{}</code></td></tr>",
            esc(&dir)
        );
    }
    if let Some(user) = text(&runtime, "User").filter(|u| !u.is_empty()) {
        let _ = write!(
            out,
            "<tr><th>User</th><td><code>{}</code></td></tr>",
            esc(&user)
        );
    }
    out.push_str("</tbody></table>");
    if let Some(env) = runtime.get("Env").and_then(Value::as_array) {
        out.push_str("<h3>Environment</h3><pre>");
        for line in env.iter().filter_map(Value::as_str) {
            let _ = writeln!(out, "{}", esc(line));
        }
        out.push_str("</pre>");
    }
    let labels = crate::manifest::sorted_pairs(runtime.get("Labels"));
    out.push_str(&annotations("Labels", &labels));
    if let Some(history) = json.get("history").and_then(Value::as_array) {
        out.push_str(
            "<h3>History</h3><table><thead><tr><th>Created</th><th>Created by</th>\
            <th>Layer</th></tr></thead><tbody>",
        );
        for entry in history.iter().take(MAX_HISTORY) {
            let empty = entry
                .get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&text(entry, "created").unwrap_or_default()),
                esc(&text(entry, "created_by").unwrap_or_default()),
                if empty { "empty" } else { "" }
            );
        }
        out.push_str("</tbody></table>");
        if history.len() > MAX_HISTORY {
            let _ = write!(
                out,
                "<p class=\"note\">The first {MAX_HISTORY} of {} history entries.</p>",
                history.len()
            );
        }
    }
    out
}

/// The image config as JSON, when it is an image config of at most [`MAX_CONFIG`] bytes that
/// `repo` links.
async fn read_config(page: &Page<'_>, repo: &RepoName, config: &manifest::Blob) -> Option<Value> {
    if !config.media_type.is_empty()
        && !config.media_type.ends_with("image.config.v1+json")
        && config.media_type != "application/vnd.docker.container.image.v1+json"
    {
        return None;
    }
    let digest: Digest = config.digest.parse().ok()?;
    let registry = page.registry();
    let stored_size = registry.stat_blob(repo, &digest).await.ok()?;
    if stored_size > MAX_CONFIG {
        return None;
    }
    let mut stream = registry
        .read_blob(&digest, 0, Some(stored_size))
        .await
        .ok()?;
    let mut bytes = Vec::with_capacity(usize::try_from(stored_size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.ok()?);
        if bytes.len() as u64 > MAX_CONFIG {
            return None;
        }
    }
    serde_json::from_slice(&bytes).ok()
}

/// A key/value table (annotations, labels); nothing when empty.
fn annotations(title: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<h3>{}</h3><table><thead><tr><th>Key</th><th>Value</th></tr></thead><tbody>",
        esc(title)
    );
    for (k, v) in pairs {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Manifests that refer to `digest`: through the referrers API's index, and cosign's
/// `sha256-<hex>.sig`/`.att`/`.sbom` tags.
async fn referrers(page: &Page<'_>, repo: &RepoName, digest: &Digest) -> String {
    let base = esc(page.base());
    let repo_link = format!("{base}r/{}", esc(repo.as_str()));
    let mut rows = String::new();
    match page.registry().referrers(repo, digest, None).await {
        Ok(found) => {
            for d in found {
                let _ = write!(
                    rows,
                    "<tr><td>{}</td><td><a href=\"{repo_link}/-/{dg}\"><code>{}</code></a></td>\
                     <td class=\"num\">{}</td></tr>",
                    esc(d.artifact_type.as_deref().unwrap_or(&d.media_type)),
                    esc(&short_digest(&d.digest.to_string())),
                    size(d.size),
                    dg = esc(&d.digest.to_string()),
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, repository = %repo, "web UI: cannot list referrers"),
    }
    let hex = digest.to_string();
    let hex = hex.strip_prefix("sha256:").unwrap_or("");
    if !hex.is_empty() {
        for kind in ["sig", "att", "sbom"] {
            let name = format!("sha256-{hex}.{kind}");
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            if let Ok(found) = page
                .registry()
                .resolve_manifest(repo, &Reference::Tag(tag))
                .await
            {
                let _ = write!(
                    rows,
                    "<tr><td>cosign {kind} (tag <code>{}</code>)</td>\
                     <td><a href=\"{repo_link}/-/{}\"><code>{}</code></a></td><td></td></tr>",
                    esc(&name),
                    esc(&name),
                    esc(&short_digest(&found.to_string())),
                );
            }
        }
    }
    if rows.is_empty() {
        return "<h2>Referrers</h2><p class=\"note\">No signatures, SBOMs or other artifacts refer to this manifest.</p>".to_owned();
    }
    format!(
        "<h2>Referrers</h2><table><thead><tr><th>Artifact type</th><th>Digest</th>\
         <th class=\"num\">Size</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}
