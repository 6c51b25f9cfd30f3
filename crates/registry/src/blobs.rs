//! Blobs: content-addressed data under `blobs/`, made visible to a repository by a link in its
//! `_layers`. A repository can only serve a blob it links, exactly as in registry:2.

use berth_oci::{Digest, RepoName};
use berth_storage::{paths, ByteStream, FileInfo};

use crate::{links, Registry, RegistryError};

impl Registry {
    /// Whether `repo` may serve `digest`: a layer link, or a manifest revision (clients may fetch
    /// manifests through the blob endpoint).
    pub(crate) async fn blob_linked(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let d = self.driver();
        if links::read(d, &paths::layer_link(repo, digest))
            .await?
            .as_ref()
            == Some(digest)
        {
            return Ok(true);
        }
        Ok(links::read(d, &paths::revision_link(repo, digest))
            .await?
            .as_ref()
            == Some(digest))
    }

    /// Size of the stored blob content under `blobs/`, whoever links it.
    pub(crate) async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        Ok(self.blob_info(digest).await?.map(|info| info.size))
    }

    /// Size and modification time of the stored blob content under `blobs/`.
    pub(crate) async fn blob_info(
        &self,
        digest: &Digest,
    ) -> Result<Option<FileInfo>, RegistryError> {
        match self.driver().stat(&paths::blob_data(digest)).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The size of a blob that `repo` may serve, or `BlobUnknown`.
    ///
    /// This answers the HEAD a client sends before deciding not to upload a blob it pushes, so
    /// it is a reuse: the blob is touched for the online collector (best effort: a pull must
    /// not fail on a marker) and restored from its trash if needed.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64, RegistryError> {
        let cached = self.blob_size_cache.get(repo, digest);
        let read_at = std::time::Instant::now();
        if cached.is_none() && !self.blob_linked(repo, digest).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        // A reuse, even when the size comes from the cache.
        if !self.read_only() {
            if let Err(e) = self.touch_blob(digest).await {
                tracing::warn!(%digest, error = %e, "could not record blob use for garbage collection");
            }
        }
        if let Some(size) = cached {
            return Ok(size);
        }
        let size = self
            .present_blob(digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        self.blob_size_cache.put(repo, digest, &size, read_at);
        Ok(size)
    }

    /// Streams `len` bytes (or the rest) of a blob from `offset`. Callers check the range
    /// against [`Registry::stat_blob`] first.
    pub async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, RegistryError> {
        let path = paths::blob_data(digest);
        self.open_stored(digest, || self.driver().reader(&path, offset, len))
            .await
    }

    /// The blob's file opened for `sendfile(2)`, when the storage keeps blobs as local files
    /// ([`berth_storage::StorageDriver::open_local`]); `None` elsewhere. Callers check the
    /// blob with [`Registry::stat_blob`] first, as for [`Registry::read_blob`].
    pub async fn open_blob_file(
        &self,
        digest: &Digest,
    ) -> Result<Option<berth_storage::LocalFile>, RegistryError> {
        let path = paths::blob_data(digest);
        self.open_stored(digest, || self.driver().open_local(&path))
            .await
    }

    /// Opens a stat-ed blob with `open`; a blob the online collector trashed between the stat
    /// and the open is taken back and opened again.
    async fn open_stored<T, F, Fut>(&self, digest: &Digest, open: F) -> Result<T, RegistryError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, berth_storage::StorageError>>,
    {
        match open().await {
            Ok(opened) => return Ok(opened),
            Err(e) if !e.is_not_found() => return Err(e.into()),
            Err(_) => {}
        }
        if self.restore_from_trash(digest).await?.is_none() {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        open().await.map_err(|e| {
            if e.is_not_found() {
                RegistryError::BlobUnknown(digest.clone())
            } else {
                e.into()
            }
        })
    }

    /// A URL to redirect blob downloads to, when the storage driver offers one.
    pub async fn blob_redirect_url(
        &self,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        Ok(self
            .driver()
            .redirect_url(&paths::blob_data(digest))
            .await?)
    }

    /// Unlinks a blob from a repository, as registry:2 does; the content itself is only removed
    /// by garbage collection, since other repositories may link it.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), RegistryError> {
        self.check_deletable()?;
        let link = paths::layer_link(repo, digest);
        if links::read(self.driver(), &link).await?.as_ref() != Some(digest) {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        // Remove the link's directory, as registry:2 does, so no empty digest dir is left behind.
        let dir = link.trim_end_matches("/link");
        links::remove(self.driver(), dir).await?;
        self.blob_size_cache.forget(repo);
        Ok(())
    }

    /// Cross-repository mount: links `digest` into `to` when `from` links it, or, when no
    /// `from` is given, when the registry already stores it. Returns the size when mounted,
    /// `None` when the client has to upload instead.
    pub async fn mount_blob(
        &self,
        from: Option<&RepoName>,
        to: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        self.check_writable()?;
        if let Some(from) = from {
            if !self.blob_linked(from, digest).await? {
                return Ok(None);
            }
        }
        // Touch, then check (restoring from the trash): the online collector's contract.
        let Some(size) = self.claim_blob(digest).await? else {
            return Ok(None);
        };
        self.link_blob(to, digest).await?;
        Ok(Some(size))
    }

    /// Makes `digest` servable from `repo`.
    pub(crate) async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        links::write(self.driver(), &paths::layer_link(repo, digest), digest).await?;
        Ok(())
    }
}
