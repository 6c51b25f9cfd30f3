//! The registry core: what a registry *means*, independent of HTTP. Handlers call the domain
//! stores here ([`blobs`], [`uploads`], [`manifests`], [`tags`], [`referrers`], [`catalog`]);
//! the stores call one [`StorageDriver`]. All state lives in storage in registry:2's layout, so
//! several Berth processes can share it and registry:2 can read it; the only in-process state
//! is caches and upload hash states that can always be rebuilt from storage.

pub mod blobs;
pub mod catalog;
mod error;
pub mod gc;
#[cfg(test)]
mod gc_tests;
mod links;
mod manifest_cache;
pub mod manifests;
pub mod purge;
pub mod referrers;
pub mod tags;
pub mod uploads;

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
    uploads: uploads::UploadStates,
    manifest_cache: manifest_cache::ManifestCache,
    catalog_cache: catalog::CatalogCache,
}

impl Registry {
    /// A registry over `driver`.
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions) -> Arc<Self> {
        Arc::new(Registry {
            driver,
            delete_enabled: options.delete_enabled,
            read_only: AtomicBool::new(options.read_only),
            uploads: uploads::UploadStates::default(),
            manifest_cache: manifest_cache::ManifestCache::new(64 * 1024 * 1024),
            catalog_cache: catalog::CatalogCache::default(),
        })
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

    /// Refuses a write when in read-only mode.
    fn check_writable(&self) -> Result<(), RegistryError> {
        if self.read_only.load(Ordering::Relaxed) {
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
