//! The S3 driver (AWS S3 and compatible stores: Garage, MinIO, Ceph, R2, moto), on the
//! `object_store` crate.
//!
//! Keys are registry:2's: `rootdirectory` (trailing `/` trimmed) + the path, without a leading
//! `/` (registry:2's `s3Path`), so a bucket written by registry:2 is served in place and the
//! other way round. "Directories" are key prefixes: a path is a directory when a key starts
//! with it plus `/`.
//!
//! Request costs: `stat` is a HEAD (plus a one-key LIST when it is not a file); `list` is one
//! delimiter listing; `walk` one flat listing (pages of 1,000); `delete` a HEAD, a listing and
//! batched DeleteObjects; `copy` a server-side CopyObject.

mod client;
mod options;
mod probe;
mod writer;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions,
};
use tokio::sync::Semaphore;

pub use self::options::{S3Options, S3SetupError, DEFAULT_PART_SIZE, MIN_PART_SIZE};
use self::writer::{S3Writer, WriterContext};
use crate::driver::check_path;
use crate::{ByteStream, FileInfo, FileWriter, StorageDriver, StorageError, WalkEntry};

/// Parts that may be uploading in the background across all writers, in bytes. Above it a
/// writer uploads its full part before accepting more data.
const INFLIGHT_BUDGET: u64 = 64 << 20;

/// A single CopyObject is limited to 5 GiB on AWS; larger copies are streamed.
const MAX_COPY_OBJECT: u64 = 5 << 30;

/// [`StorageDriver`] on an S3 bucket.
pub struct S3Driver {
    store: Arc<AmazonS3>,
    stream_store: AmazonS3,
    /// `rootdirectory` as a key prefix without leading or trailing `/` (may be empty).
    prefix: String,
    bucket: String,
    writers: Arc<WriterContext>,
    redirect: bool,
    presign_ttl: Duration,
    conditional_writes: OnceLock<bool>,
}

