//! Link files: registry:2's pointers (`link` holds a digest string).

use berth_oci::Digest;
use berth_storage::{StorageDriver, StorageError};
use bytes::Bytes;

/// Reads a link. A missing link is `None`; so is a link whose content is not a digest, which
/// only a crash mid-write by another program can produce: treating it as absent keeps a torn
/// link from ever being served.
pub async fn read(driver: &dyn StorageDriver, path: &str) -> Result<Option<Digest>, StorageError> {
    match driver.get_content(path).await {
        Ok(bytes) => {
            let parsed = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if parsed.is_none() {
                tracing::warn!(path, "ignoring link file that does not hold a digest");
            }
            Ok(parsed)
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a link pointing at `digest`.
pub async fn write(
    driver: &dyn StorageDriver,
    path: &str,
    digest: &Digest,
) -> Result<(), StorageError> {
    driver
        .put_content(path, Bytes::from(digest.to_string()))
        .await
}

/// Reads a Berth time record (a touch marker, a pull record): unix milliseconds as text.
/// A missing or unreadable record is `None`.
pub async fn read_time(
    driver: &dyn StorageDriver,
    path: &str,
) -> Result<Option<u64>, StorageError> {
    match driver.get_content(path).await {
        Ok(bytes) => Ok(std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes a path, treating "already gone" as success.
pub async fn remove(driver: &dyn StorageDriver, path: &str) -> Result<(), StorageError> {
    match driver.delete(path).await {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}
