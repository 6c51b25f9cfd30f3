//! The driver conformance suite: one set of checks that every [`StorageDriver`] must pass. The
//! filesystem and in-memory drivers run it in this crate's tests; the S3 driver runs the same
//! functions. It checks only what the trait promises (no listing order, no atomic rename).

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::{StorageDriver, StorageError};

/// Collects a whole stream; fine in tests, never in the server.
async fn read_all(d: &dyn StorageDriver, path: &str, offset: u64, len: Option<u64>) -> Vec<u8> {
    let stream = d.reader(path, offset, len).await.expect("reader");
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("read");
    chunks.concat()
}

/// Runs every check against `d`, which must be empty.
pub async fn run_all(d: &dyn StorageDriver) {
    put_get_and_replace(d).await;
    missing_paths_are_not_found(d).await;
    ranged_reads(d).await;
    writer_publishes_whole_at_commit(d).await;
    cancelled_writer_leaves_nothing(d).await;
    concurrent_writers_publish_one_whole(d).await;
    create_only_writes(d).await;
    copy_and_compose(d).await;
    scratch_writes(d).await;
    walk_is_flat_with_sizes(d).await;
    many_keys(d, 1_100).await;
    list_children(d).await;
    move_and_delete(d).await;
    remove_empty_dir_keeps_content(d).await;
    rejects_path_tricks(d).await;
    large_streamed_content(d).await;
    delete_races_with_writes(d, 200).await;
}

async fn put_get_and_replace(d: &dyn StorageDriver) {
    d.put_content("/c/a/file", Bytes::from_static(b"one"))
        .await
        .expect("put");
    assert_eq!(d.get_content("/c/a/file").await.expect("get"), "one");
    d.put_content("/c/a/file", Bytes::from_static(b"second"))
        .await
        .expect("replace");
    assert_eq!(d.get_content("/c/a/file").await.expect("get"), "second");
    let info = d.stat("/c/a/file").await.expect("stat");
    assert_eq!((info.size, info.is_dir), (6, false));
    assert!(d.stat("/c/a").await.expect("stat dir").is_dir);
}

async fn missing_paths_are_not_found(d: &dyn StorageDriver) {
    assert!(d
        .get_content("/nope/x")
        .await
        .expect_err("missing")
        .is_not_found());
    assert!(d.stat("/nope/x").await.expect_err("missing").is_not_found());
    assert!(d.list("/nope").await.expect_err("missing").is_not_found());
    assert!(d.delete("/nope").await.expect_err("missing").is_not_found());
    assert!(d
        .reader("/nope/x", 0, None)
        .await
        .err()
        .expect("missing")
        .is_not_found());
}

async fn ranged_reads(d: &dyn StorageDriver) {
    d.put_content("/r/data", Bytes::from_static(b"0123456789"))
        .await
        .expect("put");
    assert_eq!(read_all(d, "/r/data", 0, None).await, b"0123456789");
    assert_eq!(read_all(d, "/r/data", 3, Some(4)).await, b"3456");
    assert_eq!(read_all(d, "/r/data", 8, Some(100)).await, b"89");
}

async fn writer_publishes_whole_at_commit(d: &dyn StorageDriver) {
    let mut w = d.writer("/w/obj").await.expect("writer");
    w.write(Bytes::from_static(b"hello ")).await.expect("write");
    w.write(Bytes::from_static(b"world")).await.expect("write");
    assert_eq!(w.size(), 11);
    assert!(
        d.stat("/w/obj")
            .await
            .expect_err("invisible")
            .is_not_found(),
        "a write is invisible until committed"
    );
    w.commit().await.expect("commit");
    assert_eq!(d.get_content("/w/obj").await.expect("get"), "hello world");
    // A second write replaces the first whole, and only at its commit.
    let mut w = d.writer("/w/obj").await.expect("writer");
    w.write(Bytes::from_static(b"new")).await.expect("write");
    assert_eq!(d.get_content("/w/obj").await.expect("old"), "hello world");
    w.commit().await.expect("commit");
    assert_eq!(d.get_content("/w/obj").await.expect("get"), "new");
    let w = d.writer("/w/empty").await.expect("writer");
    w.commit().await.expect("commit empty");
    assert_eq!(d.stat("/w/empty").await.expect("stat").size, 0);
}

