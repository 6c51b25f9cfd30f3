//! Garbage collection: mark and sweep over registry:2's layout, offline (this file, like
//! `registry garbage-collect`) or online ([`online`], while the registry serves pushes).
//!
//! Mark ([`mark`]): in every repository, the live manifests are all revisions, or with
//! `delete_untagged` only what the tags reach: tagged manifests, the children of live indexes
//! (registry:2's `--delete-untagged` deletes those, a known bug this fixes), and referrers
//! (manifests with a `subject`) whose subject is live. Every blob a live manifest references is
//! marked, and so is the manifest's own blob.
//!
//! # Offline
//!
//! [`Registry::garbage_collect`] removes every unmarked blob under `blobs/` at once, and with
//! `delete_untagged` the revision links of dead manifests. A push in progress (blobs uploaded,
//! manifest not yet put) is not visible to the mark phase, so run it with the registry stopped
//! or in read-only mode. It also empties the online collector's trash: marked entries go back
//! under `blobs/`, the others are deleted; touch markers of removed blobs are deleted too.
//! `dry_run` reports without changing anything.
//!
//! # Online, without a lock
//!
//! A collector that checks "unused" and then deletes always has a window in which a writer
//! starts using the blob (a mount, a manifest referencing it, a push of a blob that already
//! exists: Harbor lost live blobs this way, its issue #23116). A lock would close the window on
//! one node but not across nodes sharing S3, so the online collector never deletes a blob that
//! might be needed: it moves it to a trash, and writers restore from the trash.
//!
//! 1. **Touch markers.** Every path that makes a blob referenced or reuses it (upload commit,
//!    new or already stored; cross-repository mount; manifest PUT: every referenced blob, child
//!    manifest and the manifest itself; the pull-through cache's stores; blob HEAD/GET, which
//!    is how clients decide not to upload a blob they "push") writes `_berth/touched/<digest>`
//!    = now, **then** checks that the content is under `blobs/`, restoring it from the trash
//!    when only the trash has it ([`Registry::claim_blob`]). Reads (blob and manifest GET)
//!    restore too, so a pull never fails on the race.
//! 2. **Sweep** (run started at `T0`, threshold `T0 - delay`). An unmarked blob whose last use
//!    (newest of touch marker and data modification time) is older than the threshold is
//!    *moved* to `_berth/trash/<digest>/<now>`; then its marker is read again, and if a writer
//!    touched it in the meantime the move is undone at once.
//! 3. **Purge.** A later run deletes a trash entry only if it was trashed before that run's
//!    threshold, is unmarked in that run's fresh mark, and was not touched since it was trashed.
//!    Marked or touched entries are moved back.
//!
//! Why nothing referenced is lost. Take a writer W that touches at `t_w` and checks at
//! `t_v > t_w`, and the collector's check (read of the marker) at `c`, move at `m` and re-read
//! at `r > m`:
//! - W checks after the move (`t_v > m`): it finds the blob in the trash and restores it (or,
//!   when it is committing an upload, publishes its own copy).
//! - W checks before the move and touched after `c`: the re-read at `r > m > t_v > t_w` sees
//!   the touch and moves the blob back.
//! - W touched before `c`: then the marker `t_w` was older than `T0 - delay`, so W's request
//!   has been running for more than `delay`. That is excluded: `delay` is chosen far longer than
//!   the few storage operations between a writer's check and its commit (the long part of a
//!   push, receiving data, happens before the touch).
//! - And if the blob stays trashed after W checked it, the purge comes at least `delay` after
//!   the move, so after W committed (its manifest's revision link exists); the purge's fresh
//!   mark marks the blob and moves it back. Only a blob nobody has referenced or touched for
//!   more than `delay` (in practice: a layer uploaded and never used by a manifest, or one
//!   whose manifests were deleted) is ever deleted.
//!
//! Markers younger than `touch refresh` (a quarter of `delay` on the server) are not
//! rewritten. That stays safe: a writer that skips a marker `m` does so at `t < m + delay/4`;
//! to be trashed, `m` must be older than `T0 - delay`, so the writer ran before
//! `T0 - 3/4 delay` and, its requests being short, finished before the run's mark began, which
//! then sees what it committed. No bound on the collector's own run time is needed, because
//! its threshold is anchored at its start `T0`, not at the moment it checks a blob.
//!
//! Crash safety: each step is one move (atomic rename on the filesystem), so after a kill at
//! any point every blob is under `blobs/` or in the trash, and the next run continues: trash
//! entries are judged by the time in their name, a half-finished re-check is redone by the
//! next purge (which restores anything touched or marked). On S3 a move is copy then delete:
//! a crash between the two leaves two copies (harmless), the copy itself must be complete
//! before the source is deleted, and reads must be strongly consistent (S3 is, since 2020).
//! Clocks of nodes sharing storage must agree to well within `delay`.

pub(crate) mod mark;
pub mod online;
#[cfg(test)]
mod online_tests;
mod trash;

use std::sync::atomic::AtomicU64;

use berth_oci::{Digest, RepoName};
use berth_storage::paths;
use futures_util::{StreamExt, TryStreamExt};
pub use online::{OnlineGc, OnlineGcOptions, OnlineGcReport};

use crate::{links, Registry, RegistryError};

