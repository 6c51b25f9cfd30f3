//! The administration pages, for admins only (token server `admins`; any logged-in htpasswd
//! user, who may do everything through the API anyway; everybody without `auth`, likewise):
//! - `admin`: version and health, storage (totals and per repository what only it uses, i.e.
//!   what deleting it frees, from the cached usage report), the pull-through cache per
//!   upstream, maintenance (last garbage collection and retention runs), and the effective
//!   configuration with secrets masked;
//! - `admin/gc`: GET previews garbage collection (a dry run of the very collector the real
//!   run uses), POST runs it now;
//! - `admin/retention`: GET previews the configured retention policies (a dry run of the
//!   same code), POST applies them now.
//!
//! The jobs themselves belong to the `berth` binary, which hands them over as [`Admin`].

use std::collections::HashMap;
use std::fmt::Write;
use std::time::SystemTime;

use axum::response::Response;
use http::StatusCode;

use crate::html::{date, esc, size};
use crate::Page;

/// The last run of a maintenance job.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// When it ended.
    pub finished: SystemTime,
    /// Whether it completed.
    pub ok: bool,
    /// What it did, in one line (or why it failed).
    pub summary: String,
}

/// A job's state for the maintenance table.
#[derive(Debug, Clone)]
pub struct JobState {
    /// The job's name (`garbage collection`).
    pub name: String,
    /// How it is configured, in a few words (`every 24h, delay 1h`, `off`).
    pub schedule: String,
    /// Its last run in this process.
    pub last: Option<JobRun>,
}

/// What a dry run found: one line per item, and a closing summary.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// What would be removed, a line each.
    pub lines: Vec<String>,
    /// The totals.
    pub summary: String,
}

/// What the binary lets the admin pages see and do.
#[async_trait::async_trait]
pub trait Admin: Send + Sync {
    /// The version (and build) of the binary.
    fn version(&self) -> String;
    /// The effective configuration as YAML, secrets masked.
    fn masked_config(&self) -> String;
    /// The maintenance jobs and their last runs.
    fn jobs(&self) -> Vec<JobState>;
    /// The size limit of each upstream's cache (`proxy` cache `maxsize`), by host.
    fn cache_limits(&self) -> HashMap<String, u64>;
    /// A dry run of garbage collection.
    async fn gc_preview(&self) -> Result<Preview, String>;
    /// A real garbage collection run, now (refused when another is under way, in read-only
    /// mode, or on a cluster node that does not run the jobs).
    async fn gc_run(&self) -> Result<Preview, String>;
    /// A dry run of the configured retention policies.
    async fn retention_preview(&self) -> Result<Preview, String>;
    /// A real run of the configured retention policies, now (refused like
    /// [`Admin::gc_run`]).
    async fn retention_run(&self) -> Result<Preview, String>;
}

/// A run a preview page offers.
struct RunOffer {
    /// The page the form posts to, below the UI's base (`admin/gc`).
    action: &'static str,
    /// The button.
    button: &'static str,
    /// What the run does, in a sentence.
    note: &'static str,
}

const GC_RUN: RunOffer = RunOffer {
    action: "admin/gc",
    button: "Run garbage collection now",
    note: "The run is the same collector: unused blobs move to the trash first and are deleted only after the configured delay.",
};

const RETENTION_RUN: RunOffer = RunOffer {
    action: "admin/retention",
    button: "Apply retention now",
    note: "The run is the same code: it deletes the tags and untagged manifests listed above (as they are when it runs); their blobs stay until the next garbage collection.",
};

/// Storage rows shown on the admin page.
const STORAGE_ROWS: usize = 50;
/// Lines of a preview shown.
const PREVIEW_LINES: usize = 1000;

