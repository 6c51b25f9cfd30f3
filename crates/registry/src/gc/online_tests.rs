//! The online collector against concurrent writers, with the races interleaved step by step:
//! every scenario runs on the in-memory and the filesystem driver.

use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Digest, Digester, Reference};
use berth_storage::{FilesystemDriver, InMemoryDriver, StorageDriver};
use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{GcOptions, OnlineGcOptions};
// The offline matrix's builders: a pushed blob, an image manifest, a repository name.
use crate::gc_tests::{blob as push, image, repo};
use crate::{Registry, RegistryError, RegistryOptions};

const NOW: OnlineGcOptions = OnlineGcOptions {
    delay: Duration::ZERO,
    dry_run: false,
};

/// Each driver, empty (the temp dir lives as long as the driver is used).
fn drivers() -> Vec<(Arc<dyn StorageDriver>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FilesystemDriver::new(dir.path()).expect("fs driver");
    vec![
        (Arc::new(InMemoryDriver::new()), None),
        (Arc::new(fs), Some(dir)),
    ]
}

/// A registry over `driver`; a second one over the same driver is a restarted process (no
/// caches).
fn open(driver: &Arc<dyn StorageDriver>) -> Arc<Registry> {
    let options = RegistryOptions {
        delete_enabled: true,
        read_only: false,
    };
    Registry::new(driver.clone(), options)
}

/// An image manifest using `config` and `layer`, tagged `tag`.
async fn put_image(
    reg: &Registry,
    name: &str,
    tag: &str,
    config: &Digest,
    layer: &Digest,
) -> Result<Digest, RegistryError> {
    let body = image(config, layer, "");
    let reference: Reference = tag.parse().expect("tag");
    let put = reg
        .put_manifest(&repo(name), &reference, None, Bytes::from(body))
        .await?;
    Ok(put.digest)
}

/// Whether the blob is under `blobs/` and its content hashes to its digest.
async fn intact(reg: &Registry, digest: &Digest) -> bool {
    let Ok(stream) = reg.read_blob(digest, 0, None).await else {
        return false;
    };
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("read");
    let mut digester = Digester::new(digest.algorithm());
    digester.update(&chunks.concat());
    &digester.finish() == digest
}

async fn in_blobs(reg: &Registry, digest: &Digest) -> bool {
    reg.blob_size(digest).await.expect("stat").is_some()
}

async fn trash_len(reg: &Registry, digest: &Digest) -> usize {
    reg.trash_entries(digest).await.expect("trash").len()
}

/// Lets the clock pass the last touch, so a collector started now sees it as old.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test]
async fn a_blob_mounted_during_gc_survives() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let config = push(&reg, "a", "{}").await;
        let orphan = push(&reg, "a", "uploaded, never referenced").await;
        tick().await;

        // Mounted between mark and sweep: the mount's touch keeps it out of the trash.
        let mut run = reg.start_online_gc(NOW).await.expect("mark");
        let mounted = reg
            .mount_blob(Some(&repo("a")), &repo("b"), &orphan)
            .await
            .expect("mount");
        assert!(mounted.is_some());
        run.sweep().await.expect("sweep");
        let report = run.finish();
        assert!(report.trashed.iter().all(|(d, _)| d != &orphan));
        assert!(intact(&reg, &orphan).await);

        // Mounted between the collector's check and its move: the re-check puts it back.
        tick().await;
        let mut run = reg.start_online_gc(NOW).await.expect("mark");
        let info = reg.blob_info(&orphan).await.expect("stat").expect("stored");
        assert!(run.unused(&orphan, info.modified).await.expect("check"));
        reg.mount_blob(Some(&repo("a")), &repo("c"), &orphan)
            .await
            .expect("mount")
            .expect("mounted");
        let at = run
            .move_to_trash(&orphan)
            .await
            .expect("move")
            .expect("moved");
        run.recheck(&orphan, at, info.size).await.expect("recheck");
        assert_eq!(run.finish().put_back, std::slice::from_ref(&orphan));
        assert!(intact(&reg, &orphan).await && trash_len(&reg, &orphan).await == 0);

        // Mounted after the move: the mount itself restores it from the trash.
        tick().await;
        let mut run = reg.start_online_gc(NOW).await.expect("mark");
        let info = reg.blob_info(&orphan).await.expect("stat").expect("stored");
        assert!(run.unused(&orphan, info.modified).await.expect("check"));
        let at = run
            .move_to_trash(&orphan)
            .await
            .expect("move")
            .expect("moved");
        assert!(!in_blobs(&reg, &orphan).await);
        reg.mount_blob(Some(&repo("a")), &repo("d"), &orphan)
            .await
            .expect("mount")
            .expect("mounted from the trash");
        run.recheck(&orphan, at, info.size).await.expect("recheck");
        assert!(intact(&reg, &orphan).await && trash_len(&reg, &orphan).await == 0);

        // And the mounted blob is usable by a manifest, which the next run then marks. (The
        // config went to the trash in the first run; its mount restores it.)
        assert!(!in_blobs(&reg, &config).await);
        reg.mount_blob(Some(&repo("a")), &repo("d"), &config)
            .await
            .expect("mount")
            .expect("mounted from the trash");
        put_image(&reg, "d", "v1", &config, &orphan)
            .await
            .expect("manifest");
        tick().await;
        let report = reg.collect_garbage_online(NOW).await.expect("gc");
        assert!(report.trashed.is_empty(), "{report:?}");
    }
}

