//! Berth's own storage as a source and a target (`local:REPO[:TAG]` with `--config`), through
//! the registry core's own read and write paths (`berth_registry::Registry`), so `berth copy`
//! works offline, without a running server, and every blob is verified and published as a
//! push would be. `berth serve` uses the same target for the `sync:` section.

use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Descriptor, Digest, Reference, RepoName};
use berth_registry::{Registry, RegistryError};
use futures_util::TryStreamExt;

use crate::endpoint::{check_manifest, ManifestBlob, Source, Target};
use crate::verify::{is_content_error, BlobStream};
use crate::Failure;

/// A repository of the local storage and a tag or digest in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRef {
    /// The repository.
    pub repo: RepoName,
    /// The tag or digest; a target without one stores the image by digest only.
    pub reference: Option<Reference>,
}

fn source_error(e: RegistryError) -> Failure {
    Failure::Source(format!("local storage: {e}"))
}

fn target_error(e: RegistryError) -> Failure {
    Failure::Target(format!("local storage: {e}"))
}

/// Images read from the local storage.
pub struct LocalSource {
    registry: Arc<Registry>,
    image: LocalRef,
}

impl LocalSource {
    /// `image` in `registry`.
    pub fn new(registry: Arc<Registry>, image: LocalRef) -> LocalSource {
        LocalSource { registry, image }
    }

    async fn read(
        &self,
        reference: &Reference,
        expected: Option<&Descriptor>,
    ) -> crate::Result<ManifestBlob> {
        let stored = self
            .registry
            .get_manifest(&self.image.repo, reference)
            .await
            .map_err(source_error)?;
        check_manifest(
            stored.body,
            Some(stored.media_type),
            Some(&stored.digest),
            expected.map(|d| d.size),
        )
    }
}

#[async_trait]
impl Source for LocalSource {
    async fn root(&self) -> crate::Result<ManifestBlob> {
        let reference = self.image.reference.clone().ok_or_else(|| {
            Failure::Usage("name the image to copy: local:REPO:TAG or local:REPO@DIGEST".to_owned())
        })?;
        self.read(&reference, None).await
    }

    async fn manifest(&self, descriptor: &Descriptor) -> crate::Result<ManifestBlob> {
        self.read(
            &Reference::Digest(descriptor.digest.clone()),
            Some(descriptor),
        )
        .await
    }

    async fn blob(&self, descriptor: &Descriptor) -> crate::Result<BlobStream> {
        // Only blobs the repository may serve, as over the API.
        self.registry
            .stat_blob(&self.image.repo, &descriptor.digest)
            .await
            .map_err(source_error)?;
        let stream = self
            .registry
            .read_blob(&descriptor.digest, 0, None)
            .await
            .map_err(source_error)?;
        Ok(Box::pin(stream.map_err(std::io::Error::other)))
    }

    async fn referrers(&self, digest: &Digest) -> crate::Result<Vec<Descriptor>> {
        self.registry
            .referrers(&self.image.repo, digest, None)
            .await
            .map_err(source_error)
    }
}

/// Images written into the local storage.
pub struct LocalTarget {
    registry: Arc<Registry>,
    image: LocalRef,
}

impl LocalTarget {
    /// `image` in `registry`.
    pub fn new(registry: Arc<Registry>, image: LocalRef) -> LocalTarget {
        LocalTarget { registry, image }
    }

    async fn put(&self, manifest: &ManifestBlob, reference: &Reference) -> crate::Result<()> {
        let stored = self
            .registry
            .put_manifest(
                &self.image.repo,
                reference,
                Some(&manifest.media_type),
                manifest.body.clone(),
            )
            .await
            .map_err(target_error)?;
        if stored.digest != manifest.digest {
            return Err(Failure::Target(format!(
                "stored manifest {} as {}",
                manifest.digest, stored.digest
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Target for LocalTarget {
    async fn has_blob(&self, descriptor: &Descriptor) -> crate::Result<bool> {
        match self
            .registry
            .stat_blob(&self.image.repo, &descriptor.digest)
            .await
        {
            Ok(_) => Ok(true),
            Err(RegistryError::BlobUnknown(_)) => Ok(false),
            Err(e) => Err(target_error(e)),
        }
    }

    async fn put_blob(&self, descriptor: &Descriptor, content: BlobStream) -> crate::Result<()> {
        // A content failure of the stream is remembered, so it is reported as refused
        // content (exit 5) rather than as failing storage.
        let refused = Arc::new(std::sync::Mutex::new(None::<String>));
        let seen = refused.clone();
        let content: BlobStream = Box::pin(content.inspect_err(move |e| {
            if let Some(m) = is_content_error(e) {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
            }
        }));
        match self
            .registry
            .put_blob(&self.image.repo, &descriptor.digest, content)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(m) => Err(Failure::Content(m)),
                None => Err(target_error(e)),
            },
        }
    }

    async fn has_manifest(&self, digest: &Digest) -> crate::Result<bool> {
        let reference = Reference::Digest(digest.clone());
        match self
            .registry
            .resolve_manifest(&self.image.repo, &reference)
            .await
        {
            Ok(_) => Ok(true),
            Err(RegistryError::ManifestUnknown(_)) => Ok(false),
            Err(e) => Err(target_error(e)),
        }
    }

    async fn tagged(&self) -> crate::Result<Option<Digest>> {
        let Some(reference) = &self.image.reference else {
            return Ok(None);
        };
        match self
            .registry
            .resolve_manifest(&self.image.repo, reference)
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(RegistryError::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(target_error(e)),
        }
    }

    async fn put_manifest(&self, manifest: &ManifestBlob, root: bool) -> crate::Result<()> {
        let reference = match (&self.image.reference, root) {
            (Some(Reference::Tag(t)), true) => Reference::Tag(t.clone()),
            _ => Reference::Digest(manifest.digest.clone()),
        };
        self.put(manifest, &reference).await
    }

    async fn put_referrer(&self, manifest: &ManifestBlob, _subject: &Digest) -> crate::Result<()> {
        // The registry core indexes referrers itself.
        self.put(manifest, &Reference::Digest(manifest.digest.clone()))
            .await
    }
}

/// Parses `REPO[:TAG]` or `REPO@DIGEST` (what follows `local:`).
pub fn parse(s: &str) -> crate::Result<LocalRef> {
    let bad = |why: String| Failure::Usage(format!("local:{s}: {why}"));
    let (name, reference) = if let Some((name, digest)) = s.split_once('@') {
        let digest: Digest = digest
            .parse()
            .map_err(|e: berth_oci::OciError| bad(e.to_string()))?;
        (name, Some(Reference::Digest(digest)))
    } else if let Some((name, tag)) = s.rsplit_once(':') {
        let tag = tag
            .parse()
            .map_err(|e: berth_oci::OciError| bad(e.to_string()))?;
        (name, Some(Reference::Tag(tag)))
    } else {
        (s, None)
    };
    let repo = name
        .parse()
        .map_err(|e: berth_oci::OciError| bad(e.to_string()))?;
    Ok(LocalRef { repo, reference })
}
