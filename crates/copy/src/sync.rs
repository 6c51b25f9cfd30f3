//! `berth sync FILE DEST`: skopeo sync's YAML source format, unchanged:
//!
//! ```yaml
//! registry.example.com:
//!   tls-verify: false
//!   cert-dir: /etc/certs
//!   credentials: {username: u, password: p}
//!   images: {busybox: [], redis: ["7.2", "sha256:..."]}   # [] is every tag
//!   images-by-tag-regex: {nginx: '^1\.2[0-9]'}
//!   images-by-semver: {alpine: '>= 3.18'}
//! ```
//!
//! Each image goes to `DEST/<last path component>:<tag>` (skopeo's default), or with
//! `--scoped` to `DEST/<registry>/<repository>:<tag>`; DEST is a registry prefix, or Berth's
//! own storage (the `sync:` section of `berth serve`). Images are copied a few at a time,
//! each as `berth copy` would (so an unchanged image costs a `HEAD` and moves nothing); a
//! failed image is reported and the others go on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_oci::{Reference, RepoName};
use berth_registry::Registry;
use futures_util::StreamExt;
use http::{HeaderMap, Method};
use regex::Regex;
use serde::Deserialize;

use crate::client::{pull_scope, Client, Side};
use crate::copy::{copy_image, CopyOptions, Summary};
use crate::endpoint::{client, EndOptions};
use crate::local::{LocalRef, LocalTarget};
use crate::progress::Progress;
use crate::registry::{RegistrySource, RegistryTarget};
use crate::transport::{ImageTag, RegistryRef};
use crate::Failure;

/// Largest page of a tag list read.
const MAX_TAG_PAGE: usize = 4 * 1024 * 1024;
/// Most tag list pages followed.
const MAX_TAG_PAGES: usize = 100;

/// One registry's section of the sync file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// Verify TLS (default true).
    #[serde(rename = "tls-verify")]
    pub tls_verify: Option<bool>,
    /// skopeo's cert-dir.
    #[serde(rename = "cert-dir")]
    pub cert_dir: Option<PathBuf>,
    /// Credentials for this registry.
    pub credentials: Option<Credentials>,
    /// Repositories and their tags or digests (an empty list: every tag).
    #[serde(default)]
    pub images: BTreeMap<String, Vec<String>>,
    /// Repositories and a regular expression their tags must match.
    #[serde(default, rename = "images-by-tag-regex")]
    pub images_by_tag_regex: BTreeMap<String, String>,
    /// Repositories and a semver range their tags must satisfy.
    #[serde(default, rename = "images-by-semver")]
    pub images_by_semver: BTreeMap<String, String>,
}

/// `credentials:` of a registry section.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Parses a sync file.
pub fn parse_file(yaml: &str) -> crate::Result<BTreeMap<String, RegistrySection>> {
    serde_yaml::from_str(yaml).map_err(|e| Failure::Usage(format!("sync file: {e}")))
}

/// Where a sync copies to.
#[derive(Clone)]
pub enum Destination {
    /// A registry: `HOST[/PREFIX]`, with its TLS and credentials.
    Registry {
        /// `HOST[/PREFIX]`.
        prefix: String,
        /// TLS and credentials.
        options: EndOptions,
    },
    /// Berth's own storage (what `berth serve` syncs into), under an optional prefix.
    Local {
        /// The storage.
        registry: Arc<Registry>,
        /// Repository path prefix.
        prefix: Option<String>,
    },
}

impl Destination {
    /// The destination repository path for `scope` (`PREFIX/scope`).
    fn repo(&self, scope: &str) -> String {
        let prefix = match self {
            Destination::Registry { prefix, .. } => Some(prefix.as_str()),
            Destination::Local { prefix, .. } => prefix.as_deref(),
        };
        match prefix
            .map(|p| p.trim_end_matches('/'))
            .filter(|p| !p.is_empty())
        {
            Some(p) => format!("{p}/{scope}"),
            None => scope.to_owned(),
        }
    }
}

/// How to sync.
#[derive(Clone)]
pub struct SyncOptions {
    /// Where images go.
    pub dest: Destination,
    /// The docker config file for sources without `credentials`.
    pub authfile: Option<PathBuf>,
    /// How each image is copied.
    pub copy: CopyOptions,
    /// Images copied at the same time.
    pub images_at_once: usize,
    /// `DEST/<registry>/<repository>` instead of `DEST/<last component>`.
    pub scoped: bool,
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Images copied (or found unchanged).
    pub images: Vec<(String, Summary)>,
    /// Images that failed.
    pub failures: Vec<(String, Failure)>,
}

/// The clients of a run, one per registry and side: connections, the https-or-http probe and
/// tokens are shared by every image of the run rather than set up again per image.
#[derive(Default)]
struct Clients(Mutex<HashMap<(String, Side), Arc<Client>>>);

