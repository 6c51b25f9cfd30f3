//! The read side as the API serves it: one trait, [`ReadStore`], for manifests, blobs, tags and
//! referrers. The registry implements it over its own storage (here); the pull-through cache
//! (`berth-proxy`) implements it again as a decorator over the registry for one upstream route.
//! The dispatcher picks the store once per request, so no handler asks where content comes from
//! and every read endpoint (referrers included) works the same through the cache.
//!
//! One error type, [`ReadError`], covers both: the registry's own failures, and the failures of
//! the origin a read-through store fetches from (an upstream registry), so the API maps every
//! read failure to an OCI error in one place.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::{Descriptor, Digest, Reference, RepoName};
use futures_util::TryStreamExt;

use crate::manifests::StoredManifest;
use crate::tags::Page;
use crate::{BodyStream, Registry, RegistryError};

/// What was asked for, so a "not found at the origin" gets the matching OCI error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A manifest (by tag or digest).
    Manifest,
    /// A blob.
    Blob,
    /// A repository (tag list).
    Repository,
}

/// A failed read. From the registry alone only [`ReadError::Registry`]; a read-through store
/// adds its origin's failures, which a client only sees when nothing is stored to fall back on
/// (with a stored copy, the failure is logged and the copy served). `Clone`, because one
/// upstream fetch answers every client waiting for it (single flight).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The origin does not have it, or refuses access to it (Docker Hub answers 401 for
    /// repositories that do not exist).
    #[error("{what:?} not found upstream {host}: {detail}")]
    NotFound {
        /// Manifest, blob or repository.
        what: What,
        /// The origin's host (`docker.io`).
        host: String,
        /// What the origin answered.
        detail: String,
    },
    /// The origin rate-limits us (429) and nothing is stored.
    #[error("upstream {host} is rate limiting requests and the content is not cached")]
    TooManyRequests {
        /// The origin's host.
        host: String,
        /// The origin's `Retry-After`, passed on to the client.
        retry_after: Option<Duration>,
    },
    /// The origin failed (unreachable, timed out, 5xx, invalid content) and nothing is stored.
    #[error("upstream {host} failed and the content is not cached: {detail}")]
    Unavailable {
        /// The origin's host.
        host: String,
        /// What went wrong, for the log.
        detail: String,
    },
    /// The registry refused or failed (read-only, disk full, damaged content, storage down):
    /// kept whole, so the client gets the same answer with or without a cache in between.
    /// Shared, because one fetch answers every client waiting for it.
    #[error("{0}")]
    Registry(Arc<RegistryError>),
    /// A read-through store's own scratch files (download spools) failed; details are logged,
    /// not sent.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<RegistryError> for ReadError {
    fn from(e: RegistryError) -> Self {
        ReadError::Registry(Arc::new(e))
    }
}

/// The bytes of a blob that is still arriving, by range, as they arrive.
pub trait RangeStream: Send + Sync {
    /// The bytes `offset..offset+len` (or to the end when `len` is `None`).
    fn stream(&self, offset: u64, len: Option<u64>) -> BodyStream;
}

/// A blob found for a GET or HEAD, and how its bytes are reached.
pub enum Blob {
    /// In storage, `size` bytes, read by range with [`ReadStore::read_blob`].
    Stored {
        /// The blob's size.
        size: u64,
    },
    /// In storage, which offers this URL to send the client to instead (GET only).
    Redirect(String),
    /// Arriving from the origin now (one download shared by every client).
    Arriving {
        /// The size, when the origin announced it.
        size: Option<u64>,
        /// The bytes as they arrive.
        bytes: Box<dyn RangeStream>,
    },
    /// A HEAD the origin answered without a download: nothing to send but the size.
    Unfetched {
        /// The size, when the origin said.
        size: Option<u64>,
    },
}

/// What the read endpoints need of a store. `repo` is the repository actually read (the
/// dispatcher resolved it; a read-through store serves exactly its route's repository).
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// A manifest by tag or digest: its exact bytes, media type and digest.
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest, ReadError>;

    /// A blob for a GET (`head` false: a cold one is fetched) or a HEAD (a cold one is only
    /// asked about). A stored blob that `repo` does not link is `BlobUnknown`.
    async fn blob(&self, repo: &RepoName, digest: &Digest, head: bool) -> Result<Blob, ReadError>;

    /// `len` bytes (or the rest) of a [`Blob::Stored`] blob from `offset`; the caller checked
    /// the range against the size.
    async fn read_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<BodyStream, ReadError>;

    /// The local file of a [`Blob::Stored`] blob, for sending it with `sendfile(2)`; `None`
    /// when the storage keeps none (the default), and the caller reads with
    /// [`ReadStore::read_blob`].
    async fn blob_file(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
    ) -> Result<Option<berth_storage::LocalFile>, ReadError> {
        Ok(None)
    }

    /// One page of the sorted tag list: at most `n` tags after `last`.
    async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, ReadError>;

    /// Descriptors of the manifests whose subject is `subject`, sorted by digest, only those
    /// of `artifact_type` when given.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, ReadError>;
}

impl Registry {
    /// A stored blob of `size` bytes as a GET or HEAD serves it: the storage's redirect URL
    /// for a GET when the driver offers one, else read from storage.
    pub async fn stored_blob(
        &self,
        digest: &Digest,
        size: u64,
        head: bool,
    ) -> Result<Blob, RegistryError> {
        if !head {
            if let Some(url) = self.blob_redirect_url(digest).await? {
                return Ok(Blob::Redirect(url));
            }
        }
        Ok(Blob::Stored { size })
    }
}

/// The registry serves what it stores.
#[async_trait]
impl ReadStore for Registry {
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest, ReadError> {
        Ok(self.get_manifest(repo, reference).await?)
    }

    async fn blob(&self, repo: &RepoName, digest: &Digest, head: bool) -> Result<Blob, ReadError> {
        let size = self.stat_blob(repo, digest).await?;
        Ok(self.stored_blob(digest, size, head).await?)
    }

    async fn read_blob(
        &self,
        _repo: &RepoName,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<BodyStream, ReadError> {
        let stream = Registry::read_blob(self, digest, offset, len).await?;
        Ok(Box::pin(stream.map_err(std::io::Error::other)))
    }

    async fn blob_file(
        &self,
        _repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<berth_storage::LocalFile>, ReadError> {
        Ok(self.open_blob_file(digest).await?)
    }

    async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, ReadError> {
        Ok(self.list_tags(repo, n, last).await?)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, ReadError> {
        Ok(Registry::referrers(self, repo, subject, artifact_type).await?)
    }
}