/// Routes `admin…` pages; `None` when `rest` is not one.
pub(crate) async fn route(page: &Page<'_>, rest: &str, post: bool) -> Option<Response> {
    let sub = rest.strip_prefix("admin")?;
    if !page.is_admin() {
        return Some(page.message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page, or only administrators may see it.",
        ));
    }
    let Some(admin) = page.ui.options.admin.clone() else {
        return Some(page.message(
            StatusCode::NOT_FOUND,
            "Not found",
            "Administration is not available in this setup.",
        ));
    };
    Some(match (sub, post) {
        ("", false) => overview(page, admin.as_ref()).await,
        ("/gc", false) => preview_page(
            page,
            "Garbage collection preview",
            admin.gc_preview().await,
            Some(&GC_RUN),
        ),
        ("/gc", true) => {
            let result = admin.gc_run().await;
            if let Ok(p) = &result {
                tracing::info!(
                    user = page.viewer.user.as_deref().unwrap_or(""),
                    summary = p.summary,
                    "web UI: garbage collection run"
                );
            }
            preview_page(page, "Garbage collection run", result, None)
        }
        ("/retention", false) => preview_page(
            page,
            "Retention preview",
            admin.retention_preview().await,
            Some(&RETENTION_RUN),
        ),
        ("/retention", true) => {
            let result = admin.retention_run().await;
            if let Ok(p) = &result {
                tracing::info!(
                    user = page.viewer.user.as_deref().unwrap_or(""),
                    summary = p.summary,
                    "web UI: retention run"
                );
            }
            preview_page(page, "Retention run", result, None)
        }
        (_, true) => page.message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "This page only answers GET.",
        ),
        _ => page.message(StatusCode::NOT_FOUND, "Not found", "There is no such page."),
    })
}

/// `admin`: the overview.
async fn overview(page: &Page<'_>, admin: &dyn Admin) -> Response {
    let base = esc(page.base());
    let ctx = &page.ui.ctx;
    let mut body = String::from("<h1>Registry</h1><table><tbody>");
    let failures = ctx.health.failures();
    let health = if failures.is_empty() {
        "healthy".to_owned()
    } else {
        failures
            .iter()
            .map(|(check, error)| format!("{check}: {error}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = write!(
        body,
        "<tr><th>Version</th><td>{}</td></tr><tr><th>Health</th><td>{}</td></tr>\
         <tr><th>Mode</th><td>{}</td></tr></tbody></table>",
        esc(&admin.version()),
        esc(&health),
        if ctx.registry.read_only() {
            "read-only"
        } else {
            "read-write"
        },
    );

    body.push_str("<h2>Storage</h2>");
    match page.ui.usage.current(&ctx.registry) {
        None => body.push_str("<p class=\"note\">Being counted; reload in a moment.</p>"),
        Some(usage) => {
            let r = &usage.report;
            let _ = write!(
                body,
                "<p>{} in {} blobs; {} in {} blobs no manifest uses (garbage collection frees \
                 them). As of {} ago.</p>",
                size(r.bytes),
                r.blobs,
                size(r.unreferenced_bytes),
                r.unreferenced_blobs,
                usage.age()
            );
            body.push_str(
                "<table><thead><tr><th>Repository</th><th class=\"num\">Manifests</th>\
                 <th class=\"num\">Tags</th><th class=\"num\">Only here</th>\
                 <th class=\"num\">Shared</th></tr></thead><tbody>",
            );
            let mut shown = 0;
            for repo in &r.repositories {
                if shown == STORAGE_ROWS {
                    break;
                }
                if !page.may_pull(&repo.name).await {
                    continue;
                }
                shown += 1;
                let _ = write!(
                    body,
                    "<tr><td><a href=\"{base}r/{n}\">{n}</a></td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    repo.manifests,
                    repo.tags,
                    size(repo.unique_bytes),
                    size(repo.shared_bytes),
                    n = esc(&repo.name),
                );
            }
            body.push_str("</tbody></table><p class=\"note\">Largest first. \"Only here\" is what deleting the repository, then collecting garbage, frees; \"Shared\" stays for the other repositories using it.</p>");
        }
    }

    if ctx.proxy.is_some() {
        body.push_str(&cache_section(admin));
    }

    body.push_str(
        "<h2>Maintenance</h2><table><thead><tr><th>Job</th><th>Schedule</th><th>Last run</th>\
         <th>Result</th></tr></thead><tbody>",
    );
    for job in admin.jobs() {
        let (when, result) = match &job.last {
            Some(run) => (
                date(run.finished),
                format!("{}{}", if run.ok { "" } else { "failed: " }, run.summary),
            ),
            None => ("not since start".to_owned(), String::new()),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&job.name),
            esc(&job.schedule),
            esc(&when),
            esc(&result)
        );
    }
    let _ = write!(
        body,
        "</tbody></table><p class=\"actions\"><a class=\"button\" href=\"{base}admin/gc\">Preview garbage collection</a> \
         <a class=\"button\" href=\"{base}admin/retention\">Preview retention</a></p>"
    );

    let _ = write!(
        body,
        "<h2>Configuration</h2><details><summary>Effective configuration (secrets masked)</summary><pre>{}</pre></details>",
        esc(&admin.masked_config())
    );
    page.html(StatusCode::OK, "Registry", &body)
}

/// The pull-through cache per upstream, since this process started.
fn cache_section(admin: &dyn Admin) -> String {
    let limits = admin.cache_limits();
    let stats = berth_proxy::metrics::upstream_stats();
    let mut out = String::from(
        "<h2>Pull-through cache</h2><table><thead><tr><th>Upstream</th><th class=\"num\">Hit rate</th>\
         <th class=\"num\">Hits</th><th class=\"num\">Misses</th><th class=\"num\">Served from cache</th>\
         <th class=\"num\">Stale serves</th><th class=\"num\">Cached</th><th>Last upstream error</th></tr></thead><tbody>",
    );
    if stats.is_empty() {
        out.push_str(
            "<tr><td colspan=\"8\">Nothing pulled through the cache since the start.</td></tr>",
        );
    }
    for (host, s) in &stats {
        let asked = s.hits + s.misses;
        let rate = if asked == 0 {
            String::new()
        } else {
            format!("{:.0} %", s.hits as f64 * 100.0 / asked as f64)
        };
        let cached = match (s.cache, limits.get(host)) {
            (Some((bytes, images)), Some(limit)) => {
                format!("{} of {} ({images} images)", size(bytes), size(*limit))
            }
            (Some((bytes, images)), None) => format!("{} ({images} images)", size(bytes)),
            (None, _) => String::new(),
        };
        let error = s
            .last_error
            .as_ref()
            .map_or_else(String::new, |(at, text)| format!("{}: {}", date(*at), text));
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{rate}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(host),
            s.hits,
            s.misses,
            size(s.served_bytes),
            s.stale_serves,
            esc(&cached),
            esc(&error),
        );
    }
    out.push_str("</tbody></table><p class=\"note\">Since this process started; the cache size is as of the last expiry pass.</p>");
    out
}

