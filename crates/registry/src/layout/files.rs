//! The layout directory's files: blobs streamed to a temporary file, verified, fsynced and
//! renamed into place; small files (`oci-layout`, `index.json`) replaced atomically; blobs read
//! back as a stream.

use std::path::{Path, PathBuf};

use berth_oci::{Digest, Digester};
use berth_storage::ByteStream;
use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::LayoutError;
use crate::{BodyStream, RegistryError};

/// Bytes read from a layout file at a time when importing.
const CHUNK: usize = 256 * 1024;

/// `DIR/blobs/<alg>/<hex>`.
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// A temporary file in `dir`, renamed into place once complete: a crash never leaves a partial
/// file under a final name.
fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!(".berth-partial-{}", uuid::Uuid::new_v4()))
}

/// Whether `path` exists (a file, or anything else, at that name).
pub async fn exists(path: &Path) -> Result<bool, LayoutError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(LayoutError::io(path))
}

/// Streams `content` into `DIR/blobs/<alg>/<hex>`, hashing it on the way; the file is published
/// only if it hashes to `digest`. A file already there that hashes right is kept (an export
/// into an existing layout). Returns the bytes written, 0 when the file was already there.
pub async fn write_blob(
    dir: &Path,
    digest: &Digest,
    content: ByteStream,
) -> Result<u64, LayoutError> {
    let target = blob_path(dir, digest);
    if exists(&target).await? && hash_file(&target, digest).await? == *digest {
        return Ok(0);
    }
    let parent = target.parent().unwrap_or(dir);
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(LayoutError::io(parent))?;
    let temp = temp_path(dir);
    let result = copy_verified(&temp, digest, content).await;
    let result = match result {
        Ok(size) => tokio::fs::rename(&temp, &target)
            .await
            .map(|()| size)
            .map_err(LayoutError::io(&target)),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

async fn copy_verified(
    temp: &Path,
    digest: &Digest,
    mut content: ByteStream,
) -> Result<u64, LayoutError> {
    let mut file = tokio::fs::File::create(temp)
        .await
        .map_err(LayoutError::io(temp))?;
    let mut digester = Digester::new(digest.algorithm());
    let mut size = 0u64;
    while let Some(chunk) = content.try_next().await.map_err(RegistryError::from)? {
        digester.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(LayoutError::io(temp))?;
    }
    let actual = digester.finish();
    if actual != *digest {
        // The registry's own copy is damaged: say so rather than export it.
        tracing::error!(%digest, %actual, "stored blob does not match its digest");
        return Err(RegistryError::Corrupt(format!("blob {digest} hashes to {actual}")).into());
    }
    file.sync_all().await.map_err(LayoutError::io(temp))?;
    Ok(size)
}

/// A stream of one in-memory chunk (a manifest), in the shape of a storage read.
pub fn once(bytes: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(bytes)]))
}

/// Replaces `DIR/name` with `content` atomically (temp file, fsync, rename).
pub async fn write_small(dir: &Path, name: &str, content: &[u8]) -> Result<(), LayoutError> {
    let temp = temp_path(dir);
    let target = dir.join(name);
    let result = async {
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(LayoutError::io(&temp))?;
        file.write_all(content)
            .await
            .map_err(LayoutError::io(&temp))?;
        file.sync_all().await.map_err(LayoutError::io(&temp))?;
        tokio::fs::rename(&temp, &target)
            .await
            .map_err(LayoutError::io(&target))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

/// Makes the renames inside `dir` durable.
pub async fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    let handle = tokio::fs::File::open(dir)
        .await
        .map_err(LayoutError::io(dir))?;
    handle.sync_all().await.map_err(LayoutError::io(dir))
}

/// Reads a whole file of at most `limit` bytes (a manifest, `index.json`).
pub async fn read_small(path: &Path, limit: u64) -> Result<Bytes, LayoutError> {
    let size = file_size(path).await?;
    if size > limit {
        return Err(LayoutError::invalid(
            path,
            format!("{size} bytes is more than the {limit} allowed for this file"),
        ));
    }
    let content = tokio::fs::read(path).await.map_err(LayoutError::io(path))?;
    Ok(Bytes::from(content))
}

/// The size of a regular file; a missing file is an invalid layout, not an I/O error.
pub async fn file_size(path: &Path) -> Result<u64, LayoutError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => Ok(meta.len()),
        Ok(_) => Err(LayoutError::invalid(path, "not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LayoutError::invalid(
            path,
            "missing: the layout is incomplete, nothing was tagged",
        )),
        Err(e) => Err(LayoutError::io(path)(e)),
    }
}

/// What a file hashes to with `like`'s algorithm, read as a stream.
async fn hash_file(path: &Path, like: &Digest) -> Result<Digest, LayoutError> {
    let mut digester = Digester::new(like.algorithm());
    let mut stream = file_stream(path).await?;
    while let Some(chunk) = stream.try_next().await.map_err(LayoutError::io(path))? {
        digester.update(&chunk);
    }
    Ok(digester.finish())
}

/// Streams a file in bounded chunks, as a request body would arrive.
pub async fn file_stream(path: &Path) -> Result<BodyStream, LayoutError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(LayoutError::io(path))?;
    let stream = futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    });
    Ok(Box::pin(stream))
}