async fn cancelled_writer_leaves_nothing(d: &dyn StorageDriver) {
    let mut w = d.writer("/cancel/data").await.expect("writer");
    // Past any part size a driver buffers, so something has left the process.
    for _ in 0..96 {
        w.write(Bytes::from(vec![b'x'; 64 * 1024]))
            .await
            .expect("write");
    }
    w.cancel().await.expect("cancel");
    assert!(d
        .stat("/cancel/data")
        .await
        .expect_err("gone")
        .is_not_found());
    d.put_content("/cancel/kept", Bytes::from_static(b"kept"))
        .await
        .expect("put");
    let mut w = d.writer("/cancel/kept").await.expect("writer");
    w.write(Bytes::from_static(b"other")).await.expect("write");
    w.cancel().await.expect("cancel");
    assert_eq!(d.get_content("/cancel/kept").await.expect("get"), "kept");
}

/// Two writers on one path, their writes interleaved and their commits concurrent: the path
/// ends up holding one of them whole, never a mix (two nodes receiving the same blob).
async fn concurrent_writers_publish_one_whole(d: &dyn StorageDriver) {
    let mut a = d.writer("/cw/obj").await.expect("writer a");
    let mut b = d.writer("/cw/obj").await.expect("writer b");
    for _ in 0..5 {
        a.write(Bytes::from(vec![b'a'; 60_000]))
            .await
            .expect("write a");
        b.write(Bytes::from(vec![b'b'; 40_000]))
            .await
            .expect("write b");
    }
    let (ra, rb) = futures_util::future::join(a.commit(), b.commit()).await;
    ra.expect("commit a");
    rb.expect("commit b");
    let got = d.get_content("/cw/obj").await.expect("get");
    let whole_a = got.len() == 300_000 && got.iter().all(|&c| c == b'a');
    let whole_b = got.len() == 200_000 && got.iter().all(|&c| c == b'b');
    assert!(
        whole_a || whole_b,
        "a mix of two writers: {} bytes",
        got.len()
    );
}

/// Create-only writes: the first wins, later ones leave it as it was; where creation is
/// atomic, exactly one of many concurrent creators wins.
async fn create_only_writes(d: &dyn StorageDriver) {
    assert!(d
        .put_content_if_absent("/co/marker", Bytes::from_static(b"first"))
        .await
        .expect("create"));
    if !d.create_is_atomic() {
        return;
    }
    assert!(!d
        .put_content_if_absent("/co/marker", Bytes::from_static(b"second"))
        .await
        .expect("second create"));
    assert_eq!(d.get_content("/co/marker").await.expect("get"), "first");
    let racers = (0..8).map(|i| d.put_content_if_absent("/co/race", Bytes::from(format!("{i}"))));
    let won = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.expect("create"))
        .filter(|&won| won)
        .count();
    assert_eq!(won, 1, "one creator wins");
}

async fn copy_and_compose(d: &dyn StorageDriver) {
    d.put_content("/cp/a", Bytes::from_static(b"first,"))
        .await
        .expect("put");
    d.put_content("/cp/b", Bytes::new())
        .await
        .expect("put empty");
    d.put_content("/cp/c", Bytes::from_static(b"last"))
        .await
        .expect("put");
    d.copy("/cp/a", "/cp/copied/a").await.expect("copy");
    assert_eq!(d.get_content("/cp/copied/a").await.expect("get"), "first,");
    assert_eq!(d.get_content("/cp/a").await.expect("source kept"), "first,");
    let parts = ["/cp/a", "/cp/b", "/cp/c"].map(str::to_owned);
    d.compose(&parts, "/cp/whole").await.expect("compose");
    assert_eq!(d.get_content("/cp/whole").await.expect("get"), "first,last");
    let missing = ["/cp/a", "/cp/none"].map(str::to_owned);
    assert!(d
        .compose(&missing, "/cp/broken")
        .await
        .expect_err("missing part")
        .is_not_found());
    assert!(d
        .stat("/cp/broken")
        .await
        .expect_err("nothing")
        .is_not_found());
    assert!(d
        .copy("/cp/none", "/cp/x")
        .await
        .expect_err("missing")
        .is_not_found());
}

