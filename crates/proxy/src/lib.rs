//! The pull-through cache: a decorator over the registry core (STYLE.md §6). A pull that routes
//! to an upstream looks in local storage first; on a miss it fetches from the upstream, once
//! per manifest or blob however many clients wait ([`flight`], [`blob`]), and stores what it
//! fetched with the registry's normal write paths, so the on-disk layout is registry:2's.
//! Manifests by digest and blobs never change, so they are served from storage for good; tags
//! are re-checked with a `HEAD` after their TTL. When the upstream fails (refused, timed out,
//! 401/403, 429, 5xx), cached content is served with a warning (stale-if-error): a client only
//! gets an error when Berth never had the content.
//!
//! [`route`] decides which upstream a repository name belongs to: registry:2's single
//! `proxy.remoteurl`, or Berth's many upstreams selected by containerd's `?ns=`, a host path
//! prefix, or a default upstream for plain names.
//!
//! [`ReadThrough`] is the cache as the API sees it: the registry's read store trait for one
//! route, so cached repositories are served by the same handlers as private ones, referrers
//! ([`referrers`]) included.
//!
//! [`cache`] bounds what is kept: images not pulled within the expiry, and beyond a size limit
//! the least recently pulled ones, are evicted by a periodic pass.

pub mod auth;
pub mod blob;
pub mod body;
pub mod cache;
mod error;
pub mod evict;
#[cfg(test)]
mod evict_tests;
mod flight;
pub mod guard;
mod manifest;
pub mod metrics;
pub mod referrers;
pub mod route;
pub mod spool;
pub mod store;
pub mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_config::Config;
use berth_oci::{Digest, RepoName};
use berth_registry::{Registry, RegistryError};

use crate::metrics::Kind;
pub use blob::Download;
pub use cache::{CachePolicy, PassReport};
pub use error::{ProxyError, UpstreamError, What};
pub use route::{Route, Routing, Via};
pub use store::ReadThrough;
pub use upstream::{Upstream, UpstreamSettings};

/// Counters for operators (logged with the events that change them).
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered from the cache because the upstream failed.
    pub stale_served: AtomicU64,
    /// Manifests fetched from upstreams.
    pub manifests_fetched: AtomicU64,
    /// Blob downloads started.
    pub blobs_fetched: AtomicU64,
}

/// Why a write into a repository is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// registry:2's proxy mode refuses every write with `405 UNSUPPORTED`.
    Unsupported,
    /// The name belongs to an upstream: `403 DENIED` with this message.
    Denied(String),
}

/// Where a blob GET or HEAD is served from.
pub enum BlobSource {
    /// From local storage, under the route's local name, with its size when this lookup
    /// already stat-ed it (so the server need not ask storage again).
    Local(Option<u64>),
    /// A HEAD answered from the upstream without downloading: the size, when it said.
    Remote(Option<u64>),
    /// Arriving from the upstream now: its size (when known) and the shared download.
    Fetching(Option<u64>, Arc<Download>),
}

/// Cached tags are remembered this many at most (checked times only; cheap to lose).
const MAX_TAG_CHECKS: usize = 100_000;
/// Blob sizes declared by served manifests, remembered this many at most (a bound for
/// downloads whose upstream sends no length; cheap to lose).
const MAX_DECLARED_SIZES: usize = 100_000;

type DownloadKey = (RepoName, Digest);

/// The pull-through cache over one registry.
pub struct Proxy {
    registry: Arc<Registry>,
    routing: Routing,
    spool: PathBuf,
    downloads: Arc<Mutex<HashMap<DownloadKey, Arc<Download>>>>,
    manifests: flight::Flights<
        (RepoName, String),
        Result<berth_registry::manifests::StoredManifest, ProxyError>,
    >,
    blob_heads: flight::Flights<DownloadKey, Result<Option<u64>, ProxyError>>,
    tag_lists: flight::Flights<RepoName, Result<Vec<String>, ProxyError>>,
    referrer_checks: flight::Flights<DownloadKey, Vec<berth_oci::Descriptor>>,
    checked: Mutex<HashMap<(RepoName, String), Instant>>,
    cache: Option<CachePolicy>,
    pulls: Mutex<HashMap<DownloadKey, Instant>>,
    declared: Mutex<HashMap<DownloadKey, u64>>,
    /// Counters.
    pub stats: Stats,
}

impl Proxy {
    /// A cache over `registry` with `routing`; downloads spool to unnamed files in `spool`.
    pub fn new(registry: Arc<Registry>, routing: Routing, spool: PathBuf) -> Arc<Proxy> {
        Self::with_cache(registry, routing, spool, None)
    }