/// A preview's (or run's) page.
fn preview_page(
    page: &Page<'_>,
    title: &str,
    result: Result<Preview, String>,
    offer_run: Option<&RunOffer>,
) -> Response {
    let mut body = format!("<h1>{}</h1>", esc(title));
    match result {
        Err(why) => {
            let _ = write!(body, "<p class=\"warn\" role=\"alert\">{}</p>", esc(&why));
        }
        Ok(preview) => {
            let _ = write!(body, "<p role=\"status\">{}</p>", esc(&preview.summary));
            if !preview.lines.is_empty() {
                body.push_str("<pre>");
                for line in preview.lines.iter().take(PREVIEW_LINES) {
                    let _ = writeln!(body, "{}", esc(line));
                }
                body.push_str("</pre>");
                if preview.lines.len() > PREVIEW_LINES {
                    let _ = write!(
                        body,
                        "<p class=\"note\">The first {PREVIEW_LINES} of {} lines.</p>",
                        preview.lines.len()
                    );
                }
            }
            if let Some(run) = offer_run {
                let _ = write!(
                    body,
                    "<form method=\"post\" action=\"{}{}\">{}<button type=\"submit\" class=\"danger\">{}</button></form>\
                     <p class=\"note\">{}</p>",
                    esc(page.base()),
                    run.action,
                    page.csrf_field(),
                    run.button,
                    esc(run.note)
                );
            }
        }
    }
    let _ = write!(
        body,
        "<p><a href=\"{}admin\">Back to the registry page</a></p>",
        esc(page.base())
    );
    page.html(StatusCode::OK, title, &body)
}
