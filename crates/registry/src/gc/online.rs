//! The online collector: the same mark as offline, then a sweep that moves unused blobs to the
//! trash instead of deleting them, and a purge of old, still unused trash entries. The protocol
//! and its safety argument are in the [`crate::gc`] module documentation.
//!
//! The steps are public so that tests can interleave requests with them deterministically:
//! [`Registry::start_online_gc`] marks, [`OnlineGc::purge_trash`] and [`OnlineGc::sweep`]
//! change storage, [`OnlineGc::finish`] returns the report.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use berth_oci::Digest;
use berth_storage::paths;

use super::trash::{now_ms, unix_ms};
use crate::{links, Registry, RegistryError};

/// How the online collector runs (`storage.maintenance.gc`).
#[derive(Debug, Clone, Copy)]
pub struct OnlineGcOptions {
    /// Grace period: a blob used (pushed, mounted, referenced) less than this long ago is not
    /// trashed, and a trash entry younger than this is not purged. It must be much longer than
    /// the storage operations between a writer's check and its commit (milliseconds to
    /// seconds); raised to four times the registry's touch refresh when shorter.
    pub delay: Duration,
    /// Report only; move and delete nothing.
    pub dry_run: bool,
}

/// What an online collection did (or, in a dry run, would have done).
#[derive(Debug, Default, Clone)]
pub struct OnlineGcReport {
    /// Blobs marked as referenced.
    pub blobs_marked: usize,
    /// Unreferenced blobs kept because they were used within `delay`.
    pub kept_recent: usize,
    /// Blobs moved to the trash, with their sizes.
    pub trashed: Vec<(Digest, u64)>,
    /// Blobs moved back right after trashing because a writer touched them meanwhile.
    pub put_back: Vec<Digest>,
    /// Trash entries moved back because they are referenced again or were touched.
    pub restored: Vec<Digest>,
    /// Trash entries deleted for good, with their sizes.
    pub purged: Vec<(Digest, u64)>,
    /// Trash entries left for a later run (trashed less than `delay` ago).
    pub waiting: usize,
}

impl OnlineGcReport {
    /// Bytes the purged trash entries held.
    pub fn bytes_freed(&self) -> u64 {
        self.purged.iter().map(|(_, size)| size).sum()
    }
}

/// One online collection: marked, then purged and swept step by step.
pub struct OnlineGc<'a> {
    reg: &'a Registry,
    dry_run: bool,
    /// `T0 - delay` in unix ms: blobs last used before it may be trashed, trash entries
    /// trashed before it may be purged.
    threshold_ms: u64,
    marked: HashSet<Digest>,
    report: OnlineGcReport,
}

impl Registry {
    /// Runs one online collection: mark, purge old trash entries, sweep unused blobs to the
    /// trash. Safe while the registry serves pushes, mounts and pulls.
    pub async fn collect_garbage_online(
        &self,
        options: OnlineGcOptions,
    ) -> Result<OnlineGcReport, RegistryError> {
        let mut run = self.start_online_gc(options).await?;
        run.purge_trash().await?;
        run.sweep().await?;
        Ok(run.finish())
    }

    /// Starts an online collection: fixes its threshold from the current time, then marks.
    /// Every revision is a root (untagged manifests stay: deleting them is offline-only, since
    /// a client may be about to tag a manifest it just pushed by digest).
    pub async fn start_online_gc(
        &self,
        options: OnlineGcOptions,
    ) -> Result<OnlineGc<'_>, RegistryError> {
        if !options.dry_run {
            self.check_writable()?;
        }
        let delay = options.delay.max(self.touch_refresh() * 4);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let threshold_ms = now_ms().saturating_sub(delay_ms);
        let marking = self.mark(false).await?;
        Ok(OnlineGc {
            reg: self,
            dry_run: options.dry_run,
            threshold_ms,
            report: OnlineGcReport {
                blobs_marked: marking.marked.len(),
                ..OnlineGcReport::default()
            },
            marked: marking.marked,
        })
    }
}

