//! The OCI 1.1 referrers API. A manifest PUT with a `subject` records a link under
//! `_manifests/referrers/<subject>/`; the index is built from those links, so it stays right
//! after deletes (deleting a referrer removes its link).

use berth_oci::{Descriptor, Digest, Manifest, RepoName};
use berth_storage::paths;

use crate::{links, Registry, RegistryError};

impl Registry {
    /// Descriptors of the manifests in `repo` whose subject is `subject`, filtered by
    /// `artifact_type` when given, sorted by digest so the answer is stable.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let d = self.driver();
        if d.stat(&paths::referrers_indexed_marker(repo))
            .await
            .is_err()
        {
            self.index_existing_referrers(repo).await?;
        }
        let dir = paths::referrers_dir(repo, subject);
        let mut found = Vec::new();
        for digest in self.list_digests(&dir).await? {
            // Skip links whose manifest revision is gone (deleted by another node mid-way).
            if links::read(d, &paths::revision_link(repo, &digest))
                .await?
                .as_ref()
                != Some(&digest)
            {
                continue;
            }
            let cached = match self.load_manifest(&digest).await {
                Ok(c) => c,
                Err(RegistryError::ManifestUnknown(_)) => continue,
                Err(e) => return Err(e),
            };
            let Some((descriptor, _)) = describe(digest, &cached.body, &cached.media_type) else {
                continue;
            };
            if artifact_type.is_none() || descriptor.artifact_type.as_deref() == artifact_type {
                found.push(descriptor);
            }
        }
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(found)
    }
}

/// A manifest as a referrers index lists it, with the subject it refers to; `None` when the
/// body does not parse. Read-through stores describe manifests they fetched but could not store
/// (read-only mode) the same way the index describes stored ones.
pub fn describe(
    digest: Digest,
    body: &[u8],
    media_type: &str,
) -> Option<(Descriptor, Option<Digest>)> {
    let manifest = Manifest::parse(body, Some(media_type)).ok()?;
    let descriptor = Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size: body.len() as u64,
        urls: Vec::new(),
        annotations: manifest.annotations.clone(),
        artifact_type: manifest.effective_artifact_type(),
    };
    Some((descriptor, manifest.subject.map(|s| s.digest)))
}

impl Registry {
    /// Adds referrer links for manifests stored before Berth maintained the index (a data
    /// directory written by registry:2), once per repository, then writes the marker.
    async fn index_existing_referrers(&self, repo: &RepoName) -> Result<(), RegistryError> {
        let d = self.driver();
        let revisions = self.list_digests(&paths::revisions_dir(repo)).await?;
        if revisions.is_empty() {
            // No manifests (or no repository): nothing to index, and nothing must be created.
            return Ok(());
        }
        for digest in revisions {
            let Ok(cached) = self.load_manifest(&digest).await else {
                continue;
            };
            let Ok(manifest) = Manifest::parse(&cached.body, Some(&cached.media_type)) else {
                continue;
            };
            if let Some(subject) = manifest.subject {
                let link = paths::referrer_link(repo, &subject.digest, &digest);
                links::write(d, &link, &digest).await?;
            }
        }
        d.put_content(
            &paths::referrers_indexed_marker(repo),
            bytes::Bytes::from_static(b"1"),
        )
        .await?;
        tracing::info!(repository = %repo, "referrers index built from existing manifests");
        Ok(())
    }
}
