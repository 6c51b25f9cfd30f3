//! An upload session's content as one file on a filesystem
//! ([`StorageDriver::lock_upload_file`](crate::StorageDriver::lock_upload_file)).
//!
//! Object stores cannot append, so sessions there are immutable parts composed into the blob
//! at the end (see `berth_registry`'s uploads). On a filesystem that compose copies every byte
//! a second time (a quarter of a chunked push's time, measured: docs/performance.md), so here
//! each chunk is written in place at its offset in one file, which is published by a rename.
//!
//! What made parts safe is kept by a lock instead: `flock(2)` on the file, taken before the
//! session's state is read and released after the new state is saved. It excludes requests
//! in this process and in other processes sharing the directory (on NFS, Linux turns it into a
//! lock the server arbitrates). It belongs to the open file, and every write holds the file
//! open until it ends, so a write still running on the blocking pool for a request that was
//! dropped keeps the lock: a later chunk can never be overwritten by a late write of an earlier
//! one. A process that dies releases it (the kernel closes its files).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::filesystem::{blocking, rename_into_place};
use crate::write_pacing::{Gather, Writeback, WRITEBACK_STEP};
use crate::{FileWriter, FilesystemDriver, StorageError, UploadFile};

/// Opens after the file was renamed (published) or removed between an open and its lock.
/// Each needs another request to have finished or cancelled the session meanwhile, so a few
/// are plenty; past them the request fails rather than loop.
const REOPEN_ATTEMPTS: usize = 16;

/// Longest pause between two tries of a lock another request holds. The wait itself is as
/// long as that request (one chunk) lasts, as for the in-process session lock before it; a
/// client that gives up drops its wait.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Unsynced bytes at the end of a chunk that start a [`Writeback`] then.
const CHUNK_WRITEBACK: u64 = 1 << 20;

/// A locked upload file; the lock goes with the last of this handle and its writes.
pub(crate) struct FsUploadFile {
    driver: FilesystemDriver,
    path: String,
    full: PathBuf,
    file: Arc<File>,
    len: u64,
}

impl FsUploadFile {
    /// The upload file at `path`, locked; `None` where the filesystem has no `flock` (then
    /// uploads there are parts, as on object stores).
    pub(crate) async fn lock(
        driver: &FilesystemDriver,
        path: &str,
    ) -> Result<Option<Self>, StorageError> {
        let full = driver.full(path)?;
        let mut pause = Duration::from_millis(1);
        let mut reopened = 0;
        loop {
            let at = full.clone();
            match blocking(path, move || try_lock(&at)).await? {
                Attempt::Locked(file, len) => {
                    return Ok(Some(FsUploadFile {
                        driver: driver.clone(),
                        path: path.to_owned(),
                        full,
                        file: Arc::new(file),
                        len,
                    }))
                }
                Attempt::NoLocks(e) => {
                    static WARNED: Once = Once::new();
                    WARNED.call_once(|| {
                        tracing::warn!(
                            error = %e,
                            "this filesystem has no flock(2): uploads are stored as parts and \
                             composed at the end (slower chunked pushes, just as safe)"
                        )
                    });
                    return Ok(None);
                }
                Attempt::Busy => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Attempt::Replaced if reopened < REOPEN_ATTEMPTS => reopened += 1,
                Attempt::Replaced => {
                    return Err(StorageError::Io {
                        path: path.to_owned(),
                        source: io::Error::other("the upload file kept being replaced"),
                    })
                }
            }
        }
    }
}

/// What one try at the lock found.
enum Attempt {
    /// The file, locked, and its length.
    Locked(File, u64),
    /// Another open file holds the lock.
    Busy,
    /// The file locked is no longer at the path: published or removed meanwhile.
    Replaced,
    /// The filesystem does not do `flock` (some FUSE and network filesystems).
    NoLocks(io::Error),
}

fn try_lock(full: &Path) -> io::Result<Attempt> {
    // `create` only in an existing directory: a made-up session id stays `NotFound`.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(full)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Attempt::Busy),
        Err(TryLockError::Error(e)) if no_locks(&e) => return Ok(Attempt::NoLocks(e)),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    // The holder we waited for may have renamed the file into its blob or removed the whole
    // session: the file we opened is then no longer this session's, and writing into it could
    // change a published blob.
    let held = file.metadata()?;
    match fs::metadata(full) {
        Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
            Ok(Attempt::Locked(file, held.len()))
        }
        Ok(_) => Ok(Attempt::Replaced),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Attempt::Replaced),
        Err(e) => Err(e),
    }
}

/// Whether `flock` failed because the filesystem does not do it, rather than for this file.
fn no_locks(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(code) if [rustix::io::Errno::NOLCK, rustix::io::Errno::NOSYS, rustix::io::Errno::OPNOTSUPP]
                .iter()
                .any(|errno| errno.raw_os_error() == code)
        )
}

#[async_trait]
impl UploadFile for FsUploadFile {
    fn size(&self) -> u64 {
        self.len
    }