impl OnlineGc<'_> {
    /// Stops when read-only mode was switched on during the run.
    fn check_writable(&self) -> Result<(), RegistryError> {
        if self.dry_run {
            return Ok(());
        }
        self.reg.check_writable()
    }

    /// Deletes trash entries trashed before the threshold that this run's mark does not reach
    /// and nobody touched since; moves marked or touched entries back under `blobs/`.
    pub async fn purge_trash(&mut self) -> Result<(), RegistryError> {
        for (digest, entries) in self.reg.all_trash().await? {
            self.check_writable()?;
            let touched = self.reg.last_touch(&digest).await?;
            for at in entries {
                if self.marked.contains(&digest) || touched.is_some_and(|t| t >= at) {
                    self.report.restored.push(digest.clone());
                    if !self.dry_run {
                        self.give_back(&digest, at).await?;
                    }
                } else if at >= self.threshold_ms {
                    self.report.waiting += 1;
                } else {
                    self.purge_entry(&digest, at).await?;
                }
            }
            if !self.dry_run {
                self.reg.tidy_blob_dirs(&digest).await?;
                let gone = self.reg.blob_size(&digest).await?.is_none()
                    && self.reg.trash_entries(&digest).await?.is_empty();
                if gone {
                    links::remove(self.reg.driver(), &paths::touch_marker(&digest)).await?;
                }
            }
        }
        Ok(())
    }

    /// Deletes one trash entry for good (already gone: someone restored it; nothing to do).
    async fn purge_entry(&mut self, digest: &Digest, at: u64) -> Result<(), RegistryError> {
        let entry = paths::trash_entry(digest, at);
        let size = match self.reg.driver().stat(&entry).await {
            Ok(info) => info.size,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if !self.dry_run {
            match self.reg.driver().delete(&entry).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        self.report.purged.push((digest.clone(), size));
        Ok(())
    }

    /// Moves a trash entry back under `blobs/`, or drops it when `blobs/` already holds the
    /// content (an upload of the same bytes published it again).
    async fn give_back(&self, digest: &Digest, at: u64) -> Result<(), RegistryError> {
        let entry = paths::trash_entry(digest, at);
        let d = self.reg.driver();
        let result = if self.reg.blob_size(digest).await?.is_some() {
            d.delete(&entry).await
        } else {
            d.move_file(&entry, &paths::blob_data(digest)).await
        };
        match result {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Moves every unmarked blob not used since the threshold to the trash, re-checking each
    /// one's touch marker after the move.
    pub async fn sweep(&mut self) -> Result<(), RegistryError> {
        for digest in self.reg.all_blob_digests().await? {
            if self.marked.contains(&digest) {
                continue;
            }
            self.check_writable()?;
            // Only unmarked blobs are stat-ed; one gone since the listing needs nothing.
            let Some(info) = self.reg.blob_info(&digest).await? else {
                continue;
            };
            if !self.unused(&digest, info.modified).await? {
                self.report.kept_recent += 1;
                continue;
            }
            if self.dry_run {
                self.report.trashed.push((digest, info.size));
                continue;
            }
            let Some(at) = self.move_to_trash(&digest).await? else {
                continue;
            };
            self.recheck(&digest, at, info.size).await?;
        }
        Ok(())
    }

    /// Whether `digest` is unmarked and was last used before the threshold (its touch marker,
    /// or its data's modification time for blobs no Berth writer has touched).
    pub(crate) async fn unused(
        &self,
        digest: &Digest,
        modified: SystemTime,
    ) -> Result<bool, RegistryError> {
        if self.marked.contains(digest) {
            return Ok(false);
        }
        let touched = self.reg.last_touch(digest).await?.unwrap_or(0);
        Ok(touched.max(unix_ms(modified)) < self.threshold_ms)
    }

    /// Step one of trashing: moves the content to a trash entry named by the current time.
    /// `None` when the blob is no longer under `blobs/`.
    pub(crate) async fn move_to_trash(
        &self,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let at = now_ms();
        let to = paths::trash_entry(digest, at);
        match self
            .reg
            .driver()
            .move_file(&paths::blob_data(digest), &to)
            .await
        {
            Ok(()) => Ok(Some(at)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Step two: a writer that touched the blob after our check may have seen it under
    /// `blobs/` just before the move, so read the marker again and undo the move if so.
    pub(crate) async fn recheck(
        &mut self,
        digest: &Digest,
        at: u64,
        size: u64,
    ) -> Result<(), RegistryError> {
        let touched = self.reg.last_touch(digest).await?;
        if touched.is_some_and(|t| t >= self.threshold_ms) {
            self.give_back(digest, at).await?;
            self.report.put_back.push(digest.clone());
            return Ok(());
        }
        self.reg
            .driver()
            .remove_empty_dir(&paths::blob_dir(digest))
            .await?;
        self.report.trashed.push((digest.clone(), size));
        Ok(())
    }

    /// The report of this run.
    pub fn finish(self) -> OnlineGcReport {
        self.report
    }
}
