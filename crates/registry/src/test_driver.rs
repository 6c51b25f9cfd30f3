//! A driver for tests that records the path of every storage call, to prove what a request
//! does and does not touch.

use std::sync::Mutex;

use async_trait::async_trait;
use berth_storage::{
    ByteStream, FileInfo, FileWriter, InMemoryDriver, StorageDriver, StorageError,
};
use bytes::Bytes;

/// An in-memory driver that logs every path it is asked about.
#[derive(Default)]
pub(crate) struct Recording {
    pub inner: InMemoryDriver,
    paths: Mutex<Vec<String>>,
}

impl Recording {
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
