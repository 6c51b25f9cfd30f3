//! Manifests: stored as blobs (content addressed), recorded per repository in
//! `_manifests/revisions`, named by tags. Bodies are served byte-identical to what was pushed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use berth_oci::{Digest, Digester, Manifest, ManifestKind, Reference, RepoName};
use berth_storage::paths;
use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};

use crate::manifest_cache::CachedManifest;
use crate::{links, Registry, RegistryError};

/// How many reference checks of one manifest run at once.
const REFERENCE_CHECKS_IN_FLIGHT: usize = 16;

/// Each digest once, owned (the checks run concurrently, so they own what they check).
fn distinct<'a>(digests: impl IntoIterator<Item = &'a Digest>) -> Vec<Digest> {
    let set: HashSet<&Digest> = digests.into_iter().collect();
    set.into_iter().cloned().collect()
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// The exact bytes that were pushed.
    pub body: Bytes,
    /// The media type to serve it with.
    pub media_type: String,
}

/// What a successful manifest PUT reports back.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its `subject`, for the `OCI-Subject` response header.
    pub subject: Option<Digest>,
    /// The media type it is served with (from its body, else the request's `Content-Type`).
    pub media_type: String,
}

impl Registry {
    /// Resolves a tag or digest to a digest that `repo` holds a revision of.
    pub async fn resolve_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Digest, RegistryError> {
        if let Some(digest) = self.resolve_cache.get(repo, reference) {
            return Ok(digest);
        }
        let read_at = std::time::Instant::now();
        let d = self.driver();
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => links::read(d, &paths::tag_current_link(repo, tag))
                .await?
                .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))?,
        };
        if links::read(d, &paths::revision_link(repo, &digest))
            .await?
            .as_ref()
            != Some(&digest)
        {
            return Err(RegistryError::ManifestUnknown(reference.to_string()));
        }
        self.resolve_cache.put(repo, reference, &digest, read_at);
        Ok(digest)
    }

    /// Reads a manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let digest = self.resolve_manifest(repo, reference).await?;
        let cached = self.load_manifest(&digest).await?;
        Ok(StoredManifest {
            digest,
            body: cached.body,
            media_type: cached.media_type,
        })
    }

    /// Loads manifest content by digest (no repository check), verifying it on a cache miss so
    /// corrupted storage is reported instead of served.
    pub(crate) async fn load_manifest(
        &self,
        digest: &Digest,
    ) -> Result<CachedManifest, RegistryError> {
        if let Some(hit) = self.manifest_cache.get(digest) {
            return Ok(hit);
        }
        let path = paths::blob_data(digest);
        let body = match self.driver().get_content(&path).await {
            Ok(body) => body,
            Err(e) if e.is_not_found() => {
                // Trashed by the online collector in a narrow race: take it back.
                if self.restore_from_trash(digest).await?.is_none() {
                    return Err(RegistryError::ManifestUnknown(digest.to_string()));
                }
                match self.driver().get_content(&path).await {
                    Ok(body) => body,
                    Err(e) if e.is_not_found() => {
                        return Err(RegistryError::ManifestUnknown(digest.to_string()))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let mut check = Digester::new(digest.algorithm());
        check.update(&body);
        let actual = check.finish();
        if &actual != digest {
            tracing::error!(%digest, %actual, "stored manifest does not match its digest");
            return Err(RegistryError::Corrupt(format!(
                "manifest {digest} hashes to {actual}"
            )));
        }
        let cached = CachedManifest {
            media_type: Manifest::detect_media_type(&body),
            body,
        };
        self.manifest_cache.put(digest.clone(), cached.clone());
        Ok(cached)
    }

    /// Stores a manifest under a tag or digest after validating it and checking that everything
    /// it references is in the repository.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest, RegistryError> {
        self.store_manifest(repo, reference, content_type, body, true)
            .await
    }

    /// Stores a manifest fetched by the pull-through cache: the same checks and layout as
    /// [`Registry::put_manifest`], except that the blobs it references need not be here yet
    /// (they are fetched when first pulled) and schema 1 is accepted (upstreams may still serve
    /// it). Referenced blobs are *not* linked into `repo`, even when already stored: naming a
    /// digest proves nothing, and an upstream (or anyone publishing an image on it) could name
    /// a private layer's digest to have it served from the cached repository. A blob is linked
    /// when the upstream has sent its bytes and they matched the digest.
    pub async fn cache_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest, RegistryError> {
        self.store_manifest(repo, reference, content_type, body, false)
            .await
    }

    async fn store_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        pushed: bool,
    ) -> Result<PutManifest, RegistryError> {
        self.check_writable()?;
        let manifest = Manifest::parse(&body, content_type)?;
        if pushed && manifest.kind == ManifestKind::Schema1 {
            return Err(berth_oci::OciError::InvalidManifest(
                "schema 1 manifests are deprecated and can no longer be pushed".into(),
            )
            .into());
        }
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => berth_oci::Algorithm::Sha256,
        };
        let mut digester = Digester::new(algorithm);
        digester.update(&body);
        let digest = digester.finish();
        if let Reference::Digest(expected) = reference {
            if expected != &digest {
                return Err(RegistryError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        // Every blob this manifest makes referenced is claimed (touched, then checked and
        // restored from the online collector's trash if needed) before the links are written.
        self.check_reference_count(&manifest)?;
        if pushed {
            self.check_references(repo, &manifest).await?;
        } else {
            stream::iter(distinct(manifest.blob_references()))
                .map(|blob| async move {
                    self.claim_blob(&blob).await?;
                    Ok::<(), RegistryError>(())
                })
                .buffer_unordered(REFERENCE_CHECKS_IN_FLIGHT)
                .try_collect::<()>()
                .await?;
        }

        let d = self.driver();
        self.touch_blob(&digest).await?;
        if self.blob_size(&digest).await?.is_none() {
            d.put_content(&paths::blob_data(&digest), body.clone())
                .await?;
        }
        // From the revision link to the tag's current link, a delete in this repository
        // waits: it would otherwise remove the revision under a tag written a moment later.
        let _links = self.repo_locks.write_links(repo).await;
        links::write(d, &paths::revision_link(repo, &digest), &digest).await?;
        self.catalog_cache.note(repo);
        self.index_repository(repo).await?;
        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        if let Some(subject) = &subject {
            links::write(d, &paths::referrer_link(repo, subject, &digest), &digest).await?;
        }
        if let Reference::Tag(tag) = reference {
            links::write(d, &paths::tag_index_link(repo, tag, &digest), &digest).await?;
            links::write(d, &paths::tag_current_link(repo, tag), &digest).await?;
        }
        self.resolve_cache.forget(repo);
        let media_type = manifest.media_type;
        self.manifest_cache.put(
            digest.clone(),
            CachedManifest {
                body,
                media_type: media_type.clone(),
            },
        );
        Ok(PutManifest {
            digest,
            subject,
            media_type,
        })
    }

    /// Refuses a manifest with more references than the limit, before any is looked up.
    fn check_reference_count(&self, manifest: &Manifest) -> Result<(), RegistryError> {
        let count = manifest.blob_references().len() + manifest.manifests.len();
        let limit = self.max_references.load(Ordering::Relaxed);
        if count > limit {
            return Err(berth_oci::OciError::InvalidManifest(format!(
                "the manifest references {count} blobs and manifests; at most {limit} are accepted (limits.manifests.maxreferences)"
            ))
            .into());
        }
        Ok(())
    }

    /// Blobs must be linked in the repository; child manifests of an index must be revisions.
    /// Each distinct digest is checked once, several at a time (each check is a storage
    /// round trip: file reads here, requests on an object store).
    async fn check_references(
        &self,
        repo: &RepoName,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        stream::iter(distinct(manifest.blob_references()))
            .map(|blob| async move {
                if !self.blob_linked(repo, &blob).await? || self.claim_blob(&blob).await?.is_none()
                {
                    return Err(RegistryError::ManifestBlobUnknown(blob));
                }
                Ok(())
            })
            .buffer_unordered(REFERENCE_CHECKS_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        stream::iter(distinct(manifest.manifests.iter().map(|c| &c.digest)))
            .map(|child| async move {
                let link = links::read(self.driver(), &paths::revision_link(repo, &child)).await?;
                if link.as_ref() != Some(&child) || self.claim_blob(&child).await?.is_none() {
                    return Err(RegistryError::ManifestChildUnknown(child));
                }
                Ok(())
            })
            .buffer_unordered(REFERENCE_CHECKS_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    /// Every manifest revision `repo` holds (tagged or not), by digest; none for a repository
    /// that does not exist. The web UI lists them before deleting a whole repository.
    pub async fn manifest_revisions(&self, repo: &RepoName) -> Result<Vec<Digest>, RegistryError> {
        self.list_digests(&paths::revisions_dir(repo)).await
    }

    /// Deletes a tag (by tag) or a manifest revision with every tag pointing at it (by digest).
    ///
    /// Manifest and tag writes in the same repository wait meanwhile ([`crate::repo_lock`]):
    /// a tag written concurrently lands either before the delete (and goes with it if it
    /// points at the deleted manifest) or after it, never pointing at a removed revision.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        self.check_deletable()?;
        let _links = self.repo_locks.delete_links(repo).await;
        let d = self.driver();
        match reference {
            Reference::Tag(tag) => {
                if links::read(d, &paths::tag_current_link(repo, tag))
                    .await?
                    .is_none()
                {
                    return Err(RegistryError::ManifestUnknown(tag.to_string()));
                }
                self.remove_tag(repo, tag).await?;
            }
            Reference::Digest(digest) => {
                let digest = self
                    .resolve_manifest(repo, reference)
                    .await
                    .map_err(|_| RegistryError::ManifestUnknown(digest.to_string()))?;
                for tag in self.tags_pointing_at(repo, &digest).await? {
                    self.remove_tag(repo, &tag).await?;
                }
                if let Ok(cached) = self.load_manifest(&digest).await {
                    if let Some(subject) = Manifest::parse(&cached.body, Some(&cached.media_type))
                        .ok()
                        .and_then(|m| m.subject)
                    {
                        let link = paths::referrer_link(repo, &subject.digest, &digest);
                        links::remove(d, link.trim_end_matches("/link")).await?;
                    }
                }
                let link = paths::revision_link(repo, &digest);
                links::remove(d, link.trim_end_matches("/link")).await?;
                self.resolve_cache.forget(repo);
            }
        }
        Ok(())
    }
}
