//! A driver for tests that records the path of every storage call and counts content reads,
//! to prove what a request does and does not touch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use berth_storage::{
    ByteStream, FileInfo, FileWriter, InMemoryDriver, StorageDriver, StorageError,
};
use bytes::Bytes;

/// An in-memory driver that logs every path it is asked about and counts the streams of stored
/// content it opens.
#[derive(Default)]
pub(crate) struct Recording {
    pub inner: InMemoryDriver,
    paths: Mutex<Vec<String>>,
    readers: AtomicUsize,
    /// The scratch epoch it reports (a boot id).
    epoch: Option<&'static str>,
}

impl Recording {
    /// A recording driver over `inner` (a store other drivers may share) in scratch `epoch`.
    pub fn on(inner: InMemoryDriver, epoch: Option<&'static str>) -> Self {
        Recording {
            inner,
            epoch,
            ..Recording::default()
        }
    }

    /// How many streams of stored content were opened (`reader`), not counting small reads.
    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    fn log(&self, path: &str) {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.to_owned());
    }

    /// The paths asked about since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.paths.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl StorageDriver for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn scratch_epoch(&self) -> Option<&str> {
        self.epoch
    }
    async fn get_content(&self, p: &str) -> Result<Bytes, StorageError> {
        self.log(p);
        self.inner.get_content(p).await
    }
    async fn put_content(&self, p: &str, c: Bytes) -> Result<(), StorageError> {
        self.log(p);
        self.inner.put_content(p, c).await
    }
    async fn put_content_if_absent(&self, p: &str, c: Bytes) -> Result<bool, StorageError> {
        self.log(p);
        self.inner.put_content_if_absent(p, c).await
    }
    async fn reader(
        &self,
        p: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.log(p);
        self.readers.fetch_add(1, Ordering::Relaxed);
        self.inner.reader(p, offset, len).await
    }
    async fn writer(&self, p: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        self.log(p);
        self.inner.writer(p).await
    }
    async fn stat(&self, p: &str) -> Result<FileInfo, StorageError> {
        self.log(p);
        self.inner.stat(p).await
    }
    async fn list(&self, p: &str) -> Result<Vec<String>, StorageError> {
        self.log(p);
        self.inner.list(p).await
    }
    async fn move_file(&self, a: &str, b: &str) -> Result<(), StorageError> {
        self.log(a);
        self.log(b);
        self.inner.move_file(a, b).await
    }
    async fn delete(&self, p: &str) -> Result<(), StorageError> {
        self.log(p);
        self.inner.delete(p).await
    }
}
