//! The writer side of online garbage collection: touch markers, and the trash that makes a
//! collector's check-then-move race recoverable. See the [`crate::gc`] module documentation
//! for the protocol and why it is safe without a lock.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::Digest;
use berth_storage::paths;
use bytes::Bytes;

use crate::{links, Registry, RegistryError};

/// Unix time in milliseconds (0 before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

impl Registry {
    /// Touch markers younger than this are not rewritten (a read instead of a write on hot
    /// blobs). The online collector must use a `delay` of at least four times this, which
    /// [`Registry::collect_garbage_online`] enforces; zero (the default) always rewrites.
    pub fn set_touch_refresh(&self, refresh: Duration) {
        let ms = u64::try_from(refresh.as_millis()).unwrap_or(u64::MAX);
        self.gc_state.touch_refresh_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether an online collector works on this storage. Without one, nobody reads touch
    /// markers, so blob reads and writes skip them (a marker read on every blob GET, a write
    /// on every push). Nodes sharing storage share `storage.maintenance.gc`, so a node with
    /// it off never races a collector elsewhere; if it is turned on later, the collector's
    /// trash-and-restore covers blobs in use that carry no marker (restored on their next use).
    pub fn set_online_gc(&self, enabled: bool) {
        self.gc_state.no_touches.store(!enabled, Ordering::Relaxed);
    }

    /// The current touch refresh interval.
    pub fn touch_refresh(&self) -> Duration {
        Duration::from_millis(self.gc_state.touch_refresh_ms.load(Ordering::Relaxed))
    }

    /// How many blobs requests have moved back from the trash since start (the collector's own
    /// restores are in its report).
    pub fn trash_restores(&self) -> u64 {
        self.gc_state.restores.load(Ordering::Relaxed)
    }

    /// Records that `digest` is being pushed, mounted or referenced right now. Every writer
    /// calls this *before* it checks that the blob exists (see [`Registry::claim_blob`]).
    pub(crate) async fn touch_blob(&self, digest: &Digest) -> Result<(), RegistryError> {
        if self.gc_state.no_touches.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = now_ms();
        let refresh = self.gc_state.touch_refresh_ms.load(Ordering::Relaxed);
        if refresh > 0 {
            if let Some(last) = self.last_touch(digest).await? {
                if now.saturating_sub(last) < refresh {
                    return Ok(());
                }
            }
        }
        self.driver()
            .put_content(&paths::touch_marker(digest), Bytes::from(now.to_string()))
            .await?;
        Ok(())
    }

    /// When `digest` was last touched (unix ms); `None` without a readable marker.
    pub(crate) async fn last_touch(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        Ok(links::read_time(self.driver(), &paths::touch_marker(digest)).await?)
    }

    /// A writer's claim on an existing blob (mount, manifest reference): touch it, then make
    /// sure its content is under `blobs/`, restoring it from the trash if a collector moved it
    /// there. Returns its size, or `None` when it is stored nowhere (the writer then fails as
    /// it always did). A blob stored nowhere is not touched, so probing unknown digests leaves
    /// no markers behind.
    pub(crate) async fn claim_blob(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let size = self.blob_size(digest).await?;
        if size.is_none() && self.trash_entries(digest).await?.is_empty() {
            return Ok(None);
        }
        if self.gc_state.no_touches.load(Ordering::Relaxed) {
            // No collector to race: the first look stands (one request less per reference
            // on an object store).
            return match size {
                Some(size) => Ok(Some(size)),
                None => self.present_blob(digest).await,
            };
        }
        // Touch, then look again: a collector that trashed the blob between the first look
        // and the touch is undone here.
        self.touch_blob(digest).await?;
        self.present_blob(digest).await
    }

    /// The size of a blob's content under `blobs/`, restoring it from the trash first when only
    /// the trash has it. Reads use this, so a pull never fails on the collector's narrow race.
    pub(crate) async fn present_blob(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        if let Some(size) = self.blob_size(digest).await? {
            return Ok(Some(size));
        }
        self.restore_from_trash(digest).await
    }

    /// Moves a trashed copy of `digest` back under `blobs/`. Returns the blob's size when it is
    /// under `blobs/` afterwards, whoever put it there: a move that fails because another
    /// request (or node) restored it first is re-checked, never reported as missing.
    pub(crate) async fn restore_from_trash(
        &self,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        for _ in 0..4 {
            let Some(&entry) = self.trash_entries(digest).await?.iter().max() else {
                break;
            };
            let from = paths::trash_entry(digest, entry);
            match self
                .driver()
                .move_file(&from, &paths::blob_data(digest))
                .await
            {
                Ok(()) => {
                    self.gc_state.restores.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%digest, "blob restored from the garbage-collection trash");
                    break;
                }
                Err(e) if e.is_not_found() => {
                    if let Some(size) = self.blob_size(digest).await? {
                        return Ok(Some(size));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.blob_size(digest).await
    }

    /// The trash entries of one blob: when each copy was trashed (unix ms).
    pub(crate) async fn trash_entries(&self, digest: &Digest) -> Result<Vec<u64>, RegistryError> {
        let names = self.list_or_empty(&paths::trash_dir(digest)).await?;
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    /// Every trash entry, by digest.
    pub(crate) async fn all_trash(&self) -> Result<Vec<(Digest, Vec<u64>)>, RegistryError> {
        let root = paths::trash_root();
        let mut found = Vec::new();
        for algorithm in self.list_or_empty(&root).await? {
            for hex in self.list_or_empty(&format!("{root}/{algorithm}")).await? {
                let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                    continue;
                };
                let entries = self.trash_entries(&digest).await?;
                found.push((digest, entries));
            }
        }
        Ok(found)
    }

    /// Removes the empty directories a moved or deleted blob leaves behind (a no-op where
    /// directories are implicit). Never removes content, so it cannot race with a writer.
    pub(crate) async fn tidy_blob_dirs(&self, digest: &Digest) -> Result<(), RegistryError> {
        self.driver()
            .remove_empty_dir(&paths::blob_dir(digest))
            .await?;
        self.driver()
            .remove_empty_dir(&paths::trash_dir(digest))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_oci::Digest;
    use berth_storage::{paths, InMemoryDriver, StorageDriver};

    use crate::{Registry, RegistryOptions};

    async fn has_marker(driver: &InMemoryDriver, digest: &Digest) -> bool {
        driver.stat(&paths::touch_marker(digest)).await.is_ok()
    }

    #[tokio::test]
    async fn without_an_online_collector_no_markers_are_read_or_written() {
        for online_gc in [false, true] {
            let driver = Arc::new(InMemoryDriver::new());
            let reg = Registry::new(driver.clone(), RegistryOptions::default());
            reg.set_online_gc(online_gc);
            let repo = "a/b".parse().expect("name");
            let data = bytes::Bytes::from_static(b"blob");
            let digest = Digest::sha256_of(&data);
            let body: crate::BodyStream = Box::pin(futures_util::stream::iter([Ok(data)]));
            reg.put_blob(&repo, &digest, body).await.expect("push");
            reg.stat_blob(&repo, &digest).await.expect("stat");
            assert_eq!(
                has_marker(&driver, &digest).await,
                online_gc,
                "online gc {online_gc}"
            );
        }
    }

    /// A blob GET, through the same calls as the HTTP handler, with the server's touch
    /// refresh (a marker younger than it is read, not rewritten): the marker is read only
    /// when an online collector runs.
    #[tokio::test]
    async fn blob_gets_read_no_marker_without_an_online_collector() {
        use futures_util::TryStreamExt;

        use crate::read::{Blob, ReadStore};
        use crate::test_driver::Recording;

        for online_gc in [false, true] {
            let driver = Arc::new(Recording::default());
            let reg = Registry::new(driver.clone(), RegistryOptions::default());
            reg.set_online_gc(online_gc);
            reg.set_touch_refresh(std::time::Duration::from_secs(60));
            let repo = "a/b".parse().expect("name");
            let data = bytes::Bytes::from_static(b"blob");
            let digest = Digest::sha256_of(&data);
            let body: crate::BodyStream = Box::pin(futures_util::stream::iter([Ok(data)]));
            reg.put_blob(&repo, &digest, body).await.expect("push");
            driver.take();
            let blob = ReadStore::blob(&*reg, &repo, &digest, false)
                .await
                .expect("stat");
            assert!(matches!(blob, Blob::Stored { size: 4 }));
            let read = ReadStore::read_blob(&*reg, &repo, &digest, 0, None)
                .await
                .expect("read");
            let got: Vec<bytes::Bytes> = read.try_collect().await.expect("body");
            assert_eq!(got.concat(), b"blob");
            let marker = paths::touch_marker(&digest);
            let touched = driver.take().contains(&marker);
            assert_eq!(touched, online_gc, "online gc {online_gc}: marker read");
        }
    }
}