/// Scratch data reads back like any other, a cancelled scratch write leaves nothing, and
/// moving or composing it publishes it.
async fn scratch_writes(d: &dyn StorageDriver) {
    let mut w = d.scratch_writer("/scratch/one").await.expect("writer");
    w.write(Bytes::from_static(b"ab")).await.expect("write");
    w.commit().await.expect("commit");
    d.put_scratch_content("/scratch/two", Bytes::from_static(b"c"))
        .await
        .expect("put");
    d.put_scratch_content("/scratch/two", Bytes::from_static(b"cd"))
        .await
        .expect("replace");
    assert_eq!(d.get_content("/scratch/two").await.expect("get"), "cd");
    let mut w = d.scratch_writer("/scratch/gone").await.expect("writer");
    w.write(Bytes::from_static(b"x")).await.expect("write");
    w.cancel().await.expect("cancel");
    assert!(d
        .stat("/scratch/gone")
        .await
        .expect_err("cancelled")
        .is_not_found());
    let parts = ["/scratch/one".to_owned(), "/scratch/two".to_owned()];
    d.compose(&parts, "/scratch/composed")
        .await
        .expect("compose");
    assert_eq!(read_all(d, "/scratch/composed", 0, None).await, b"abcd");
    d.move_file("/scratch/one", "/scratch/moved")
        .await
        .expect("move");
    assert_eq!(read_all(d, "/scratch/moved", 0, None).await, b"ab");
    assert_eq!(d.scratch_epoch(), d.scratch_epoch(), "stable in a process");
    d.delete("/scratch").await.expect("clean up");
}

async fn walk_is_flat_with_sizes(d: &dyn StorageDriver) {
    for (p, body) in [("/wk/a/x", "1"), ("/wk/a/b/y", "22"), ("/wk/z", "333")] {
        d.put_content(p, Bytes::from(body)).await.expect("put");
    }
    d.put_content("/wkother", Bytes::from_static(b"not under /wk"))
        .await
        .expect("put");
    let mut got: Vec<(String, u64)> = d
        .walk("/wk")
        .map_ok(|(p, info)| (p, info.size))
        .try_collect()
        .await
        .expect("walk");
    got.sort();
    let want = [("/wk/a/b/y", 2), ("/wk/a/x", 1), ("/wk/z", 3)];
    assert_eq!(got, want.map(|(p, n)| (p.to_owned(), n)));
    let none: Vec<_> = d.walk("/wk-missing").try_collect().await.expect("walk");
    assert!(none.is_empty());
}

/// More than one listing page (1,000 keys on S3) in `list`, `walk` and `delete`.
pub async fn many_keys(d: &dyn StorageDriver, n: usize) {
    let writes = (0..n).map(|i| async move {
        d.put_content(
            &format!("/many/d{}/k{i:05}", i % 2),
            Bytes::from_static(b"k"),
        )
        .await
    });
    futures_util::stream::iter(writes)
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("puts");
    let listed = d.list("/many/d0").await.expect("list");
    assert_eq!(listed.len(), n.div_ceil(2));
    let walked: Vec<_> = d.walk("/many").try_collect().await.expect("walk");
    assert_eq!(walked.len(), n);
    d.delete("/many").await.expect("delete");
    let walked: Vec<_> = d.walk("/many").try_collect().await.expect("walk");
    assert!(walked.is_empty());
}

async fn list_children(d: &dyn StorageDriver) {
    for p in ["/l/b/x", "/l/a/y/z", "/l/c"] {
        d.put_content(p, Bytes::from_static(b"1"))
            .await
            .expect("put");
    }
    let mut names = d.list("/l").await.expect("list");
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}

async fn move_and_delete(d: &dyn StorageDriver) {
    d.put_content("/m/src", Bytes::from_static(b"payload"))
        .await
        .expect("put");
    d.move_file("/m/src", "/m/deep/new/dst")
        .await
        .expect("move");
    assert!(d
        .get_content("/m/src")
        .await
        .expect_err("moved")
        .is_not_found());
    assert_eq!(
        d.get_content("/m/deep/new/dst").await.expect("get"),
        "payload"
    );
    d.delete("/m").await.expect("delete tree");
    assert!(d
        .stat("/m/deep/new/dst")
        .await
        .expect_err("deleted")
        .is_not_found());
    assert!(matches!(
        d.move_file("/m/none", "/m/x").await,
        Err(StorageError::NotFound(_))
    ));
}

async fn remove_empty_dir_keeps_content(d: &dyn StorageDriver) {
    d.put_content("/e/full/file", Bytes::from_static(b"x"))
        .await
        .expect("put");
    assert!(!d.remove_empty_dir("/e/full").await.expect("non-empty"));
    assert!(!d.remove_empty_dir("/e").await.expect("non-empty parent"));
    assert_eq!(d.get_content("/e/full/file").await.expect("kept"), "x");
    assert!(!d.remove_empty_dir("/e/full/file").await.expect("a file"));
    assert_eq!(d.get_content("/e/full/file").await.expect("kept"), "x");
    assert!(!d.remove_empty_dir("/nope/dir").await.expect("missing"));
    d.delete("/e/full/file").await.expect("delete");
    // Wherever directories are real, the now empty one goes; a move into it still works.
    d.remove_empty_dir("/e/full").await.expect("empty");
    assert!(d
        .list("/e/full")
        .await
        .map_or(true, |names| names.is_empty()));
    d.put_content("/e/src", Bytes::from_static(b"y"))
        .await
        .expect("put");
    d.move_file("/e/src", "/e/full/file").await.expect("move");
    assert_eq!(d.get_content("/e/full/file").await.expect("moved"), "y");
}