impl Clients {
    fn get(&self, host: &str, side: Side, options: &EndOptions) -> crate::Result<Arc<Client>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&(host.to_owned(), side)) {
            return Ok(c.clone());
        }
        let c = client(host, side, options)?;
        map.insert((host.to_owned(), side), c.clone());
        Ok(c)
    }
}

/// One image to copy.
struct Job {
    source: RegistryRef,
    source_options: EndOptions,
    /// The destination repository path (`PREFIX/name`, with the host for a registry).
    target: String,
    /// Its tag or digest: the source's.
    reference: ImageTag,
}

impl Job {
    fn name(&self) -> String {
        let sep = match self.reference {
            ImageTag::Tag(_) => ':',
            ImageTag::Digest(_) => '@',
        };
        format!("{} -> {}{sep}{}", self.source, self.target, self.reference)
    }
}

/// Runs a sync file.
pub async fn run(
    sections: &BTreeMap<String, RegistrySection>,
    options: &SyncOptions,
    progress: &Progress,
) -> crate::Result<SyncReport> {
    // Images of this run share what they sent, so a common layer crosses the network once.
    let mut options = options.clone();
    if options.copy.known.is_none() {
        options.copy.known = Some(crate::known::KnownBlobs::new());
    }
    let options = &options;
    let clients = &Clients::default();
    let mut jobs = Vec::new();
    // A repository whose tags cannot be listed fails alone, as a failed image does.
    let mut unlisted = Vec::new();
    for (registry, section) in sections {
        jobs.extend(plan(registry, section, options, clients, &mut unlisted).await?);
    }
    for (name, e) in &unlisted {
        progress.failed(name, e);
    }
    let results: Vec<(String, crate::Result<Summary>)> = futures_util::stream::iter(jobs)
        .map(|job| async move {
            let name = job.name();
            let result = copy_one(&job, options, clients, progress, &name).await;
            // Reported as each image ends, not when the whole sync does.
            match &result {
                Ok(summary) => progress.done(&name, summary),
                Err(e) => progress.failed(&name, e),
            }
            (name, result)
        })
        .buffer_unordered(options.images_at_once.max(1))
        .collect()
        .await;
    let mut report = SyncReport {
        failures: unlisted,
        ..SyncReport::default()
    };
    for (name, result) in results {
        match result {
            Ok(summary) => report.images.push((name, summary)),
            Err(e) => report.failures.push((name, e)),
        }
    }
    Ok(report)
}

async fn copy_one(
    job: &Job,
    options: &SyncOptions,
    clients: &Clients,
    progress: &Progress,
    name: &str,
) -> crate::Result<Summary> {
    let source_client = clients.get(&job.source.host, Side::Source, &job.source_options)?;
    let source = RegistrySource::new(source_client, job.source.clone());
    match &options.dest {
        Destination::Registry { options: end, .. } => {
            let full = match &job.reference {
                ImageTag::Tag(t) => format!("{}:{t}", job.target),
                ImageTag::Digest(d) => format!("{}@{d}", job.target),
            };
            let target_ref: RegistryRef = full.parse()?;
            let target_client = clients.get(&target_ref.host, Side::Target, end)?;
            let target = RegistryTarget::new(target_client, target_ref);
            copy_image(&source, &target, &options.copy, progress, name).await
        }
        Destination::Local { registry, .. } => {
            let repo = job
                .target
                .parse()
                .map_err(|e: berth_oci::OciError| Failure::Usage(format!("{}: {e}", job.target)))?;
            let reference = match &job.reference {
                ImageTag::Tag(t) => Reference::Tag(
                    t.parse()
                        .map_err(|e: berth_oci::OciError| Failure::Usage(e.to_string()))?,
                ),
                ImageTag::Digest(d) => Reference::Digest(d.clone()),
            };
            let image = LocalRef {
                repo,
                reference: Some(reference),
            };
            let target = LocalTarget::new(registry.clone(), image);
            copy_image(&source, &target, &options.copy, progress, name).await
        }
    }
}

