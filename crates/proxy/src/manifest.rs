//! Manifests through the cache. By digest: served from storage when there, else fetched once,
//! verified against the digest and stored. By tag: served from storage while the tag was
//! checked upstream within its TTL; after that one `HEAD` per tag (shared by every waiting
//! client) says whether the digest moved, and only then is the manifest fetched again. Any
//! upstream failure with a cached copy serves the copy (stale-if-error).

use std::sync::atomic::Ordering;

use berth_oci::{Algorithm, Digest, Digester, Manifest, Reference, Tag};
use berth_registry::manifests::StoredManifest;
use berth_registry::RegistryError;

use crate::error::What;
use crate::metrics::{self, Kind};
use crate::route::Route;
use crate::upstream::RemoteManifest;
use crate::{Proxy, ProxyError, UpstreamError};

impl Proxy {
    /// A manifest of a routed repository, by tag or digest.
    pub async fn manifest(
        &self,
        route: &Route,
        reference: &Reference,
    ) -> Result<StoredManifest, ProxyError> {
        metrics::request(Kind::Manifest);
        let served = self.manifest_uncounted(route, reference).await;
        if let Ok(m) = &served {
            metrics::pushed(Kind::Manifest, m.body.len() as u64, route.upstream.host());
            self.note_pull(route, &m.digest);
            // Cached ones too: after a restart the blobs they name may still be cold.
            if let Ok(parsed) = Manifest::parse(&m.body, Some(&m.media_type)) {
                self.note_declared_sizes(route, &parsed);
            }
        }
        served
    }

    /// [`Proxy::manifest`] without the request metrics and pull records: for manifests the
    /// cache fetches on its own account (referrers).
    pub(crate) async fn manifest_uncounted(
        &self,
        route: &Route,
        reference: &Reference,
    ) -> Result<StoredManifest, ProxyError> {
        let local = self.local_manifest(route, reference).await?;
        match reference {
            Reference::Digest(digest) => match local {
                Some(m) => {
                    metrics::hit(Kind::Manifest, route.upstream.host());
                    Ok(m)
                }
                None => {
                    self.manifests
                        .run((route.local.clone(), digest.to_string()), || {
                            self.fetch_by_digest(route, reference)
                        })
                        .await
                }
            },
            Reference::Tag(tag) => match local {
                Some(m) if self.fresh(route, tag.as_str()) => {
                    metrics::hit(Kind::Manifest, route.upstream.host());
                    Ok(m)
                }
                _ => {
                    self.manifests
                        .run((route.local.clone(), format!(":{tag}")), || {
                            self.refresh_tag(route, tag)
                        })
                        .await
                }
            },
        }
    }