#[tokio::test]
async fn an_upload_in_progress_during_gc_is_untouched_and_completes() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let content = "a layer pushed in two chunks";
        let digest = Digest::sha256_of(content.as_bytes());
        // The same bytes also exist as an old orphan, which GC trashes during the upload.
        push(&reg, "other", content).await;
        let a = repo("a");
        let id = reg.start_upload(&a).await.expect("start");
        let first = Box::pin(futures_util::stream::iter([Ok(Bytes::from(
            &content.as_bytes()[..10],
        ))]));
        reg.append_upload(&a, &id, Some(0), None, first)
            .await
            .expect("chunk");
        tick().await;

        let report = reg.collect_garbage_online(NOW).await.expect("gc");
        assert_eq!(report.trashed.len(), 1, "the old orphan copy: {report:?}");
        assert_eq!(reg.upload_status(&a, &id).await.expect("upload kept"), 10);

        let rest = Box::pin(futures_util::stream::iter([Ok(Bytes::from(
            &content.as_bytes()[10..],
        ))]));
        reg.finish_upload(&a, &id, &digest, Some(10), Some(rest))
            .await
            .expect("finish");
        assert!(intact(&reg, &digest).await);
        assert_eq!(reg.stat_blob(&a, &digest).await.expect("stat"), 28);

        // With a realistic delay the fresh blob is kept; the stale trash copy is dropped once
        // it is old, since the upload touched the digest after it was trashed.
        let hour = OnlineGcOptions {
            delay: Duration::from_secs(3600),
            dry_run: false,
        };
        let report = reg.collect_garbage_online(hour).await.expect("gc");
        assert_eq!((report.kept_recent, report.trashed.len()), (1, 0));
        assert!(intact(&reg, &digest).await);
        tick().await;
        reg.collect_garbage_online(hour).await.expect("gc");
        assert_eq!(trash_len(&reg, &digest).await, 0);
        assert!(intact(&reg, &digest).await);
    }
}

#[tokio::test]
async fn re_pushing_an_orphan_during_gc_keeps_it() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let orphan = push(&reg, "a", "orphan pushed again").await;
        tick().await;

        // Re-pushed between check and move: the upload is discarded (the blob exists), and the
        // collector's re-check sees the push's touch and moves the blob back.
        let mut run = reg.start_online_gc(NOW).await.expect("mark");
        let info = reg.blob_info(&orphan).await.expect("stat").expect("stored");
        assert!(run.unused(&orphan, info.modified).await.expect("check"));
        push(&reg, "b", "orphan pushed again").await;
        let at = run
            .move_to_trash(&orphan)
            .await
            .expect("move")
            .expect("moved");
        run.recheck(&orphan, at, info.size).await.expect("recheck");
        assert_eq!(run.finish().put_back.len(), 1);
        assert!(intact(&reg, &orphan).await && trash_len(&reg, &orphan).await == 0);

        // Re-pushed after the move: the push publishes its own copy; the trashed duplicate is
        // dropped by the re-check.
        tick().await;
        let mut run = reg.start_online_gc(NOW).await.expect("mark");
        let at = run
            .move_to_trash(&orphan)
            .await
            .expect("move")
            .expect("moved");
        push(&reg, "c", "orphan pushed again").await;
        run.recheck(&orphan, at, info.size).await.expect("recheck");
        assert!(intact(&reg, &orphan).await && trash_len(&reg, &orphan).await == 0);
        assert_eq!(
            reg.stat_blob(&repo("c"), &orphan).await.expect("linked"),
            19
        );
    }
}

#[tokio::test]
async fn trash_round_trip_a_writer_restores_an_intact_blob() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let config = push(&reg, "a", "{}").await;
        let layer = push(&reg, "a", "a layer whose manifest comes late").await;
        tick().await;
        let report = reg.collect_garbage_online(NOW).await.expect("gc");
        assert_eq!(report.trashed.len(), 2, "{report:?}");
        assert!(!in_blobs(&reg, &layer).await && trash_len(&reg, &layer).await == 1);

        // The manifest PUT claims both blobs, finds them in the trash and restores them.
        put_image(&reg, "a", "v1", &config, &layer)
            .await
            .expect("manifest restores its blobs");
        assert_eq!(reg.trash_restores(), 2);
        assert!(intact(&reg, &layer).await && intact(&reg, &config).await);
        assert_eq!(trash_len(&reg, &layer).await, 0);
        reg.get_manifest(&repo("a"), &"v1".parse().expect("tag"))
            .await
            .expect("pulls");
    }
}

