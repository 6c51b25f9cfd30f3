//! The cache as a read store: [`ReadThrough`] implements the registry's
//! [`ReadStore`](berth_registry::read::ReadStore) for one resolved route, as a decorator over the
//! registry (local first, the upstream on a miss or after a tag's TTL, stale-if-error), so the
//! API serves cached and private repositories with the same handlers.

use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Descriptor, Digest, Reference, RepoName};
use berth_registry::manifests::StoredManifest;
use berth_registry::read::{Blob, RangeStream, ReadError, ReadStore};
use berth_registry::tags::{paginate, Page};
use berth_registry::BodyStream;

use crate::route::Route;
use crate::{BlobSource, Download, Proxy};

/// The pull-through cache for the repository of one route. Every read is of the route's
/// repository (`route.local`, the name the dispatcher resolved the request to).
pub struct ReadThrough {
    proxy: Arc<Proxy>,
    route: Route,
}

impl Proxy {
    /// The read store of a request that resolved to `route`.
    pub fn read_through(self: &Arc<Self>, route: Route) -> ReadThrough {
        ReadThrough {
            proxy: self.clone(),
            route,
        }
    }
}

impl ReadThrough {
    /// The route this store reads through.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Only the route's repository is read here: the caller authorized `repo`, and what is read
    /// and fetched is the route's. A mismatch is refused in release builds too (a debug-only
    /// assertion would read another name than the one authorized).
    fn check(&self, repo: &RepoName) -> Result<(), ReadError> {
        if repo == &self.route.local {
            return Ok(());
        }
        tracing::error!(%repo, route = %self.route.local, "read through another repository's route refused");
        Err(ReadError::Registry(Arc::new(
            berth_registry::RegistryError::NameUnknown(repo.to_string()),
        )))
    }
}

/// A download in progress, read by range as it arrives.
struct Arriving(Arc<Download>);

impl RangeStream for Arriving {
    fn stream(&self, offset: u64, len: Option<u64>) -> BodyStream {
        self.0.stream(offset, len)
    }
}

#[async_trait]
impl ReadStore for ReadThrough {
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest, ReadError> {
        self.check(repo)?;
        self.proxy.manifest(&self.route, reference).await
    }

    async fn blob(&self, repo: &RepoName, digest: &Digest, head: bool) -> Result<Blob, ReadError> {
        self.check(repo)?;
        let registry = self.proxy.registry();
        Ok(match self.proxy.blob(&self.route, digest, head).await? {
            BlobSource::Local(Some(size)) => registry.stored_blob(digest, size, head).await?,
            // Stored by a download that finished meanwhile: not stat-ed yet.
            BlobSource::Local(None) => {
                ReadStore::blob(registry.as_ref(), &self.route.local, digest, head).await?
            }
            BlobSource::Remote(size) => Blob::Unfetched { size },
            BlobSource::Fetching(size, download) => Blob::Arriving {
                size,
                bytes: Box::new(Arriving(download)),
            },
        })
    }

    async fn read_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<BodyStream, ReadError> {
        self.check(repo)?;
        let registry = self.proxy.registry().as_ref();
        ReadStore::read_blob(registry, &self.route.local, digest, offset, len).await
    }

    async fn blob_file(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<berth_storage::LocalFile>, ReadError> {
        self.check(repo)?;
        let registry = self.proxy.registry().as_ref();
        ReadStore::blob_file(registry, &self.route.local, digest).await
    }

    /// The upstream's tags (the cached ones when it fails), as registry:2 lists them in proxy
    /// mode.
    async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, ReadError> {
        self.check(repo)?;
        Ok(paginate(self.proxy.tags(&self.route).await?, n, last))
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, ReadError> {
        self.check(repo)?;
        self.proxy
            .referrers(&self.route, subject, artifact_type)
            .await
    }
}
