//! The cache's size limit and expiry: pulls are recorded cheaply on the hot path, and a pass
//! (run every `proxy.cache.interval` by the server) evicts images that expired or, beyond the
//! size limit, were pulled least recently ([`crate::evict`] decides which), then reports the
//! cached bytes per upstream (log line and the `berth_proxy_cache_bytes` gauge).
//!
//! **What expires.** registry:2 deletes cached content `ttl` after it *cached* it, used or
//! not. Berth evicts an image when it was not *pulled* for `ttl`: content that clusters keep
//! pulling stays, so stale-if-error still has it when the upstream fails, and only what
//! nobody uses goes. `proxy.ttl` keeps registry:2's default (168h) and `0` (never).
//!
//! **What is evicted** is an image of a repository the cache owns (one that routes to an
//! upstream under its stored name: every repository in registry:2 mode, `<host>/...` with
//! many upstreams); private repositories are never looked at. Eviction removes links (tags,
//! revisions), so the space comes back when garbage collection removes the blobs (the online
//! collector after its `delay`). Bytes are counted from what remaining images reference, so
//! evicted images stop counting at once and a pass never evicts twice for the same bytes.
//!
//! **Last pull.** The first manifest request for an image after start, and then at most one
//! per refresh period (a quarter of the shorter of `interval` and the expiry), writes a pull
//! record (`berth_registry::cache`); the rest only look at an in-memory map. An image without
//! a record (cached before limits were configured) counts as pulled when a pass first sees
//! it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_config::ProxyConfig;
use berth_oci::{Digest, RepoName};
use berth_registry::RegistryError;

use crate::evict::{over_limit, plan, Candidate, Ledger, Limits, Reason, UpstreamLimits};
use crate::route::Route;
use crate::{metrics, Proxy, ProxyError};

/// Pull times remembered in memory at most (only saves writes; cheap to lose).
const MAX_PULLS: usize = 100_000;

/// What the cache enforces, from the `proxy` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Size and expiry limits.
    pub limits: Limits,
    /// Time between passes.
    pub interval: Duration,
}

impl CachePolicy {
    /// The policy of `proxy`, or `None` when there is nothing to enforce (no size limit and
    /// no expiry).
    pub fn from_config(proxy: &ProxyConfig) -> Option<CachePolicy> {
        let count = if proxy.remoteurl.is_some() {
            1
        } else {
            proxy.upstreams.len()
        };
        let upstreams: Vec<UpstreamLimits> = (0..count)
            .map(|i| UpstreamLimits {
                maxsize: proxy.upstreams.get(i).and_then(|u| u.cache.maxsize),
                expiry: proxy.expiry(i),
            })
            .collect();
        let enforced = proxy.cache.maxsize.is_some()
            || upstreams
                .iter()
                .any(|u| u.maxsize.is_some() || u.expiry.is_some());
        if !enforced {
            return None;
        }
        let interval = proxy.cache.pass_interval();
        let shortest = upstreams
            .iter()
            .filter_map(|u| u.expiry)
            .fold(interval, Duration::min);
        Some(CachePolicy {
            limits: Limits {
                maxsize: proxy.cache.maxsize,
                upstreams,
                grace: shortest / 4,
            },
            interval,
        })
    }

    /// How often a manifest's pull record is rewritten at most (also the grace period).
    pub fn refresh(&self) -> Duration {
        self.limits.grace
    }
}

/// One evicted image.
#[derive(Debug, Clone)]
pub struct Evicted {
    /// Its upstream's host.
    pub upstream: String,
    /// The repository.
    pub repository: RepoName,
    /// The image's manifest.
    pub root: Digest,
    /// Its tags.
    pub tags: Vec<String>,
    /// Why.
    pub reason: Reason,
    /// Bytes the cache no longer uses because of it.
    pub bytes: u64,
    /// When it was last pulled (unix ms).
    pub last_pull: u64,
}

/// Cached content of one upstream after a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUsage {
    /// The upstream's host.
    pub upstream: String,
    /// Images cached.
    pub images: u64,
    /// Bytes they use (each blob once).
    pub bytes: u64,
}

