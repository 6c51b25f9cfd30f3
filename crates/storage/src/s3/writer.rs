//! The S3 [`FileWriter`]: a whole object streamed as a multipart upload, invisible until
//! CompleteMultipartUpload. An object that fits in one part is a single PUT at commit.
//!
//! Memory per writer: the part being filled, plus at most one part in flight when the driver's
//! shared in-flight budget has room (else the part is uploaded before `write` returns). So
//! many concurrent pushes cost about `writers x part size + budget`, whatever the blob sizes.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions, PutPayload};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::map_err;
use crate::{FileWriter, StorageError};

/// S3 refuses more parts than this in one upload.
const MAX_PARTS: usize = 10_000;

/// Parts grow by one base size every this many parts, so the 10,000-part limit allows
/// 55,000 base parts (about 268 GiB at 5 MiB) while small blobs keep small parts.
const PARTS_PER_STEP: usize = 1_000;

/// What a writer needs from its driver.
pub(crate) struct WriterContext {
    pub store: Arc<AmazonS3>,
    pub part_size: usize,
    pub inflight: Arc<Semaphore>,
    pub attributes: object_store::Attributes,
}

/// A streamed write of one object.
pub(crate) struct S3Writer {
    cx: Arc<WriterContext>,
    key: Path,
    path: String,
    buffer: Vec<Bytes>,
    buffered: usize,
    size: u64,
    upload: Option<Box<dyn MultipartUpload>>,
    parts: usize,
    inflight: Option<JoinHandle<object_store::Result<()>>>,
}

impl S3Writer {
    pub(crate) fn new(cx: Arc<WriterContext>, key: Path, path: &str) -> Self {
        Self {
            cx,
            key,
            path: path.to_owned(),
            buffer: Vec::new(),
            buffered: 0,
            size: 0,
            upload: None,
            parts: 0,
            inflight: None,
        }
    }

    /// The size of the part being filled.
    fn part_size(&self) -> usize {
        self.cx.part_size * (1 + self.parts / PARTS_PER_STEP)
    }

    fn err(&self, e: object_store::Error) -> StorageError {
        map_err(&self.path, e)
    }

    /// Waits for the part in flight, if any.
    async fn settle(&mut self) -> Result<(), StorageError> {
        let Some(handle) = self.inflight.take() else {
            return Ok(());
        };
        match handle.await {
            Ok(result) => result.map_err(|e| self.err(e)),
            Err(join) => Err(StorageError::Backend {
                path: self.path.clone(),
                message: format!("part upload task failed: {join}"),
            }),
        }
    }

    /// Sends the buffer as the next part, starting the multipart upload on the first.
    async fn flush_part(&mut self) -> Result<(), StorageError> {
        if self.parts >= MAX_PARTS {
            return Err(StorageError::Backend {
                path: self.path.clone(),
                message: format!("object exceeds S3's limit of {MAX_PARTS} parts"),
            });
        }
        let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
        self.buffered = 0;
        if self.upload.is_none() {
            let opts = PutMultipartOptions {
                attributes: self.cx.attributes.clone(),
                ..Default::default()
            };
            let upload = self
                .cx
                .store
                .put_multipart_opts(&self.key, opts)
                .await
                .map_err(|e| self.err(e))?;
            self.upload = Some(upload);
        }
        self.settle().await?;
        let Some(upload) = self.upload.as_mut() else {
            unreachable!("the upload was just created")
        };
        let part = upload.put_part(payload);
        self.parts += 1;
        match self.cx.inflight.clone().try_acquire_owned() {
            Ok(permit) => {
                self.inflight = Some(tokio::spawn(async move {
                    let result = part.await;
                    drop(permit);
                    result
                }));
                Ok(())
            }
            Err(_) => part.await.map_err(|e| self.err(e)),
        }
    }

    /// Aborts whatever was started; used when a commit fails and by cancel.
    async fn abort(&mut self) -> Result<(), StorageError> {
        if let Some(handle) = self.inflight.take() {
            handle.abort();
        }
        self.buffer.clear();
        match self.upload.take() {
            Some(mut upload) => upload.abort().await.map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl FileWriter for S3Writer {
    async fn write(&mut self, mut data: Bytes) -> Result<(), StorageError> {
        self.size += data.len() as u64;
        while !data.is_empty() {
            // A full part goes out only once more data arrives, so an object of exactly one
            // part is still a single PUT.
            if self.buffered >= self.part_size() {
                self.flush_part().await?;
            }
            let take = (self.part_size() - self.buffered).min(data.len());
            self.buffer.push(data.split_to(take));
            self.buffered += take;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        if self.upload.is_none() {
            let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
            let opts = PutOptions {
                attributes: self.cx.attributes.clone(),
                ..Default::default()
            };
            return self
                .cx
                .store
                .put_opts(&self.key, payload, opts)
                .await
                .map(drop)
                .map_err(|e| self.err(e));
        }
        let result = async {
            if self.buffered > 0 {
                self.flush_part().await?;
            }
            self.settle().await?;
            let Some(upload) = self.upload.as_mut() else {
                unreachable!("checked above")
            };
            upload
                .complete()
                .await
                .map(drop)
                .map_err(|e| map_err(&self.path, e))
        }
        .await;
        match result {
            Ok(()) => {
                self.upload = None;
                Ok(())
            }
            Err(e) => {
                let _ = self.abort().await;
                Err(e)
            }
        }
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        self.abort().await
    }
}

impl Drop for S3Writer {
    /// A writer dropped without commit or cancel (a client that went away) still aborts its
    /// multipart upload, so no parts linger in the bucket.
    fn drop(&mut self) {
        if let Some(handle) = self.inflight.take() {
            handle.abort();
        }
        if let Some(mut upload) = self.upload.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let path = std::mem::take(&mut self.path);
                runtime.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(path, error = %e, "could not abort an abandoned multipart upload");
                    }
                });
            }
        }
    }
}
