//! The storage driver contract. Paths are absolute, `/`-separated, and built only by
//! [`crate::paths`]; drivers reject anything else.

use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

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

/// One entry of a [`StorageDriver::walk`]: a file's path and what `stat` would say of it.
pub type WalkEntry = (String, FileInfo);

/// The one interface every storage backend implements, shaped so that an object store is one
/// more implementation rather than a fork (see `shared/design/storage.md`):
///
/// - `put_content`, a [`FileWriter`]'s `commit`, `copy`, `compose` and `move_file` never
///   expose partial content: a reader sees the old content, nothing, or the complete new one.
/// - A [`FileWriter`] writes a whole new object, invisible until `commit`; `cancel` (or a
///   crash) leaves nothing at its path. There is no append: resumable uploads are built above
///   the driver from immutable part objects (see `berth_registry`'s uploads).
/// - `list` returns child names in no particular order; `walk` returns every file under a
///   prefix, flat, with its size and modification time (one paginated listing on S3 instead
///   of a listing per directory level plus a HEAD per object).
/// - `delete` removes a file or a whole subtree (a prefix, on object stores).
///
/// Checked by [`crate::conformance`] against every backend.
#[async_trait]
pub trait StorageDriver: Send + Sync + 'static {
    /// A short name for logs and metrics (`filesystem`, `inmemory`, `s3`).
    fn name(&self) -> &'static str;

    /// Reads a whole small file (links, manifests, upload state).
    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError>;

    /// Writes a whole small file, replacing any previous content without exposing a partial one.
    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError>;

    /// Writes a whole small file only if nothing is at `path` yet; `false` when something
    /// was (and is left as it was). For leases and markers that must have one creator. Atomic
    /// wherever [`StorageDriver::create_is_atomic`] says so; elsewhere (an object store that
    /// ignores `If-None-Match`, as Garage does) two racing creators may both succeed, so
    /// nothing may depend on this for correctness there.
    async fn put_content_if_absent(&self, path: &str, content: Bytes)
        -> Result<bool, StorageError>;

    /// Whether [`StorageDriver::put_content_if_absent`] is atomic on this backend.
    fn create_is_atomic(&self) -> bool {
        true
    }

    /// Streams the file from `offset`, at most `len` bytes when given.
    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError>;

    /// Opens a streamed write of a whole new file at `path`, replacing any existing one at
    /// `commit`. Nothing of it is visible before then.
    async fn writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError>;

    /// Opens a streamed write of *scratch* data: like [`StorageDriver::writer`] (nothing
    /// visible before `commit`, a whole object after it), but the content need not be durable
    /// when `commit` returns. It lasts at least as long as [`StorageDriver::scratch_epoch`]
    /// stays the same, and becomes as durable as any write once `move_file` or `compose` has
    /// published it elsewhere. For an upload's chunks, which only the published blob needs to
    /// outlive a power cut. Backends whose every write is durable (object stores) keep the
    /// default, a plain writer.
    async fn scratch_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        self.writer(path).await
    }

    /// Writes a whole small file of scratch data: [`StorageDriver::put_content`] (never a
    /// partial file) without the durability, as for [`StorageDriver::scratch_writer`].
    async fn put_scratch_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.put_content(path, content).await
    }

    /// How long scratch writes last: `None` when they are as durable as any write; otherwise
    /// an id that changes whenever scratch data written before may have been lost (on a local
    /// filesystem, the kernel's boot id: unsynced data survives a process crash in the page
    /// cache, not a power cut or a reboot). Scratch data written under another id must be
    /// checked before it is trusted.
    fn scratch_epoch(&self) -> Option<&str> {
        None
    }

    /// Opens and locks the one file that holds an upload session's content, on backends that
    /// can write into a file at an offset (a filesystem); `Ok(None)` on the others (object
    /// stores), whose sessions are immutable parts composed at the end. The file is created
    /// empty when it is missing and its directory exists; `NotFound` when the directory does
    /// not (a session that does not exist).
    ///
    /// The lock excludes every other holder of the file, in this process or in another one
    /// sharing the storage, until the handle and every write started through it have ended,
    /// including a write still running for a request that was dropped: a later chunk can never
    /// be overwritten by an earlier one.
    async fn lock_upload_file(
        &self,
        _path: &str,
    ) -> Result<Option<Box<dyn UploadFile>>, StorageError> {
        Ok(None)
    }

    /// Size, modification time and kind of a path.
    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError>;

    /// Names (not paths) of the direct children of a directory, in no particular order.
    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError>;

    /// Every file under the directory `path`, at any depth, with its size and modification
    /// time, in no particular order. A missing directory walks as empty. Object stores answer
    /// it with one flat paginated listing; the default walks `list` and `stat`.
    fn walk<'a>(&'a self, path: &'a str) -> BoxStream<'a, Result<WalkEntry, StorageError>> {
        walk_by_listing(self, path)
    }

    /// Whether `walk` is one flat paginated listing (object stores): then walking a tree and
    /// reading sizes from it is far cheaper than a listing per directory plus a `stat` per
    /// file, which is what the default `walk` costs.
    fn walk_is_flat(&self) -> bool {
        false
    }

    /// Copies a file; `dst` is replaced whole. Object stores copy on the server side.
    async fn copy(&self, src: &str, dst: &str) -> Result<(), StorageError> {
        self.compose(&[src.to_owned()], dst).await
    }

    /// Writes the concatenation of `parts` to `dst` (an upload's chunks into its blob),
    /// published whole and durably at the end, whether the parts were scratch data or not.
    /// The default streams every part through a [`FileWriter`].
    async fn compose(&self, parts: &[String], dst: &str) -> Result<(), StorageError> {
        let mut writer = self.writer(dst).await?;
        for part in parts {
            let mut stream = match self.reader(part, 0, None).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = writer.cancel().await;
                    return Err(e);
                }
            };
            while let Some(chunk) = stream.next().await {
                let written = match chunk {
                    Ok(chunk) => writer.write(chunk).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    let _ = writer.cancel().await;
                    return Err(e);
                }
            }
        }
        writer.commit().await
    }

    /// Moves a file; afterwards `dst` holds the complete content, durably (also when `src` was
    /// scratch data), and `src` is gone. O(1) on a filesystem; a copy and a delete on object
    /// stores.
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

    /// The file at `path` opened for reading, when the backend keeps it as a local file: for
    /// serving it with `sendfile(2)` instead of through [`StorageDriver::reader`]. `None` where
    /// there is no local file (object stores, memory), the default.
    async fn open_local(&self, _path: &str) -> Result<Option<LocalFile>, StorageError> {
        Ok(None)
    }
}