#[tokio::test]
async fn reads_restore_from_the_trash() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let config = push(&reg, "a", "{}").await;
        let layer = push(&reg, "a", "layer").await;
        let manifest = put_image(&reg, "a", "v1", &config, &layer)
            .await
            .expect("manifest");
        // Force the narrow race: referenced content in the trash (a run that marked before the
        // manifest existed and moved right after its writer checked).
        let run = reg.start_online_gc(NOW).await.expect("mark");
        run.move_to_trash(&layer)
            .await
            .expect("move")
            .expect("moved");
        run.move_to_trash(&manifest)
            .await
            .expect("move")
            .expect("moved");
        drop(run);
        let fresh = open(&driver);
        fresh
            .get_manifest(&repo("a"), &"v1".parse().expect("tag"))
            .await
            .expect("manifest GET restores");
        assert_eq!(fresh.stat_blob(&repo("a"), &layer).await.expect("HEAD"), 5);
        assert!(intact(&fresh, &layer).await && intact(&fresh, &manifest).await);
        assert_eq!(fresh.trash_restores(), 2);
    }
}

#[tokio::test]
async fn purge_deletes_only_old_unreferenced_entries() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let config = push(&reg, "a", "{}").await;
        let layer = push(&reg, "a", "referenced after it was trashed").await;
        let orphan = push(&reg, "a", "never referenced").await;
        tick().await;
        // Run 1 checks the layer, then its manifest arrives, then run 1 moves it: the re-check
        // would undo that, but the process "dies" before it (the run is dropped).
        let run = reg.start_online_gc(NOW).await.expect("mark");
        put_image(&reg, "a", "v1", &config, &layer)
            .await
            .expect("manifest");
        for d in [&layer, &orphan] {
            run.move_to_trash(d).await.expect("move").expect("moved");
        }
        drop(run);
        assert!(!in_blobs(&reg, &layer).await && !in_blobs(&reg, &orphan).await);

        // A run with a long delay: the referenced entry goes back, the orphan waits.
        let hour = OnlineGcOptions {
            delay: Duration::from_secs(3600),
            dry_run: false,
        };
        let report = reg.collect_garbage_online(hour).await.expect("gc");
        assert_eq!(report.restored, std::slice::from_ref(&layer));
        assert_eq!((report.waiting, report.purged.len()), (1, 0));
        assert!(intact(&reg, &layer).await);
        assert_eq!(trash_len(&reg, &orphan).await, 1);

        // Once the entry is older than the delay, it is purged, with its touch marker.
        tick().await;
        let report = reg.collect_garbage_online(NOW).await.expect("gc");
        assert_eq!(report.purged, [(orphan.clone(), 16)]);
        assert_eq!(report.bytes_freed(), 16);
        assert!(!in_blobs(&reg, &orphan).await && trash_len(&reg, &orphan).await == 0);
        assert!(reg.last_touch(&orphan).await.expect("marker").is_none());
        assert!(reg
            .mount_blob(None, &repo("b"), &orphan)
            .await
            .expect("mount")
            .is_none());
        for d in [&config, &layer] {
            assert!(intact(&reg, d).await, "{d} lost");
        }
        reg.get_manifest(&repo("a"), &"v1".parse().expect("tag"))
            .await
            .expect("pulls");
    }
}

#[tokio::test]
async fn an_entry_touched_after_trashing_is_not_purged() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let orphan = push(&reg, "a", "touched while in the trash").await;
        tick().await;
        let run = reg.start_online_gc(NOW).await.expect("mark");
        run.move_to_trash(&orphan)
            .await
            .expect("move")
            .expect("moved");
        drop(run);
        // A writer touched it (then crashed before checking): the purge restores it.
        tick().await;
        reg.touch_blob(&orphan).await.expect("touch");
        tick().await;
        let report = reg.collect_garbage_online(NOW).await.expect("gc");
        assert!(report.purged.is_empty(), "{report:?}");
        assert_eq!(report.restored, std::slice::from_ref(&orphan));
        assert!(intact(&reg, &orphan).await);
    }
}