    async fn local_manifest(
        &self,
        route: &Route,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, ProxyError> {
        match self.registry.get_manifest(&route.local, reference).await {
            Ok(m) => Ok(Some(m)),
            Err(RegistryError::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn fetch_by_digest(
        &self,
        route: &Route,
        reference: &Reference,
    ) -> Result<StoredManifest, ProxyError> {
        // A run that just finished may have stored it.
        if let Some(m) = self.local_manifest(route, reference).await? {
            return Ok(m);
        }
        self.fetch(route, reference, true).await
    }

    /// Re-checks a tag upstream (or fetches it when it was never cached).
    async fn refresh_tag(&self, route: &Route, tag: &Tag) -> Result<StoredManifest, ProxyError> {
        let reference = Reference::Tag(tag.clone());
        let cached = match self.local_manifest(route, &reference).await? {
            Some(m) if self.fresh(route, tag.as_str()) => return Ok(m),
            Some(m) => m,
            None => {
                let m = self.fetch(route, &reference, true).await?;
                self.mark_checked(route, tag.as_str());
                return Ok(m);
            }
        };
        let head = route
            .upstream
            .head_manifest(&route.remote, tag.as_str(), false)
            .await;
        match head {
            Ok(Some(digest)) if digest == cached.digest => {
                self.mark_checked(route, tag.as_str());
                metrics::hit(Kind::Manifest, route.upstream.host());
                Ok(cached)
            }
            Ok(moved) => {
                // Moved, or the upstream sent no digest: fetch (by digest when known, so what
                // is stored is exactly what the HEAD named).
                let target = moved.map_or(reference.clone(), Reference::Digest);
                match self.fetch_for_tag(route, tag, &target).await {
                    Ok(m) => {
                        self.mark_checked(route, tag.as_str());
                        if m.digest != cached.digest {
                            tracing::info!(upstream = route.upstream.host(), repo = %route.local, %tag, from = %cached.digest, to = %m.digest, "tag moved upstream");
                        }
                        Ok(m)
                    }
                    Err(e) => {
                        self.stale(route, tag.as_str(), &e);
                        metrics::hit(Kind::Manifest, route.upstream.host());
                        Ok(cached)
                    }
                }
            }
            Err(e) => {
                self.stale(route, tag.as_str(), &e);
                metrics::hit(Kind::Manifest, route.upstream.host());
                Ok(cached)
            }
        }
    }

    /// Fetches `target` and stores it under `tag`.
    async fn fetch_for_tag(
        &self,
        route: &Route,
        tag: &Tag,
        target: &Reference,
    ) -> Result<StoredManifest, UpstreamError> {
        let remote = route
            .upstream
            .get_manifest(&route.remote, &target.to_string(), false)
            .await?;
        let expected = match target {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => None,
        };
        self.store(route, &Reference::Tag(tag.clone()), remote, expected)
            .await
    }

    /// Fetches a manifest with nothing cached to fall back on (retries, no "down" shortcut).
    async fn fetch(
        &self,
        route: &Route,
        reference: &Reference,
        cold: bool,
    ) -> Result<StoredManifest, ProxyError> {
        let host = route.upstream.host();
        let remote = route
            .upstream
            .get_manifest(&route.remote, &reference.to_string(), cold)
            .await
            .map_err(|e| e.into_proxy(What::Manifest, host))?;
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => None,
        };
        self.store(route, reference, remote, expected)
            .await
            .map_err(|e| e.into_proxy(What::Manifest, host))
    }

    /// Verifies a fetched manifest (its digest against the reference or the upstream's header;
    /// it must parse) and stores it under `reference`. A storage failure (read-only, full
    /// disk) is logged and the manifest still served.
    async fn store(
        &self,
        route: &Route,
        reference: &Reference,
        remote: RemoteManifest,
        expected: Option<Digest>,
    ) -> Result<StoredManifest, UpstreamError> {
        let invalid = UpstreamError::Invalid;
        let algorithm = expected
            .as_ref()
            .or(remote.digest.as_ref())
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let mut digester = Digester::new(algorithm);
        digester.update(&remote.body);
        let digest = digester.finish();
        for claimed in [&expected, &remote.digest].into_iter().flatten() {
            if claimed.algorithm() == algorithm && claimed != &digest {
                return Err(invalid(format!("manifest {claimed} hashes to {digest}")));
            }
        }
        let parsed = Manifest::parse(&remote.body, remote.content_type.as_deref())
            .map_err(|e| invalid(format!("manifest {digest}: {e}")))?;
        let n = self.stats.manifests_fetched.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::miss(Kind::Manifest, route.upstream.host());
        metrics::pulled(Kind::Manifest, remote.body.len() as u64);
        tracing::info!(upstream = route.upstream.host(), repo = %route.local, %reference, %digest, manifests_fetched_total = n, "manifest fetched from upstream");
        let stored = self
            .registry
            .cache_manifest(
                &route.local,
                reference,
                remote.content_type.as_deref(),
                remote.body.clone(),
            )
            .await;
        if let Err(e) = stored {
            match e {
                RegistryError::Invalid(e) => {
                    return Err(invalid(format!("manifest {digest}: {e}")))
                }
                e => {
                    tracing::warn!(repo = %route.local, %digest, error = %e, "manifest served but not cached")
                }
            }
        }
        Ok(StoredManifest {
            digest,
            body: remote.body,
            media_type: parsed.media_type,
        })
    }
}