/// What a pass did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Images evicted, in order.
    pub evicted: Vec<Evicted>,
    /// What each upstream's images use afterwards.
    pub upstreams: Vec<UpstreamUsage>,
    /// Bytes all cached images use afterwards (a blob used by two upstreams counts once).
    pub bytes: u64,
    /// Whether a size limit is still exceeded (only images in use were left).
    pub over_limit: bool,
    /// Images kept because they were pulled while the pass ran, and repositories skipped.
    pub notes: Vec<String>,
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Proxy {
    /// The cache policy, if limits are configured.
    pub fn cache_policy(&self) -> Option<&CachePolicy> {
        self.cache.as_ref()
    }

    /// Records that a manifest of `route` was served (see the module documentation): a map
    /// lookup, and a spawned write once per refresh period per manifest.
    pub(crate) fn note_pull(&self, route: &Route, digest: &Digest) {
        let Some(policy) = &self.cache else { return };
        if self.registry.read_only() {
            return;
        }
        let key = (route.local.clone(), digest.clone());
        {
            let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
            if pulls
                .get(&key)
                .is_some_and(|t| t.elapsed() < policy.refresh())
            {
                return;
            }
            if pulls.len() >= MAX_PULLS {
                pulls.clear();
            }
            pulls.insert(key.clone(), Instant::now());
        }
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let (repo, digest) = key;
            if let Err(e) = registry.record_pull(&repo, &digest, now_ms()).await {
                tracing::warn!(%repo, %digest, error = %e, "could not record a pull (cache eviction may take the image for unused)");
            }
        });
    }

    /// One expiry and eviction pass now (see [`Proxy::cache_pass_at`]).
    pub async fn cache_pass(&self) -> Result<PassReport, ProxyError> {
        self.cache_pass_at(now_ms()).await
    }

    /// One pass as if the time were `now_ms`: inventory of the cache-owned repositories,
    /// plan, evictions, metrics. Without limits it only reports the usage.
    pub async fn cache_pass_at(&self, now_ms: u64) -> Result<PassReport, ProxyError> {
        let upstreams = self.routing.upstreams();
        let mut owned = Vec::new();
        let mut group: HashMap<RepoName, usize> = HashMap::new();
        for repo in self.registry.repository_names().await? {
            let Some(route) = self.routing.route(&repo, None) else {
                continue;
            };
            if route.local != repo {
                continue;
            }
            if let Some(u) = upstreams
                .iter()
                .position(|u| Arc::ptr_eq(u, &route.upstream))
            {
                group.insert(repo.clone(), u);
                owned.push(repo);
            }
        }
        let inventory = self.registry.cached_images(&owned).await?;
        let mut report = PassReport {
            notes: inventory.skipped,
            ..PassReport::default()
        };
        let mut candidates = Vec::new();
        for mut image in inventory.images {
            if image.last_pull.is_none() && self.cache.is_some() && !self.registry.read_only() {
                self.registry
                    .record_pull(&image.repository, &image.root, now_ms)
                    .await?;
                image.last_pull = Some(now_ms);
            }
            let upstream = group.get(&image.repository).copied().unwrap_or(0);
            candidates.push(Candidate { upstream, image });
        }
        let limits = self
            .cache
            .as_ref()
            .map(|p| p.limits.clone())
            .unwrap_or(Limits {
                upstreams: vec![Default::default(); upstreams.len()],
                ..Limits::default()
            });
        let mut ledger = Ledger::new(&candidates, upstreams.len(), inventory.sizes);
        let planned = if self.cache.is_some() {
            plan(&candidates, &ledger, &limits, now_ms)
        } else {
            Vec::new()
        };
        let mut gone: HashSet<usize> = HashSet::new();
        for (i, reason) in planned {
            if self.registry.read_only() {
                report
                    .notes
                    .push("read-only mode: eviction stopped".to_owned());
                break;
            }
            let c = &candidates[i];
            let shared: HashSet<Digest> = candidates
                .iter()
                .enumerate()
                .filter(|(j, o)| {
                    *j != i && !gone.contains(j) && o.image.repository == c.image.repository
                })
                .flat_map(|(_, o)| o.image.members.iter().cloned())
                .collect();
            match self.registry.evict_image(&c.image, &shared).await {
                Ok(true) => {}
                Ok(false) => {
                    report.notes.push(format!(
                        "{}@{} was pulled during the pass; kept",
                        c.image.repository, c.image.root
                    ));
                    continue;
                }
                Err(RegistryError::ReadOnly) => {
                    report
                        .notes
                        .push("read-only mode: eviction stopped".to_owned());
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            gone.insert(i);
            let host = upstreams
                .get(c.upstream)
                .map_or_else(String::new, |u| u.host().to_owned());
            metrics::evicted(&host);
            report.evicted.push(Evicted {
                upstream: host,
                repository: c.image.repository.clone(),
                root: c.image.root.clone(),
                tags: c.image.tags.iter().map(|t| t.to_string()).collect(),
                reason,
                bytes: ledger.remove(c),
                last_pull: c.image.last_pull.unwrap_or(now_ms),
            });
        }
        for (u, upstream) in upstreams.iter().enumerate() {
            let usage = UpstreamUsage {
                upstream: upstream.host().to_owned(),
                images: ledger.upstream_images[u],
                bytes: ledger.upstream_bytes[u],
            };
            metrics::cache_usage(&usage.upstream, usage.bytes, usage.images);
            report.upstreams.push(usage);
        }
        report.bytes = ledger.bytes;
        report.over_limit = over_limit(&ledger, &limits);
        Ok(report)
    }
}