    /// [`Proxy::new`] that also enforces a cache size limit and expiry ([`cache`]).
    pub fn with_cache(
        registry: Arc<Registry>,
        routing: Routing,
        spool: PathBuf,
        cache: Option<CachePolicy>,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            registry,
            routing,
            spool,
            downloads: Arc::default(),
            manifests: flight::Flights::default(),
            blob_heads: flight::Flights::default(),
            tag_lists: flight::Flights::default(),
            referrer_checks: flight::Flights::default(),
            checked: Mutex::new(HashMap::new()),
            cache,
            pulls: Mutex::new(HashMap::new()),
            declared: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        })
    }

    /// The cache the `proxy` section asks for, or `None` without one. Spool files live in
    /// `proxy.spooldir`, else the filesystem storage's root (same disk as the blobs), else the
    /// temp directory; the directory is checked here ([`spool::check`]), so one that cannot
    /// take them stops startup.
    pub fn from_config(
        config: &Config,
        registry: Arc<Registry>,
    ) -> Result<Option<Arc<Proxy>>, String> {
        let Some(p) = &config.proxy else {
            return Ok(None);
        };
        let routing = if let Some(url) = &p.remoteurl {
            let host = reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| url.clone());
            Routing::Single(Arc::new(Upstream::new(UpstreamSettings {
                host,
                url: url.trim_end_matches('/').to_owned(),
                credentials: p
                    .username
                    .clone()
                    .map(|u| (u, p.password.clone().unwrap_or_default())),
                // registry:2 asks the upstream about a tag on every pull.
                tag_ttl: Duration::ZERO,
                proxy: None,
                timeout: berth_config::UpstreamConfig::DEFAULT_TIMEOUT,
                // registry:2 has no such setting; a local remoteurl allows them anyway.
                allow_private_redirects: false,
            })?))
        } else {
            let upstreams = p
                .upstreams
                .iter()
                .map(|u| Upstream::new(UpstreamSettings::from_config(u)).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            let default = p
                .default
                .as_ref()
                .and_then(|d| upstreams.iter().position(|u| u.host() == d));
            Routing::Many {
                upstreams,
                default,
                private: p.private.clone(),
            }
        };
        for u in routing.upstreams() {
            tracing::info!(
                upstream = u.host(),
                url = u.settings.url,
                tag_ttl_s = u.settings.tag_ttl.as_secs(),
                timeout_ms = u.settings.timeout.as_millis() as u64,
                outbound_proxy = u.settings.proxy.as_deref().unwrap_or("-"),
                allow_private_redirects = u.settings.allow_private_redirects,
                "pull-through cache upstream"
            );
        }
        let (spool, source) = spool::choose(config);
        spool::check(&spool, source)?;
        tracing::info!(
            dir = %spool.display(),
            from = source.describe(),
            "pull-through cache spool directory (cold blobs are written there as unnamed files while they download)"
        );
        let cache = CachePolicy::from_config(p);
        if let Some(c) = &cache {
            tracing::info!(
                maxsize = c.limits.maxsize.map_or_else(|| "-".to_owned(), berth_config::format_size),
                interval_s = c.interval.as_secs_f64(),
                "pull-through cache limits: images not pulled within their expiry, and beyond maxsize the least recently pulled, are evicted"
            );
        }
        Ok(Some(Proxy::with_cache(registry, routing, spool, cache)))
    }

    /// The upstream route of `repo` (with containerd's `ns` query parameter), or `None` for a
    /// private repository served from storage only.
    pub fn route(&self, repo: &RepoName, ns: Option<&str>) -> Option<Route> {
        self.routing.route(repo, ns)
    }

    /// The namespace of a `?ns=` that no upstream stands for (see
    /// [`Routing::unknown_namespace`]).
    pub fn unknown_namespace<'a>(&self, ns: Option<&'a str>) -> Option<&'a str> {
        self.routing.unknown_namespace(ns)
    }

    /// Whether a write (push, delete) into `repo`, which resolved to `route`, must be refused,
    /// and how.
    pub fn write_refusal(&self, repo: &RepoName, route: Option<&Route>) -> Option<Refusal> {
        if self.routing.read_only() {
            return Some(Refusal::Unsupported);
        }
        let route = route?;
        let host = route.upstream.host();
        let why = match route.via {
            Via::Namespace => format!("?ns={host} names the upstream {host}"),
            Via::HostPrefix => format!("names starting with {host}/ are cached from {host}"),
            Via::Default => format!(
                "plain names are pulled from the default upstream {host}; push under a prefix listed in proxy.private, or under no upstream's host"
            ),
            Via::Registry => format!("the whole registry mirrors {host}"),
        };
        Some(Refusal::Denied(format!(
            "repository {repo} belongs to upstream {host}, which this registry caches read-only ({why})"
        )))
    }

    /// The registry underneath.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A blob for GET (`head` false: downloads it when cold) or HEAD (asks the upstream for
    /// its size without downloading).
    pub async fn blob(
        &self,
        route: &Route,
        digest: &Digest,
        head: bool,
    ) -> Result<BlobSource, ProxyError> {
        metrics::request(Kind::Blob);
        match self.registry.stat_blob(&route.local, digest).await {
            Ok(size) => {
                metrics::hit(Kind::Blob, route.upstream.host());
                if !head {
                    metrics::pushed(Kind::Blob, size, route.upstream.host());
                }
                return Ok(BlobSource::Local(Some(size)));
            }
            Err(RegistryError::BlobUnknown(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let key = (route.local.clone(), digest.clone());
        let running = self
            .downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let download = match (running, head) {
            (Some(d), _) => d,
            (None, true) => {
                let size = self
                    .blob_heads
                    .run(key, || async {
                        route
                            .upstream
                            .head_blob(&route.remote, digest)
                            .await
                            .map_err(|e| e.into_proxy(What::Blob, route.upstream.host()))
                    })
                    .await?;
                metrics::miss(Kind::Blob, route.upstream.host());
                return Ok(BlobSource::Remote(size));
            }
            (None, false) => self.download(route, digest)?,
        };
        let source = match download.ready().await? {
            blob::Ready::Local => BlobSource::Local(None),
            blob::Ready::Streaming(size) => BlobSource::Fetching(size, download),
        };
        metrics::miss(Kind::Blob, route.upstream.host());
        if let BlobSource::Fetching(Some(size), _) = &source {
            metrics::pushed(Kind::Blob, *size, route.upstream.host());
        }
        Ok(source)
    }

    /// The running download of `digest` for `route`, started if there is none.
    fn download(&self, route: &Route, digest: &Digest) -> Result<Arc<Download>, ProxyError> {
        let key = (route.local.clone(), digest.clone());
        let mut map = self.downloads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = map.get(&key) {
            return Ok(d.clone());
        }
        let downloads = self.downloads.clone();
        let done_key = key.clone();
        let declared = self.declared_size(&key);
        let download = Download::start(
            self.registry.clone(),
            route.clone(),
            digest.clone(),
            declared,
            &self.spool,
            move || {
                downloads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&done_key);
            },
        )?;
        let n = self.stats.blobs_fetched.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(upstream = route.upstream.host(), repo = %route.local, %digest, blobs_fetched_total = n, "fetching blob from upstream");
        map.insert(key, download.clone());
        Ok(download)
    }

    /// All tags of a routed repository: the upstream's list, or the cached tags when the
    /// upstream fails.
    pub async fn tags(&self, route: &Route) -> Result<Vec<String>, ProxyError> {
        self.tag_lists
            .run(route.local.clone(), || async {
                let cached = match self.registry.all_tags(&route.local).await {
                    Ok(tags) => Some(tags),
                    Err(RegistryError::NameUnknown(_)) => None,
                    Err(e) => return Err(e.into()),
                };
                let error = match route.upstream.tags(&route.remote, cached.is_none()).await {
                    Ok(tags) => return Ok(tags),
                    Err(e) => e,
                };
                match cached {
                    Some(tags) => {
                        self.stale(route, "tags/list", &error);
                        Ok(tags)
                    }
                    None => Err(error.into_proxy(What::Repository, route.upstream.host())),
                }
            })
            .await
    }

    /// Logs (and counts) that cached content is served because the upstream failed.
    fn stale(&self, route: &Route, reference: &str, error: &UpstreamError) {
        let n = self.stats.stale_served.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::stale_serve(route.upstream.host());
        metrics::upstream_error(route.upstream.host(), error);
        tracing::warn!(
            upstream = route.upstream.host(),
            repo = %route.local,
            reference,
            error = %error,
            stale_served_total = n,
            "upstream failed; serving cached content (stale-if-error)"
        );
    }

    /// Whether the tag was checked upstream within its TTL.
    fn fresh(&self, route: &Route, tag: &str) -> bool {
        let ttl = route.upstream.settings.tag_ttl;
        if ttl.is_zero() {
            return false;
        }
        let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked
            .get(&(route.local.clone(), tag.to_owned()))
            .is_some_and(|t| t.elapsed() < ttl)
    }

    /// Remembers the sizes a served manifest declares for its config and layers, so their
    /// downloads stop when an upstream sends more (see [`Download::start`]). Manifests of
    /// other manifests (indexes) name no blobs.
    fn note_declared_sizes(&self, route: &Route, manifest: &berth_oci::Manifest) {
        let blobs = manifest.config.iter().chain(&manifest.layers);
        let mut declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        for d in blobs {
            if declared.len() >= MAX_DECLARED_SIZES {
                declared.clear();
            }
            declared.insert((route.local.clone(), d.digest.clone()), d.size);
        }
    }

    /// The size a manifest of the repository declared for a blob, when one was served.
    fn declared_size(&self, key: &DownloadKey) -> Option<u64> {
        let declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        declared.get(key).copied()
    }

    /// Records that the tag was just confirmed upstream.
    fn mark_checked(&self, route: &Route, tag: &str) {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.len() >= MAX_TAG_CHECKS {
            checked.clear();
        }
        checked.insert((route.local.clone(), tag.to_owned()), Instant::now());
    }
}
