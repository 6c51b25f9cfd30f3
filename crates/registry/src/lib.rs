//! The registry core: what a registry *means*, independent of HTTP. Handlers call the domain
//! stores here ([`blobs`], [`uploads`], [`manifests`], [`tags`], [`referrers`], [`catalog`]);
//! the stores call one [`StorageDriver`]. All state lives in storage in registry:2's layout, so
//! several Berth processes can share it and registry:2 can read it; the only in-process state
//! is caches and upload hash states that can always be rebuilt from storage.
//!
//! The read endpoints see the registry through [`read::ReadStore`], which the pull-through
//! cache implements too, as a decorator over the registry.
//!
//! [`layout`] writes and reads OCI image layouts (`berth export`, `berth import`).

pub mod blobs;
pub mod cache;
#[cfg(test)]
mod cache_tests;
pub mod catalog;
mod catalog_index;
pub mod cluster_read_only;
#[cfg(test)]
mod delete_race_tests;
mod error;
pub mod gc;
#[cfg(test)]
mod gc_tests;
pub mod layout;
pub mod lease;
mod links;
mod manifest_cache;
pub mod manifests;
pub mod purge;
pub mod read;
pub mod referrers;
mod repo_lock;
mod resolve_cache;
pub mod retention;
#[cfg(test)]
mod retention_tests;
pub mod tags;
#[cfg(test)]
mod test_driver;
mod upload_state;
pub mod uploads;
#[cfg(test)]
mod uploads_file_tests;
#[cfg(test)]
mod uploads_tests;
pub mod usage;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_storage::StorageDriver;
use bytes::Bytes;
pub use error::RegistryError;
use futures_util::Stream;

/// A request body as the core sees it: chunks of bytes, or the I/O error that cut it short.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Options that change what the registry allows.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `storage.delete.enabled`: allow deleting blobs, manifests and tags.
    pub delete_enabled: bool,
    /// `storage.maintenance.readonly.enabled`: refuse every write.
    pub read_only: bool,
}

/// The registry: shared by every request handler.
pub struct Registry {
    driver: Arc<dyn StorageDriver>,
    delete_enabled: bool,
    read_only: AtomicBool,
    /// What the cluster-wide read-only flag object said when last polled.
    cluster_read_only: AtomicBool,
    /// Why new upload data is refused (the disk watermark), if it is.
    space_refusal: std::sync::RwLock<Option<String>>,
    uploads: uploads::UploadStates,
    manifest_cache: manifest_cache::ManifestCache,
    catalog_cache: catalog::CatalogCache,
    catalog_index: catalog_index::CatalogIndex,
    resolve_cache: resolve_cache::ResolveCache,
    blob_size_cache: resolve_cache::BlobSizeCache,
    gc_state: gc::GcState,
    /// How many blobs and child manifests one manifest may reference (`limits.manifests`).
    max_references: std::sync::atomic::AtomicUsize,
    usage_cache: usage::UsageCache,
    /// Orders manifest deletes against manifest and tag writes in this process.
    repo_locks: repo_lock::RepoLocks,
}

/// The default of [`Registry::set_max_references`]: far above real images (Docker caps an
/// image at 127 layers) and indexes, far below what fits in a 4 MiB manifest (~27,000).
pub const DEFAULT_MAX_REFERENCES: usize = 1000;

impl Registry {
    /// A registry over `driver`.
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions) -> Arc<Self> {
        Arc::new(Registry {
            driver,
            delete_enabled: options.delete_enabled,
            read_only: AtomicBool::new(options.read_only),
            cluster_read_only: AtomicBool::new(false),
            space_refusal: std::sync::RwLock::new(None),
            uploads: uploads::UploadStates::default(),
            manifest_cache: manifest_cache::ManifestCache::new(64 * 1024 * 1024),
            catalog_cache: catalog::CatalogCache::default(),
            catalog_index: catalog_index::CatalogIndex::default(),
            resolve_cache: resolve_cache::ResolveCache::default(),
            blob_size_cache: resolve_cache::BlobSizeCache::default(),
            gc_state: gc::GcState::default(),
            max_references: DEFAULT_MAX_REFERENCES.into(),
            usage_cache: usage::UsageCache::default(),
            repo_locks: repo_lock::RepoLocks::default(),
        })
    }

    /// How long a successful tag or digest resolution, or a blob's size, may be reused (0, the
    /// default: never). On object stores it saves two round trips per manifest GET and per
    /// blob HEAD; a change made by another process sharing the storage is seen within this
    /// time ([`resolve_cache`]).
    pub fn set_resolve_cache_ttl(&self, ttl: std::time::Duration) {
        self.resolve_cache.set_ttl(ttl);
        self.blob_size_cache.set_ttl(ttl);
    }

    /// Caps how many blobs and child manifests one manifest may reference, pushed or fetched
    /// by the pull-through cache: each reference costs storage lookups on every PUT.
    pub fn set_max_references(&self, limit: usize) {
        self.max_references.store(limit.max(1), Ordering::Relaxed);
    }

    /// Whether storage answers: lists the registry root, like registry:2's storage driver
    /// health check (a root that does not exist yet is healthy: nothing was pushed).
    pub async fn check_storage(&self) -> Result<(), RegistryError> {
        match self.driver.list(berth_storage::paths::ROOT).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The storage driver underneath.
    pub fn driver(&self) -> &dyn StorageDriver {
        self.driver.as_ref()
    }

    /// Whether deletes are allowed.
    pub fn delete_enabled(&self) -> bool {
        self.delete_enabled
    }

    /// Switches read-only mode (for maintenance, without a restart).
    pub fn set_read_only(&self, on: bool) {
        self.read_only.store(on, Ordering::Relaxed);
    }

    /// Whether read-only mode is on: by this node's configuration or cluster-wide
    /// ([`cluster_read_only`]).
    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed) || self.cluster_read_only.load(Ordering::Relaxed)
    }

    /// Refuses new upload data with `reason` (the disk is above its watermark), or accepts it
    /// again with `None`. Deletes, manifests and finishing an upload stay allowed: they free
    /// space or need next to none, and let pushes already under way complete.
    pub fn set_space_refusal(&self, reason: Option<String>) {
        *self
            .space_refusal
            .write()
            .unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// Refuses new upload data while the disk is above its watermark.
    fn check_space(&self) -> Result<(), RegistryError> {
        let refusal = self.space_refusal.read().unwrap_or_else(|e| e.into_inner());
        match refusal.as_ref() {
            Some(reason) => Err(RegistryError::SpaceLow(reason.clone())),
            None => Ok(()),
        }
    }

    /// Refuses a write when in read-only mode.
    fn check_writable(&self) -> Result<(), RegistryError> {
        if self.read_only() {
            return Err(RegistryError::ReadOnly);
        }
        Ok(())
    }

    /// Refuses a delete when deletes are disabled.
    fn check_deletable(&self) -> Result<(), RegistryError> {
        if !self.delete_enabled {
            return Err(RegistryError::DeleteDisabled);
        }
        self.check_writable()
    }
}