#[tokio::test]
async fn killed_between_move_and_recheck_nothing_referenced_is_lost() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let config = push(&reg, "a", "{}").await;
        let layer = push(&reg, "a", "layer").await;
        tick().await;
        // The collector checks, a push references the blobs, the collector moves them and is
        // killed before re-checking. Storage holds every blob in blobs/ or in the trash.
        let run = reg.start_online_gc(NOW).await.expect("mark");
        for d in [&config, &layer] {
            let info = reg.blob_info(d).await.expect("stat").expect("stored");
            assert!(run.unused(d, info.modified).await.expect("check"));
        }
        let manifest = put_image(&reg, "a", "v1", &config, &layer)
            .await
            .expect("manifest");
        for d in [&config, &layer] {
            run.move_to_trash(d).await.expect("move").expect("moved");
        }
        drop(run);
        drop(reg);

        // Restart: the next run (even with no delay at all) restores both before anything
        // could be purged, and every blob hashes to its name.
        let reg = open(&driver);
        let report = reg.collect_garbage_online(NOW).await.expect("gc");
        assert_eq!(report.restored.len(), 2, "{report:?}");
        assert!(report.purged.is_empty());
        for d in [&config, &layer, &manifest] {
            assert!(intact(&reg, d).await, "{d} lost");
        }
    }
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let orphan = push(&reg, "a", "orphan").await;
        tick().await;
        let dry = OnlineGcOptions {
            delay: Duration::ZERO,
            dry_run: true,
        };
        let report = reg.collect_garbage_online(dry).await.expect("dry run");
        assert_eq!(report.trashed.len(), 1);
        assert!(in_blobs(&reg, &orphan).await && trash_len(&reg, &orphan).await == 0);
        reg.collect_garbage_online(NOW).await.expect("gc");
        tick().await;
        let report = reg.collect_garbage_online(dry).await.expect("dry run");
        assert_eq!(report.purged.len(), 1);
        assert_eq!(trash_len(&reg, &orphan).await, 1);
    }
}

#[tokio::test]
async fn read_only_mode_stops_the_online_collector() {
    let (driver, _dir) = drivers().remove(0);
    let reg = open(&driver);
    let orphan = push(&reg, "a", "orphan").await;
    tick().await;
    reg.set_read_only(true);
    assert!(matches!(
        reg.collect_garbage_online(NOW).await,
        Err(RegistryError::ReadOnly)
    ));
    // Switched on during a run: the sweep stops before moving anything.
    reg.set_read_only(false);
    let mut run = reg.start_online_gc(NOW).await.expect("mark");
    reg.set_read_only(true);
    assert!(run.sweep().await.is_err());
    assert!(in_blobs(&reg, &orphan).await);
}

#[tokio::test]
async fn a_fresh_marker_is_not_rewritten_and_raises_the_delay() {
    let (driver, _dir) = drivers().remove(0);
    let reg = open(&driver);
    reg.set_touch_refresh(Duration::from_secs(60));
    let orphan = push(&reg, "a", "orphan").await;
    let first = reg.last_touch(&orphan).await.expect("marker").expect("set");
    tick().await;
    push(&reg, "b", "orphan").await;
    assert_eq!(reg.last_touch(&orphan).await.expect("marker"), Some(first));
    // Skipping that write is only safe with delay >= 4 x refresh: a zero delay is raised.
    let report = reg.collect_garbage_online(NOW).await.expect("gc");
    assert_eq!((report.kept_recent, report.trashed.len()), (1, 0));
}

#[tokio::test]
async fn offline_gc_empties_the_trash() {
    for (driver, _dir) in drivers() {
        let reg = open(&driver);
        let config = push(&reg, "a", "{}").await;
        let layer = push(&reg, "a", "layer").await;
        let orphan = push(&reg, "a", "orphan").await;
        tick().await;
        let run = reg.start_online_gc(NOW).await.expect("mark");
        put_image(&reg, "a", "v1", &config, &layer)
            .await
            .expect("manifest");
        for d in [&layer, &orphan] {
            run.move_to_trash(d).await.expect("move").expect("moved");
        }
        drop(run);
        let dry = reg
            .garbage_collect(GcOptions {
                delete_untagged: false,
                dry_run: true,
            })
            .await
            .expect("dry run");
        assert_eq!(dry.trash_restored, std::slice::from_ref(&layer));
        assert_eq!(dry.trash_purged, [(orphan.clone(), 6)]);
        assert_eq!(trash_len(&reg, &orphan).await, 1);
        let report = reg.garbage_collect(GcOptions::default()).await.expect("gc");
        assert_eq!(report.bytes_freed(), 6);
        assert!(intact(&reg, &layer).await);
        assert_eq!(
            trash_len(&reg, &layer).await + trash_len(&reg, &orphan).await,
            0
        );
        assert!(reg.last_touch(&orphan).await.expect("marker").is_none());
        let left = reg.all_trash().await.expect("trash");
        assert!(
            left.iter().all(|(_, entries)| entries.is_empty()),
            "{left:?}"
        );
    }
}