/// The images one registry section names, with their destinations.
async fn plan(
    registry: &str,
    section: &RegistrySection,
    options: &SyncOptions,
    clients: &Clients,
    unlisted: &mut Vec<(String, Failure)>,
) -> crate::Result<Vec<Job>> {
    let source_options = EndOptions {
        tls_verify: section.tls_verify.unwrap_or(true),
        cert_dir: section.cert_dir.clone(),
        credentials: section
            .credentials
            .as_ref()
            .map(|c| (c.username.clone(), c.password.clone())),
        authfile: options.authfile.clone(),
    };
    let lister = clients.get(registry, Side::Source, &source_options)?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (repo, tags) in &section.images {
        if tags.is_empty() {
            for t in tags_or_note(&lister, registry, repo, unlisted).await {
                wanted.push((repo.clone(), t));
            }
        } else {
            wanted.extend(tags.iter().map(|t| (repo.clone(), t.clone())));
        }
    }
    for (repo, pattern) in &section.images_by_tag_regex {
        let re = Regex::new(pattern).map_err(|e| {
            Failure::Usage(format!("{registry}/{repo}: tag regex {pattern:?}: {e}"))
        })?;
        for t in tags_or_note(&lister, registry, repo, unlisted).await {
            if re.is_match(&t) {
                wanted.push((repo.clone(), t));
            }
        }
    }
    for (repo, range) in &section.images_by_semver {
        let req = semver::VersionReq::parse(range).map_err(|e| {
            Failure::Usage(format!("{registry}/{repo}: semver range {range:?}: {e}"))
        })?;
        for t in tags_or_note(&lister, registry, repo, unlisted).await {
            if version_of(&t).is_some_and(|v| req.matches(&v)) {
                wanted.push((repo.clone(), t));
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    let mut jobs = Vec::new();
    for (repo, tag) in wanted {
        let source: RegistryRef = if tag.contains(':') {
            format!("{registry}/{repo}@{tag}").parse()?
        } else {
            format!("{registry}/{repo}:{tag}").parse()?
        };
        let scope = if options.scoped {
            format!("{}/{}", source.host, source.repo)
        } else {
            source.repo.components().last().unwrap_or("").to_owned()
        };
        // By digest at the source: by digest at the target too.
        let reference = source.reference.clone();
        jobs.push(Job {
            source,
            source_options: source_options.clone(),
            target: options.dest.repo(&scope),
            reference,
        });
    }
    Ok(jobs)
}

/// A tag as a version: `v1.2.3`, `1.2` (as `1.2.0`) and `1` (as `1.0.0`), as skopeo's
/// semver library reads them; anything else is not a version.
fn version_of(tag: &str) -> Option<semver::Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    let (core, rest) = match t.find(['-', '+']) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let padded = match parts.len() {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => return None,
    };
    semver::Version::parse(&padded).ok()
}

/// The tags of `repo`; none when they cannot be listed, with the failure noted.
async fn tags_or_note(
    client: &Client,
    registry: &str,
    repo: &str,
    unlisted: &mut Vec<(String, Failure)>,
) -> Vec<String> {
    match list_tags(client, registry, repo).await {
        Ok(tags) => tags,
        Err(e) => {
            unlisted.push((format!("{registry}/{repo} (tag list)"), e));
            Vec::new()
        }
    }
}

/// Every tag of `repo`, following `Link` pages (bounded in size and count).
async fn list_tags(client: &Client, registry: &str, repo: &str) -> crate::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Page {
        tags: Option<Vec<String>>,
    }
    let name: RepoName = repo
        .parse()
        .map_err(|e| Failure::Usage(format!("{registry}/{repo}: {e}")))?;
    let mut path = format!("/v2/{name}/tags/list?n=1000");
    let mut all = Vec::new();
    for _ in 0..MAX_TAG_PAGES {
        let response = client
            .send(
                Method::GET,
                &path,
                &pull_scope(repo),
                HeaderMap::new(),
                None,
            )
            .await?;
        if !response.status().is_success() {
            return Err(client
                .unexpected(&format!("tags of {repo}"), response)
                .await);
        }
        let next = berth_proxy::upstream::next_link(response.headers());
        let body = berth_proxy::body::read_limited(
            response,
            MAX_TAG_PAGE,
            "tag list page",
            std::time::Duration::from_secs(60),
        )
        .await
        .map_err(|e| Failure::Source(format!("tags of {registry}/{repo}: {e}")))?;
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| Failure::Content(format!("tags of {registry}/{repo}: {e}")))?;
        all.extend(page.tags.unwrap_or_default());
        match next {
            Some(n) => path = n,
            None => break,
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skopeo_sync_files_parse() {
        let yaml = r#"
registry.example.com:
  tls-verify: false
  images:
    busybox: []
    redis: ["7.2"]
  images-by-tag-regex:
    nginx: ^1\.2[0-9]
  images-by-semver:
    alpine: ">= 3.18"
  credentials:
    username: u
    password: p
quay.io:
  images:
    coreos/etcd: ["v3.5.0"]
"#;
        let parsed = parse_file(yaml).unwrap_or_else(|e| panic!("{e}"));
        let r = &parsed["registry.example.com"];
        assert_eq!(r.tls_verify, Some(false));
        assert_eq!(r.images["busybox"].len(), 0);
        assert_eq!(r.images_by_tag_regex["nginx"], r"^1\.2[0-9]");
        assert_eq!(r.images_by_semver["alpine"], ">= 3.18");
        assert_eq!(parsed["quay.io"].images["coreos/etcd"], ["v3.5.0"]);
        assert!(parse_file("r: {imagez: {}}").is_err(), "typos are refused");
    }

    #[test]
    fn tags_as_versions() {
        let req = semver::VersionReq::parse(">= 1.2").unwrap_or_else(|e| panic!("{e}"));
        let ok = |t: &str| version_of(t).is_some_and(|v| req.matches(&v));
        assert!(ok("1.2"));
        assert!(ok("v1.10.3"));
        assert!(ok("2"));
        assert!(!ok("1.1.9"));
        assert!(!ok("latest"));
        assert!(!ok("1.2.3.4"));
    }
}
