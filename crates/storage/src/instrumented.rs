//! A driver decorator that times every storage action into Distribution's
//! `registry_storage_action_seconds{driver,action}` histogram (action names as registry:2's
//! `base` driver reports them: `GetContent`, `PutContent`, `Reader`, `Writer`, `Stat`, `List`,
//! `Move`, `Delete`, `RedirectURL`; Berth adds `RemoveEmptyDir`, `Copy`, `Compose`). `Reader` and `Writer` time
//! opening the stream, as in registry:2, not the transfer.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{register_histogram_vec, HistogramVec};

use futures_util::stream::BoxStream;

use crate::{ByteStream, FileInfo, FileWriter, StorageDriver, StorageError, UploadFile, WalkEntry};

#[allow(clippy::expect_used)] // Registration only fails on a duplicate name: a programming error.
static ACTION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "registry_storage_action_seconds",
        "The number of seconds that the storage action takes",
        &["driver", "action"]
    )
    .expect("register registry_storage_action_seconds")
});

/// Wraps a driver and records how long each call takes.
pub struct Instrumented {
    inner: Arc<dyn StorageDriver>,
}

impl Instrumented {
    /// Instruments `inner`.
    pub fn new(inner: Arc<dyn StorageDriver>) -> Instrumented {
        Instrumented { inner }
    }

    async fn timed<T>(&self, action: &str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.observe(action, started);
        result
    }

    /// Records one `action` that began at `started`.
    fn observe(&self, action: &str, started: Instant) {
        ACTION_SECONDS
            .with_label_values(&[self.inner.name(), action])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl StorageDriver for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        self.timed("GetContent", self.inner.get_content(path)).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.timed("PutContent", self.inner.put_content(path, content))
            .await
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        self.timed(
            "PutContent",
            self.inner.put_content_if_absent(path, content),
        )
        .await
    }

    fn create_is_atomic(&self) -> bool {
        self.inner.create_is_atomic()
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.timed("Reader", self.inner.reader(path, offset, len))
            .await
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        self.timed("Writer", self.inner.writer(path)).await
    }

    /// Timed as a `Reader` where it opens a file; a backend without local files answers at
    /// once, and that is no storage action to count.
    async fn open_local(&self, path: &str) -> Result<Option<crate::LocalFile>, StorageError> {
        let started = Instant::now();
        let opened = self.inner.open_local(path).await;
        if !matches!(opened, Ok(None)) {
            self.observe("Reader", started);
        }
        opened
    }

    async fn scratch_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        self.timed("Writer", self.inner.scratch_writer(path)).await
    }

    async fn put_scratch_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.timed("PutContent", self.inner.put_scratch_content(path, content))
            .await
    }

    fn scratch_epoch(&self) -> Option<&str> {
        self.inner.scratch_epoch()
    }

    /// Not timed: on object stores it is no storage call at all, and on a filesystem most of
    /// its time is the wait for another request on the same session.
    async fn lock_upload_file(
        &self,
        path: &str,
    ) -> Result<Option<Box<dyn UploadFile>>, StorageError> {
        self.inner.lock_upload_file(path).await
    }

    fn walk<'a>(&'a self, path: &'a str) -> BoxStream<'a, Result<WalkEntry, StorageError>> {
        // A walk is a stream consumed at the caller's pace: there is no one call to time.
        self.inner.walk(path)
    }

    fn walk_is_flat(&self) -> bool {
        self.inner.walk_is_flat()
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<(), StorageError> {
        self.timed("Copy", self.inner.copy(src, dst)).await
    }

    async fn compose(&self, parts: &[String], dst: &str) -> Result<(), StorageError> {
        self.timed("Compose", self.inner.compose(parts, dst)).await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        self.timed("Stat", self.inner.stat(path)).await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        self.timed("List", self.inner.list(path)).await
    }

    async fn move_file(&self, src: &str, dst: &str) -> Result<(), StorageError> {
        self.timed("Move", self.inner.move_file(src, dst)).await
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.timed("Delete", self.inner.delete(path)).await
    }

    async fn remove_empty_dir(&self, path: &str) -> Result<bool, StorageError> {
        self.timed("RemoveEmptyDir", self.inner.remove_empty_dir(path))
            .await
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        self.timed("RedirectURL", self.inner.redirect_url(path))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Instrumented, ACTION_SECONDS};
    use crate::{conformance, InMemoryDriver};

    #[tokio::test]
    async fn forwards_every_call_and_times_it() {
        let driver = Instrumented::new(Arc::new(InMemoryDriver::new()));
        let count = |action: &str| {
            ACTION_SECONDS
                .with_label_values(&["inmemory", action])
                .get_sample_count()
        };
        let before = (count("PutContent"), count("Stat"));
        // The whole contract still holds through the decorator.
        conformance::run_all(&driver).await;
        assert!(count("PutContent") > before.0);
        assert!(count("Stat") > before.1);
    }
}