    fn writer_at(&self, offset: u64) -> Box<dyn FileWriter> {
        Box::new(RangeWriter {
            path: self.path.clone(),
            file: self.file.clone(),
            full: self.full.clone(),
            next: offset,
            buf: Gather::default(),
            sync: self.driver.sync,
            writeback: Writeback::default(),
        })
    }

    /// With sync on, the data is synced before the rename, as `move_file` does: it was
    /// written as scratch data.
    async fn publish(self: Box<Self>, len: u64, dst: &str) -> Result<(), StorageError> {
        let to = self.driver.full(dst)?;
        let (file, from, sync) = (self.file.clone(), self.full.clone(), self.driver.sync);
        blocking(&self.path, move || {
            file.set_len(len)?;
            if sync {
                file.sync_data()?;
            }
            rename_into_place(&from, &to, sync)
        })
        .await
    }
}

/// Writes at increasing offsets, gathered into writes of about a chunk ([`Gather`]). Each write
/// holds the file (and so the lock) until it has ended, even when its request is gone.
struct RangeWriter {
    path: String,
    full: PathBuf,
    file: Arc<File>,
    /// Where the next write out goes.
    next: u64,
    buf: Gather,
    /// Whether the published blob will be synced: then its data starts to go to disk early.
    sync: bool,
    writeback: Writeback,
}

impl RangeWriter {
    async fn write_out(&mut self, data: Bytes) -> Result<(), StorageError> {
        let (file, at, written) = (self.file.clone(), self.next, data.len() as u64);
        self.next += written;
        #[cfg(test)]
        let full = self.full.clone();
        blocking(&self.path, move || {
            #[cfg(test)]
            write_gate::pass(&full);
            file.write_all_at(&data, at)
        })
        .await?;
        self.start_writeback(written, WRITEBACK_STEP);
        Ok(())
    }

    /// [`Writeback`] through a file opened again by path: a duplicate of the locked one would
    /// hold the lock, and the next chunk would wait for the sync.
    fn start_writeback(&mut self, written: u64, step: u64) {
        if self.sync && self.writeback.due(written, step) {
            let full = self.full.clone();
            self.writeback.start(move || {
                if let Ok(file) = File::open(full) {
                    let _ = file.sync_data();
                }
            });
        }
    }
}

