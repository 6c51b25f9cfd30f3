//! Referrers through the cache (OCI 1.1 `GET /v2/<name>/referrers/<digest>`). A referrers list
//! changes as artifacts (signatures, SBOMs) are pushed upstream, so it is treated like a tag:
//! the locally stored answer is served while the list was checked upstream within the tag TTL;
//! after that the upstream's index is asked for once (shared by every waiting client), and each
//! referrer it names that is not stored yet is fetched by digest and stored like any manifest.
//! The answer is always built from verified manifests (the local referrers index, plus fetched
//! ones storage refused), so an upstream cannot list a manifest whose subject is another one,
//! and everything listed can be pulled from the cache, also once the upstream is gone.
//!
//! An upstream without the referrers API (404 or 405) or one that fails leaves the local answer
//! (possibly an empty index): listing referrers never fails because of the upstream, which is
//! what clients got before the cache asked upstreams at all. The index is read with the
//! manifest size limit, and at most [`MAX_FETCHED`] referrers are fetched per check.

use std::collections::BTreeMap;

use berth_oci::media_types::OCI_INDEX;
use berth_oci::{Descriptor, Digest, Reference, RepoName};
use berth_registry::referrers::describe;
use futures_util::{stream, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method};

use crate::body::MAX_REFERRERS_INDEX;
use crate::route::Route;
use crate::upstream::{pull_scope, Upstream};
use crate::{Proxy, ProxyError, UpstreamError};

/// Referrer manifests fetched per check at most: an index may name thousands, each a fetch.
pub const MAX_FETCHED: usize = 64;
/// Referrer manifests fetched at once.
const FETCHES_IN_FLIGHT: usize = 4;

/// The key under which a subject's referrers list is remembered as checked (no tag contains
/// a `/`, so it never collides with a tag's).
fn checked_key(subject: &Digest) -> String {
    format!("referrers/{subject}")
}

impl Upstream {
    /// The upstream's referrers of `subject` (unfiltered), or `None` when it has no referrers
    /// API (404 or 405: the spec forbids a 404 from a registry that has it). One attempt,
    /// skipped while the upstream is marked down: the local answer is always there instead.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let mut accept = HeaderMap::new();
        accept.insert(header::ACCEPT, HeaderValue::from_static(OCI_INDEX));
        let path = format!("/v2/{repo}/referrers/{subject}");
        let response = match self
            .send(Method::GET, &path, &pull_scope(repo), accept, false)
            .await
        {
            Ok(r) => r,
            Err(UpstreamError::Status {
                status: 404 | 405, ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let body = self
            .small_body(response, MAX_REFERRERS_INDEX, "referrers index")
            .await?;
        let index: Index = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("referrers index: {e}")))?;
        Ok(Some(index.manifests))
    }
}

impl Proxy {
    /// The referrers of `subject` in a routed repository, filtered by `artifact_type` when
    /// given, sorted by digest (see the module documentation).
    pub async fn referrers(
        &self,
        route: &Route,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, ProxyError> {
        let fetched = if self.fresh(route, &checked_key(subject)) {
            Vec::new()
        } else {
            self.referrer_checks
                .run((route.local.clone(), subject.clone()), || {
                    self.check_referrers(route, subject)
                })
                .await
        };
        let mut found: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for d in self.registry.referrers(&route.local, subject, None).await? {
            found.insert(d.digest.clone(), d);
        }
        // Fetched but not stored (read-only mode, full disk): served all the same.
        for d in fetched {
            found.entry(d.digest.clone()).or_insert(d);
        }
        Ok(found
            .into_values()
            .filter(|d| artifact_type.is_none() || d.artifact_type.as_deref() == artifact_type)
            .collect())
    }

    /// Asks the upstream for the referrers of `subject` and fetches (and stores) those not
    /// stored yet. Returns the descriptors of what it fetched whose subject really is
    /// `subject`; on any upstream failure, nothing (the stored answer stands).
    async fn check_referrers(&self, route: &Route, subject: &Digest) -> Vec<Descriptor> {
        let key = checked_key(subject);
        let host = route.upstream.host();
        let listed = match route.upstream.referrers(&route.remote, subject).await {
            Ok(Some(listed)) => listed,
            Ok(None) => {
                tracing::debug!(upstream = host, repo = %route.local, %subject, "upstream has no referrers API; serving the stored referrers");
                self.mark_checked(route, &key);
                return Vec::new();
            }
            Err(e) => {
                self.stale(route, &key, &e);
                return Vec::new();
            }
        };
        if listed.len() > MAX_FETCHED {
            tracing::warn!(upstream = host, repo = %route.local, %subject, listed = listed.len(), limit = MAX_FETCHED, "upstream lists more referrers than are fetched per check; the rest are left out");
        }
        let results: Vec<_> = stream::iter(listed.into_iter().take(MAX_FETCHED))
            .map(|d| async move {
                let reference = Reference::Digest(d.digest.clone());
                (d.digest, self.manifest_uncounted(route, &reference).await)
            })
            .buffer_unordered(FETCHES_IN_FLIGHT)
            .collect()
            .await;
        let mut complete = true;
        let mut fetched = Vec::new();
        for (digest, result) in results {
            match result {
                Ok(m) => match describe(m.digest, &m.body, &m.media_type) {
                    Some((descriptor, Some(s))) if &s == subject => fetched.push(descriptor),
                    _ => {
                        tracing::warn!(upstream = host, repo = %route.local, %subject, referrer = %digest, "upstream lists a referrer whose subject is another manifest; left out")
                    }
                },
                Err(e) => {
                    complete = false;
                    tracing::warn!(upstream = host, repo = %route.local, %subject, referrer = %digest, error = %e, "referrer not fetched; left out until the next check");
                }
            }
        }
        if complete {
            self.mark_checked(route, &key);
        }
        fetched
    }
}