async fn rejects_path_tricks(d: &dyn StorageDriver) {
    for bad in ["relative", "/a/../b", "/a//b", "/a/./b", "/a/\0"] {
        assert!(
            matches!(
                d.put_content(bad, Bytes::new()).await,
                Err(StorageError::InvalidPath(_))
            ),
            "{bad:?} accepted"
        );
    }
}

async fn large_streamed_content(d: &dyn StorageDriver) {
    let chunk: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let mut w = d.writer("/big/data").await.expect("writer");
    for _ in 0..30 {
        w.write(Bytes::from(chunk.clone())).await.expect("write");
    }
    w.commit().await.expect("commit");
    assert_eq!(d.stat("/big/data").await.expect("stat").size, 3_000_000);
    let back = read_all(d, "/big/data", 2_999_990, None).await;
    assert_eq!(back, chunk[99_990..]);
}

/// Deletes a directory tree `rounds` times while two writers keep adding files to it, as a
/// manifest DELETE removes a tag's directory while a PUT re-tags it. Each delete takes the
/// tree as it is or finds it gone; none fails because the tree changed under it (the
/// filesystem driver answered ENOTEMPTY, a 500), and every write succeeds.
pub async fn delete_races_with_writes(d: &dyn StorageDriver, rounds: usize) {
    let stop = AtomicBool::new(false);
    let writer = |w: usize| {
        let stop = &stop;
        async move {
            let mut errors = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A few names, written again and again: the tree stays small, so each delete
                // is quick, and directories keep reappearing in it.
                let path = format!("/race/tag/index/sha256/{w}-{}/link", n % 8);
                if let Err(e) = d.put_content(&path, Bytes::from_static(b"x")).await {
                    errors.push(format!("put {path}: {e}"));
                }
                n += 1;
                // Drivers that never wait (in memory) must still let the deleter run.
                tokio::task::yield_now().await;
            }
            (n, errors)
        }
    };
    let deleter = async {
        let mut errors = Vec::new();
        for _ in 0..rounds {
            match d.delete("/race/tag").await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => errors.push(format!("delete: {e}")),
            }
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Relaxed);
        errors
    };
    let (mut errors, (n0, e0), (n1, e1)) =
        futures_util::future::join3(deleter, writer(0), writer(1)).await;
    errors.extend(e0.into_iter().chain(e1));
    assert!(
        errors.is_empty(),
        "{} of {rounds} deletes and {} writes failed: {:?}",
        errors.len(),
        n0 + n1,
        &errors[..errors.len().min(5)]
    );
    match d.delete("/race").await {
        Ok(()) | Err(StorageError::NotFound(_)) => {}
        Err(e) => panic!("final delete: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::{FilesystemDriver, InMemoryDriver};

    #[tokio::test]
    async fn filesystem_driver_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path()).expect("driver");
        super::run_all(&d).await;
    }

    /// Without fsync writes are fast, so nearly every recursive delete overlaps one.
    #[tokio::test]
    async fn filesystem_delete_races_with_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path())
            .expect("driver")
            .with_sync(false);
        super::delete_races_with_writes(&d, 2000).await;
    }

    /// Unsynced data lasts as long as the kernel's page cache: the epoch is the boot id, the
    /// same for every process on this machine until it reboots.
    #[test]
    fn filesystem_scratch_epoch_is_the_boot_id() {
        use crate::StorageDriver;
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (a, b) = (
            FilesystemDriver::new(a.path()).expect("driver"),
            FilesystemDriver::new(b.path()).expect("driver"),
        );
        if let Ok(id) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
            assert_eq!(
                a.scratch_epoch(),
                Some(format!("boot-{}", id.trim()).as_str())
            );
        }
        assert_eq!(a.scratch_epoch(), b.scratch_epoch());
        assert_eq!(InMemoryDriver::new().scratch_epoch(), None);
    }

    #[tokio::test]
    async fn in_memory_driver_conforms() {
        super::run_all(&InMemoryDriver::new()).await;
    }
}