/// A stored file opened for reading, and its size when it was opened
/// ([`StorageDriver::open_local`]). Stored files are published by rename and never rewritten in
/// place, so the size stays the file's.
#[derive(Clone, Debug)]
pub struct LocalFile {
    /// The open file.
    pub file: std::sync::Arc<std::fs::File>,
    /// Its size in bytes.
    pub size: u64,
}

/// A streamed whole-object write returned by [`StorageDriver::writer`].
#[async_trait]
pub trait FileWriter: Send {
    /// Adds data. Implementations buffer at most about one part; memory use stays bounded.
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;

    /// Bytes written so far.
    fn size(&self) -> u64;

    /// Makes the content durable and visible at the writer's path, all at once.
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;

    /// Abandons the write; nothing of it is ever visible.
    async fn cancel(self: Box<Self>) -> Result<(), StorageError>;
}

/// An upload session's content as one file written at offsets, locked for one request at a
/// time ([`StorageDriver::lock_upload_file`]). Which bytes count is the session state's
/// business: bytes past its count (a chunk refused for its length, or written before a crash
/// and never counted) are overwritten by the next chunk and cut off when publishing.
#[async_trait]
pub trait UploadFile: Send + Sync {
    /// Bytes in the file when it was locked.
    fn size(&self) -> u64;

    /// Writes scratch data (not durable before [`UploadFile::publish`]) from `offset` on.
    /// `commit` writes out what is buffered; `cancel` leaves what was written, uncounted.
    fn writer_at(&self, offset: u64) -> Box<dyn FileWriter>;

    /// Cuts the file to `len` bytes and moves it to `dst`, durably, as
    /// [`StorageDriver::move_file`] does.
    async fn publish(self: Box<Self>, len: u64, dst: &str) -> Result<(), StorageError>;
}

/// [`StorageDriver::walk`] for backends with real directories: `list` each directory, `stat`
/// each entry. Memory holds the directories still to visit, never the whole tree's files.
pub fn walk_by_listing<'a, D: StorageDriver + ?Sized>(
    driver: &'a D,
    path: &'a str,
) -> BoxStream<'a, Result<WalkEntry, StorageError>> {
    let start = (vec![path.to_owned()], Vec::<WalkEntry>::new());
    futures_util::stream::unfold(start, move |(mut dirs, mut ready)| async move {
        loop {
            if let Some(entry) = ready.pop() {
                return Some((Ok(entry), (dirs, ready)));
            }
            let dir = dirs.pop()?;
            let names = match driver.list(&dir).await {
                Ok(names) => names,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Some((Err(e), (Vec::new(), Vec::new()))),
            };
            for name in names {
                let child = format!("{}/{name}", dir.trim_end_matches('/'));
                match driver.stat(&child).await {
                    Ok(info) if info.is_dir => dirs.push(child),
                    Ok(info) => ready.push((child, info)),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Some((Err(e), (Vec::new(), Vec::new()))),
                }
            }
        }
    })
    .boxed()
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
