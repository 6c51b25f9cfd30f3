//! The storage driver contract. Paths are absolute, `/`-separated, and built only by
//! [`crate::paths`]; drivers reject anything else.

use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::StorageError;

/// A stream of file content. Chunks are bounded in size, so memory stays flat for any blob.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

/// What `stat` knows about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification time, used by upload purging and retention.
    pub modified: SystemTime,
    /// Whether the path is a directory (or, on object stores, a common prefix).
    pub is_dir: bool,
}

/// The one interface every storage backend implements.
///
/// Contract (checked by [`crate::conformance`]):
/// - `put_content` and `move_file` never expose partial content: a reader sees the old content,
///   nothing, or the complete new content.
/// - A [`FileWriter`] writes to its own path; content becomes durable at `commit`. Readers of
///   that path may see partial content before then, so writers only ever target private paths
///   (upload sessions) and publish with `move_file`.
/// - `list` returns child names in no particular order; `delete` removes a whole subtree.
#[async_trait]
pub trait StorageDriver: Send + Sync + 'static {
    /// A short name for logs and metrics (`filesystem`, `inmemory`, `s3`).
    fn name(&self) -> &'static str;

    /// Reads a whole small file (links, manifests, upload metadata).
    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError>;

    /// Writes a whole small file, replacing any previous content without exposing a partial one.
    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError>;

    /// Streams the file from `offset`, at most `len` bytes when given.
    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError>;

    /// Opens a writer on `path`; with `append`, it continues after the existing content
    /// (resumable uploads), otherwise it starts empty.
    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>, StorageError>;

    /// Size, modification time and kind of a path.
    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError>;

    /// Names (not paths) of the direct children of a directory, in no particular order.
    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError>;

    /// Moves a file; afterwards `dst` holds the complete content and `src` is gone.
    async fn move_file(&self, src: &str, dst: &str) -> Result<(), StorageError>;

    /// Deletes a file or a whole directory tree. Deleting a missing path is `NotFound`.
    async fn delete(&self, path: &str) -> Result<(), StorageError>;

    /// Removes `path` if it is an empty directory; returns whether it did. A directory with
    /// content (even content that arrived a moment ago) is never touched, so this is safe to
    /// race with a `move_file` into it. Backends whose directories are implicit (object stores,
    /// in-memory) have nothing to remove and keep this default.
    async fn remove_empty_dir(&self, _path: &str) -> Result<bool, StorageError> {
        Ok(false)
    }

    /// A URL a client may fetch the content from directly (a 307 redirect), if the backend offers
    /// one. The filesystem and in-memory drivers do not.
    async fn redirect_url(&self, _path: &str) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
}

/// A streaming writer returned by [`StorageDriver::writer`].
#[async_trait]
pub trait FileWriter: Send {
    /// Appends data. Implementations may buffer; memory use stays bounded.
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;

    /// Bytes in the file so far (existing content included when appending).
    fn size(&self) -> u64;

    /// Flushes and closes without the durability barrier: the upload can be resumed later.
    async fn close(self: Box<Self>) -> Result<(), StorageError>;

    /// Flushes and makes the content durable (fsync on a filesystem).
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;

    /// Abandons the write and removes the file.
    async fn cancel(self: Box<Self>) -> Result<(), StorageError>;

    /// Closes the writer leaving the file as it was when opened: what this writer appended
    /// is discarded. An upload chunk that fails its checks (a `Content-Range` whose length
    /// the body does not match) is rolled back this way, never left half-appended.
    async fn rollback(self: Box<Self>) -> Result<(), StorageError>;
}

/// Rejects paths that are not absolute, have empty components, or try `.`/`..`.
pub(crate) fn check_path(path: &str) -> Result<(), StorageError> {
    let bad = !path.starts_with('/')
        || path.contains('\0')
        || path[1..]
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad && path != "/" {
        return Err(StorageError::InvalidPath(path.to_owned()));
    }
    Ok(())
}