impl std::fmt::Debug for S3Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Driver")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Driver {
    /// A driver for `options`. Makes no request: see [`S3Driver::check_bucket`].
    pub fn new(options: &S3Options) -> Result<Self, S3SetupError> {
        let prefix = options.root_directory.trim_matches('/').to_owned();
        if !prefix.is_empty() && Path::parse(&prefix).is_err() {
            return Err(S3SetupError::new(
                "rootdirectory",
                format!(
                    "{:?} is not a usable key prefix (empty or control-character segments)",
                    options.root_directory
                ),
            ));
        }
        if options.part_size < MIN_PART_SIZE {
            return Err(S3SetupError::new(
                "chunksize",
                format!(
                    "{} is below S3's minimum part size of {MIN_PART_SIZE}",
                    options.part_size
                ),
            ));
        }
        let part_size = usize::try_from(options.part_size)
            .map_err(|_| S3SetupError::new("chunksize", "too large for this machine"))?;
        let clients = client::build(options)?;
        let mut attributes = Attributes::new();
        if let Some(class) = options.storage_class_header() {
            attributes.insert(Attribute::StorageClass, class.to_owned().into());
        }
        let permits = usize::try_from(INFLIGHT_BUDGET / options.part_size)
            .unwrap_or(2)
            .max(2);
        let store = Arc::new(clients.control);
        Ok(Self {
            writers: Arc::new(WriterContext {
                store: store.clone(),
                part_size,
                inflight: Arc::new(Semaphore::new(permits)),
                attributes,
            }),
            store,
            stream_store: clients.stream,
            prefix,
            bucket: options.bucket.clone(),
            redirect: options.redirect,
            presign_ttl: options.presign_ttl,
            conditional_writes: OnceLock::new(),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of a storage path (registry:2's `s3Path`).
    pub fn key_of(&self, path: &str) -> Result<String, StorageError> {
        Ok(self.key(path)?.to_string())
    }

    fn key(&self, path: &str) -> Result<Path, StorageError> {
        check_path(path)?;
        let raw = if self.prefix.is_empty() {
            path.trim_start_matches('/').to_owned()
        } else {
            format!("{}{}", self.prefix, path.trim_end_matches('/'))
        };
        Path::parse(raw).map_err(|_| StorageError::InvalidPath(path.to_owned()))
    }

    /// The storage path of a key found by a listing.
    fn path_of(&self, key: &Path) -> Option<String> {
        let key = key.as_ref();
        if self.prefix.is_empty() {
            return Some(format!("/{key}"));
        }
        let rest = key.strip_prefix(&self.prefix)?;
        rest.starts_with('/').then(|| rest.to_owned())
    }

    /// `None` for the bucket's (or root directory's) top, where listings take no prefix.
    fn list_prefix(key: &Path) -> Option<&Path> {
        (!key.as_ref().is_empty()).then_some(key)
    }

    /// A presigned GET URL of `path`, valid for `ttl`.
    pub async fn presign(&self, path: &str, ttl: Duration) -> Result<String, StorageError> {
        let key = self.key(path)?;
        let url = self
            .store
            .signed_url(reqwest::Method::GET, &key, ttl)
            .await
            .map_err(|e| map_err(path, e))?;
        Ok(url.to_string())
    }

    /// Whether the store honours create-only writes (`If-None-Match: *`), as found by
    /// [`S3Driver::probe_conditional_writes`]; `None` before the probe ran. Garage ignores
    /// them; AWS, MinIO, R2 and moto honour them.
    pub fn conditional_writes(&self) -> Option<bool> {
        self.conditional_writes.get().copied()
    }

    /// The first key under `key/`, if any: one LIST of at most one key.
    async fn first_below(&self, key: &Path) -> Result<Option<ObjectMeta>, object_store::Error> {
        let prefix = if key.as_ref().is_empty() {
            None
        } else {
            Some(format!("{key}/"))
        };
        let page = self
            .store
            .list_paginated(
                prefix.as_deref(),
                PaginatedListOptions {
                    max_keys: Some(1),
                    ..Default::default()
                },
            )
            .await?;
        Ok(page.result.objects.into_iter().next())
    }
}

/// Maps an `object_store` error for `path`: a 404 is `NotFound`; anything else keeps the
/// store's answer for the log (the API answers clients with a generic error).
pub(crate) fn map_err(path: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(path.to_owned()),
        object_store::Error::InvalidPath { .. } => StorageError::InvalidPath(path.to_owned()),
        other => {
            tracing::warn!(path, error = %other, "S3 request failed");
            StorageError::Backend {
                path: path.to_owned(),
                message: other.to_string(),
            }
        }
    }
}

fn file_info(meta: &ObjectMeta) -> FileInfo {
    FileInfo {
        size: meta.size,
        modified: SystemTime::from(meta.last_modified),
        is_dir: false,
    }
}

#[async_trait]
impl StorageDriver for S3Driver {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let key = self.key(path)?;
        let result = self.store.get(&key).await.map_err(|e| map_err(path, e))?;
        result.bytes().await.map_err(|e| map_err(path, e))
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        let key = self.key(path)?;
        let opts = PutOptions {
            attributes: self.writers.attributes.clone(),
            ..Default::default()
        };
        self.store
            .put_opts(&key, content.into(), opts)
            .await
            .map(drop)
            .map_err(|e| map_err(path, e))
    }

    /// A conditional PUT (`If-None-Match: *`). Stores that ignore it (Garage) overwrite and
    /// answer success; [`S3Driver::conditional_writes`] (probed at startup) says which kind
    /// this is, and [`StorageDriver::create_is_atomic`] reports it.
    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        let key = self.key(path)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: self.writers.attributes.clone(),
            ..Default::default()
        };
        match self.store.put_opts(&key, content.into(), opts).await {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(map_err(path, e)),
        }
    }

    fn create_is_atomic(&self) -> bool {
        self.conditional_writes() == Some(true)
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        let key = self.key(path)?;
        let range = match (offset, len) {
            (0, None) => None,
            (_, Some(0)) => {
                // Nothing to read, but a missing file is still missing.
                self.store.head(&key).await.map_err(|e| map_err(path, e))?;
                return Ok(Box::pin(futures_util::stream::empty()));
            }
            (o, None) => Some(GetRange::Offset(o)),
            (o, Some(l)) => Some(GetRange::Bounded(o..o.saturating_add(l))),
        };
        let ranged = range.is_some();
        let options = GetOptions {
            range,
            ..Default::default()
        };
        match self.stream_store.get_opts(&key, options).await {
            Ok(result) => {
                let owned = path.to_owned();
                Ok(Box::pin(
                    result.into_stream().map_err(move |e| map_err(&owned, e)),
                ))
            }
            Err(e @ object_store::Error::NotFound { .. }) => Err(map_err(path, e)),
            // S3 answers 416 to a range that starts at or past the end: that reads as empty,
            // like a file read at its end.
            Err(e) if ranged => match self.store.head(&key).await {
                Ok(meta) if meta.size <= offset => Ok(Box::pin(futures_util::stream::empty())),
                Ok(_) => Err(map_err(path, e)),
                Err(head) => Err(map_err(path, head)),
            },
            Err(e) => Err(map_err(path, e)),
        }
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        let key = self.key(path)?;
        Ok(Box::new(S3Writer::new(self.writers.clone(), key, path)))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let key = self.key(path)?;
        if !key.as_ref().is_empty() {
            match self.store.head(&key).await {
                Ok(meta) => return Ok(file_info(&meta)),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(map_err(path, e)),
            }
        }
        match self.first_below(&key).await {
            Ok(Some(meta)) => Ok(FileInfo {
                size: 0,
                modified: SystemTime::from(meta.last_modified),
                is_dir: true,
            }),
            Ok(None) => Err(StorageError::NotFound(path.to_owned())),
            Err(e) => Err(map_err(path, e)),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let key = self.key(path)?;
        let listing = self
            .store
            .list_with_delimiter(Self::list_prefix(&key))
            .await
            .map_err(|e| map_err(path, e))?;
        let names: Vec<String> = listing
            .common_prefixes
            .iter()
            .chain(listing.objects.iter().map(|o| &o.location))
            // A "directory marker" object (`dir/`) parses as the directory itself.
            .filter(|p| **p != key)
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        if names.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(names)
    }

    fn walk_is_flat(&self) -> bool {
        true
    }

    fn walk<'a>(&'a self, path: &'a str) -> BoxStream<'a, Result<WalkEntry, StorageError>> {
        let key = match self.key(path) {
            Ok(key) => key,
            Err(e) => return futures_util::stream::once(async { Err(e) }).boxed(),
        };
        self.store
            .list(Self::list_prefix(&key))
            .map_err(move |e| map_err(path, e))
            .try_filter_map(move |meta| async move {
                Ok(self.path_of(&meta.location).map(|p| (p, file_info(&meta))))
            })
            .boxed()
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<(), StorageError> {
        let (from, to) = (self.key(src)?, self.key(dst)?);
        match self.store.copy(&from, &to).await {
            Ok(()) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. }) => Err(map_err(src, e)),
            Err(e) => match self.store.head(&from).await {
                // Too large for one CopyObject on AWS: stream it through a writer instead.
                Ok(meta) if meta.size > MAX_COPY_OBJECT => {
                    self.compose(&[src.to_owned()], dst).await
                }
                Ok(_) => Err(map_err(dst, e)),
                Err(head) => Err(map_err(src, head)),
            },
        }
    }

    async fn move_file(&self, src: &str, dst: &str) -> Result<(), StorageError> {
        self.copy(src, dst).await?;
        let from = self.key(src)?;
        self.store.delete(&from).await.map_err(|e| map_err(src, e))
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let key = self.key(path)?;
        if !key.as_ref().is_empty() {
            match self.store.head(&key).await {
                // A file: the layout never puts objects below a file's key, so no listing
                // (a link removal costs two requests, not four).
                Ok(_) => {
                    return match self.store.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(map_err(path, e)),
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(map_err(path, e)),
            }
        }
        let keys = self
            .store
            .list(Self::list_prefix(&key))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(keys);
        let mut count = 0u64;
        let mut refused = None;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => count += 1,
                // Gone already (a concurrent delete): what was asked for is done.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        drop(deleted);
        if let Some(first) = refused {
            // A batch delete answers 200 and may refuse single keys (Garage: "database is
            // locked" under load), which the client does not retry: what is still there is
            // deleted again key by key, once.
            tracing::info!(path, error = %first, "the store refused some keys of a batch delete; deleting them one by one");
            // Deleted as listed, never collected: memory stays flat whatever the count.
            let mut left = self.store.list(Self::list_prefix(&key));
            while let Some(meta) = left.try_next().await.map_err(|e| map_err(path, e))? {
                match self.store.delete(&meta.location).await {
                    Ok(()) => count += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(map_err(path, e)),
                }
            }
        }
        if count == 0 {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(())
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        if !self.redirect {
            return Ok(None);
        }
        self.presign(path, self.presign_ttl).await.map(Some)
    }
}