/// Blobs stat-ed and removed at the same time by the offline sweep.
const SWEEP_CONCURRENCY: usize = 32;

/// What to collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Also remove manifests no tag reaches (registry:2's `--delete-untagged`).
    pub delete_untagged: bool,
    /// Report only; change nothing (registry:2's `--dry-run`).
    pub dry_run: bool,
}

/// What a collection found (and, unless it was a dry run, removed).
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Manifests kept, per repository, for the report.
    pub manifests_marked: Vec<(String, Digest)>,
    /// Manifest revisions removed (`repository`, digest).
    pub manifests_removed: Vec<(String, Digest)>,
    /// Blobs removed, with their sizes.
    pub blobs_removed: Vec<(Digest, u64)>,
    /// Blobs kept.
    pub blobs_kept: usize,
    /// Online-collector trash entries deleted (unreferenced), with their sizes.
    pub trash_purged: Vec<(Digest, u64)>,
    /// Online-collector trash entries moved back under `blobs/` (referenced).
    pub trash_restored: Vec<Digest>,
}

impl GcReport {
    /// Bytes the removed blobs and purged trash entries held.
    pub fn bytes_freed(&self) -> u64 {
        let blobs: u64 = self.blobs_removed.iter().map(|(_, size)| size).sum();
        blobs + self.trash_purged.iter().map(|(_, size)| size).sum::<u64>()
    }
}

/// Process-local state of the online collector's writer side.
#[derive(Debug, Default)]
pub(crate) struct GcState {
    /// Touch markers younger than this (ms) are not rewritten.
    pub touch_refresh_ms: AtomicU64,
    /// No touch markers at all: no online collector reads them (see
    /// [`Registry::set_online_gc`]).
    pub no_touches: std::sync::atomic::AtomicBool,
    /// Blobs requests moved back from the trash.
    pub restores: AtomicU64,
}

impl Registry {
    /// Runs one offline mark-and-sweep collection.
    pub async fn garbage_collect(&self, options: GcOptions) -> Result<GcReport, RegistryError> {
        if !options.dry_run {
            self.check_writable()?;
        }
        let mut marking = self.mark(options.delete_untagged).await?;
        // Manifests come out of the walk in no fixed order (concurrent reads, hash maps):
        // sorted, a dry run and the real run print the same lines in the same order, and
        // their outputs diff cleanly.
        marking.manifests_marked.sort();
        marking
            .dead
            .sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        let mut report = GcReport {
            manifests_marked: marking.manifests_marked,
            ..GcReport::default()
        };
        for (repo, digest, manifest) in &marking.dead {
            report
                .manifests_removed
                .push((repo.to_string(), digest.clone()));
            if !options.dry_run {
                self.remove_revision(repo, digest, manifest).await?;
            }
        }
        let (kept, unmarked): (Vec<_>, Vec<_>) = self
            .blob_listing()
            .await?
            .into_iter()
            .partition(|(digest, _)| marking.marked.contains(digest));
        report.blobs_kept = kept.len();
        // Only the blobs that go are looked at (their size, for the report, unless the
        // listing gave it), concurrently.
        let removed: Vec<Option<(Digest, u64)>> = futures_util::stream::iter(unmarked)
            .map(|(digest, listed)| async move {
                let size = match listed {
                    Some(info) => info.size,
                    None => match self.blob_size(&digest).await? {
                        Some(size) => size,
                        None => return Ok(None),
                    },
                };
                if !options.dry_run {
                    links::remove(self.driver(), &paths::blob_dir(&digest)).await?;
                    links::remove(self.driver(), &paths::touch_marker(&digest)).await?;
                }
                Ok::<_, RegistryError>(Some((digest, size)))
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .try_collect()
            .await?;
        report.blobs_removed = removed.into_iter().flatten().collect();
        report.blobs_removed.sort();
        for (digest, entries) in self.all_trash().await? {
            let marked = marking.marked.contains(&digest);
            for at in entries {
                let entry = paths::trash_entry(&digest, at);
                if marked {
                    report.trash_restored.push(digest.clone());
                    if !options.dry_run && self.blob_size(&digest).await?.is_none() {
                        self.driver()
                            .move_file(&entry, &paths::blob_data(&digest))
                            .await?;
                    }
                } else {
                    let size = self.driver().stat(&entry).await?.size;
                    report.trash_purged.push((digest.clone(), size));
                }
            }
            if !options.dry_run {
                links::remove(self.driver(), &paths::trash_dir(&digest)).await?;
                if !marked {
                    links::remove(self.driver(), &paths::touch_marker(&digest)).await?;
                }
            }
        }
        report.trash_purged.sort();
        report.trash_restored.sort();
        Ok(report)
    }

    /// Removes a manifest revision from a repository (and its referrers-index entry).
    pub(crate) async fn remove_revision(
        &self,
        repo: &RepoName,
        digest: &Digest,
        manifest: &berth_oci::Manifest,
    ) -> Result<(), RegistryError> {
        if let Some(subject) = &manifest.subject {
            let link = paths::referrer_link(repo, &subject.digest, digest);
            links::remove(self.driver(), link.trim_end_matches("/link")).await?;
        }
        let link = paths::revision_link(repo, digest);
        links::remove(self.driver(), link.trim_end_matches("/link")).await?;
        self.resolve_cache.forget(repo);
        Ok(())
    }
}