#[async_trait]
impl FileWriter for RangeWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        match self.buf.add(data) {
            Some(ready) => self.write_out(ready).await,
            None => Ok(()),
        }
    }

    fn size(&self) -> u64 {
        self.buf.size()
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let rest = self.buf.rest();
        if !rest.is_empty() {
            self.write_out(rest).await?;
        }
        // The chunk's tail goes to disk while the client sends the next request.
        self.start_writeback(0, CHUNK_WRITEBACK);
        Ok(())
    }

    /// What was written stays, past what the session counts.
    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::{FilesystemDriver, StorageDriver, UploadFile};

    const FILE: &str = "/docker/registry/v2/repositories/a/_uploads/u/berthdata";

    async fn driver() -> (tempfile::TempDir, FilesystemDriver) {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = FilesystemDriver::new(dir.path()).expect("driver");
        let session = dir
            .path()
            .join("docker/registry/v2/repositories/a/_uploads/u");
        std::fs::create_dir_all(session).expect("session dir");
        (dir, driver)
    }

    async fn lock(driver: &FilesystemDriver) -> Box<dyn UploadFile> {
        driver
            .lock_upload_file(FILE)
            .await
            .expect("lock")
            .expect("a filesystem has upload files")
    }

    async fn write(file: &dyn UploadFile, at: u64, data: &'static [u8]) {
        let mut writer = file.writer_at(at);
        writer.write(Bytes::from_static(data)).await.expect("write");
        writer.commit().await.expect("commit");
    }

    #[tokio::test]
    async fn chunks_land_at_their_offsets_and_publishing_cuts_what_was_not_counted() {
        let (_dir, driver) = driver().await;
        let file = lock(&driver).await;
        assert_eq!(file.size(), 0);
        write(&*file, 0, b"hello ").await;
        // A chunk refused after it was written: bytes past the count, then overwritten.
        write(&*file, 6, b"XXXXXXXXXXXX").await;
        drop(file);
        let file = lock(&driver).await;
        assert_eq!(file.size(), 18, "what was written, counted or not");
        write(&*file, 6, b"world").await;
        file.publish(11, "/blob").await.expect("publish");
        assert_eq!(
            driver.get_content("/blob").await.expect("blob"),
            "hello world"
        );
    }

    /// Chunks and blobs big enough to start background syncs (early writeback) while they
    /// are written come out byte for byte.
    #[tokio::test]
    async fn content_written_back_early_is_intact() {
        let (_dir, driver) = driver().await;
        let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
        let file = lock(&driver).await;
        for (i, chunk) in data.chunks(5 << 20).enumerate() {
            let mut writer = file.writer_at((i as u64) * (5 << 20));
            for piece in chunk.chunks(100_000) {
                writer
                    .write(Bytes::copy_from_slice(piece))
                    .await
                    .expect("write");
            }
            writer.commit().await.expect("commit");
        }
        file.publish(data.len() as u64, "/blob")
            .await
            .expect("publish");
        assert!(driver.get_content("/blob").await.expect("blob") == data);
        let mut writer = driver.writer("/whole").await.expect("writer");
        for piece in data.chunks(300_000) {
            writer
                .write(Bytes::copy_from_slice(piece))
                .await
                .expect("write");
        }
        writer.commit().await.expect("commit");
        assert!(driver.get_content("/whole").await.expect("whole") == data);
    }

    /// Filesystems without `flock` fall back to parts; a lock refused for this file does not.
    #[test]
    fn only_a_filesystem_without_locks_falls_back() {
        use rustix::io::Errno;
        let error = |errno: Errno| std::io::Error::from_raw_os_error(errno.raw_os_error());
        for errno in [Errno::NOLCK, Errno::OPNOTSUPP, Errno::NOSYS] {
            assert!(super::no_locks(&error(errno)), "{errno}");
        }
        for errno in [Errno::BADF, Errno::IO, Errno::INTR] {
            assert!(!super::no_locks(&error(errno)), "{errno}");
        }
    }

    #[tokio::test]
    async fn a_session_that_does_not_exist_is_not_found() {
        let (_dir, driver) = driver().await;
        let missing = "/docker/registry/v2/repositories/a/_uploads/nope/berthdata";
        let err = driver
            .lock_upload_file(missing)
            .await
            .err()
            .expect("refused");
        assert!(err.is_not_found(), "{err}");
    }

    /// The lock holds across handles, and a published file is never written through a
    /// handle that was waiting for it: that one gets a new, empty file.
    #[tokio::test]
    async fn one_holder_at_a_time_and_never_the_published_file() {
        let (_dir, driver) = driver().await;
        let first = lock(&driver).await;
        write(&*first, 0, b"abc").await;
        let waiting = {
            let driver = driver.clone();
            tokio::spawn(async move { lock(&driver).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the lock is held");
        first.publish(3, "/blob").await.expect("publish");
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the lock is released")
            .expect("task");
        assert_eq!(second.size(), 0, "a new file, not the published one");
        write(&*second, 0, b"zzz").await;
        assert_eq!(driver.get_content("/blob").await.expect("blob"), "abc");
    }

    /// A write whose request was dropped while its data was being written still holds the
    /// lock until it has ended: the write is held at the gate on the blocking pool, the
    /// request's task and file dropped, and the next lock must wait for the gate to open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_write_keeps_the_lock_until_it_ends() {
        let (_dir, driver) = driver().await;
        let file = lock(&driver).await;
        let gate = super::write_gate::hold(&driver.full(FILE).expect("path"));
        let mut writer = file.writer_at(0);
        let big = Bytes::from(vec![7u8; 8 << 20]);
        let write = tokio::spawn(async move { writer.write(big).await });
        tokio::task::block_in_place(|| gate.reached());
        write.abort();
        drop(file);

        let next = tokio::spawn(async move { lock(&driver).await.size() });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !next.is_finished(),
            "locked while a write was still going on"
        );
        gate.open();
        assert_eq!(next.await.expect("lock"), 8 << 20, "the write ended first");
    }
}

/// Holds a write to one file on the blocking pool until the test lets it go, so that a test
/// can act while a write is in the middle of running.
#[cfg(test)]
mod write_gate {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Mutex;

    struct Held {
        path: PathBuf,
        reached: Sender<()>,
        open: Receiver<()>,
    }

    static GATES: Mutex<Vec<Held>> = Mutex::new(Vec::new());

    /// The test's side of a gate.
    pub(super) struct Gate {
        reached: Receiver<()>,
        open: Sender<()>,
    }

    impl Gate {
        /// Waits until a write to the file has reached the gate.
        pub(super) fn reached(&self) {
            let wait = std::time::Duration::from_secs(30);
            self.reached
                .recv_timeout(wait)
                .expect("a write reached the gate");
        }

        /// Lets the write go on.
        pub(super) fn open(self) {
            let _ = self.open.send(());
        }
    }

    /// Puts a gate before the next write to `path`.
    pub(super) fn hold(path: &Path) -> Gate {
        let (reached_tx, reached) = channel();
        let (open, open_rx) = channel();
        let held = Held {
            path: path.to_owned(),
            reached: reached_tx,
            open: open_rx,
        };
        GATES.lock().expect("gates").push(held);
        Gate { reached, open }
    }

    /// Called by every write on the blocking pool: waits at the gate put before it, if any.
    pub(super) fn pass(path: &Path) {
        let held = {
            let mut gates = GATES.lock().expect("gates");
            let at = gates.iter().position(|g| g.path == path);
            at.map(|i| gates.remove(i))
        };
        if let Some(held) = held {
            let _ = held.reached.send(());
            let _ = held.open.recv();
        }
    }
}
