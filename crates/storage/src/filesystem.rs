//! The filesystem driver: storage paths map to files under a root directory, exactly as in
//! registry:2's filesystem driver, so an existing `/var/lib/registry` is served in place.
//!
//! Blocking file I/O runs on tokio's blocking pool. Whole files are published with
//! write-to-temp, fsync, rename, fsync-of-directory, so a crash never leaves a partial file at a
//! visible path.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::cached_read::read_cached;
use crate::driver::check_path;
use crate::read_buffers;
use crate::upload_file::FsUploadFile;
use crate::write_pacing::{Gather, Writeback, WRITEBACK_STEP};
use crate::{ByteStream, FileInfo, FileWriter, StorageDriver, StorageError, UploadFile};

/// Read and write in chunks of this size: large enough for few syscalls, small enough that
/// memory stays flat whatever the blob size.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Where temporary files live until they are renamed into place; outside `docker/` so registry:2
/// never sees them, and on the same filesystem so rename stays atomic.
const TMP_DIR: &str = ".berth-tmp";

/// Temporary files are spread over this many subdirectories: concurrent creates in one
/// directory serialise on its inode lock.
const TMP_SHARDS: u64 = 64;

/// Storage under a local directory.
#[derive(Clone)]
pub struct FilesystemDriver {
    root: Arc<PathBuf>,
    pub(crate) sync: bool,
    /// [`StorageDriver::scratch_epoch`]: the kernel's boot id, or a per-process id where
    /// there is none.
    epoch: Arc<str>,
}

impl FilesystemDriver {
    /// A driver rooted at `root`, created if missing. Temporary files (and trees a delete had
    /// set aside, see [`delete_tree`]) left by a crash are
    /// removed once they are an hour old: they were never visible, so nothing is lost, and a
    /// younger one may belong to another process sharing the directory.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let display = root.display().to_string();
        let tmp = root.join(TMP_DIR);
        for shard in 0..TMP_SHARDS {
            let dir = tmp.join(format!("{shard:02x}"));
            fs::create_dir_all(&dir).map_err(|e| StorageError::from_io(&display, e))?;
            remove_stale_temp_files(&dir);
        }
        Ok(FilesystemDriver {
            root: Arc::new(root),
            sync: true,
            epoch: boot_id().into(),
        })
    }

    /// Whether files are fsynced before they are renamed into place (default: yes). Without
    /// it a process crash is still safe (renames are atomic), but a power loss may lose or
    /// truncate recently acknowledged files, as with registry:2, which never syncs.
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the file at `path` for reading, with its size, on the blocking pool.
    async fn open_sized(&self, path: &str) -> Result<crate::LocalFile, StorageError> {
        let full = self.full(path)?;
        blocking(path, move || {
            let file = File::open(full)?;
            let size = file.metadata()?.len();
            Ok(crate::LocalFile {
                file: Arc::new(file),
                size,
            })
        })
        .await
    }

    pub(crate) fn full(&self, path: &str) -> Result<PathBuf, StorageError> {
        check_path(path)?;
        Ok(self.root.join(path.trim_start_matches('/')))
    }

    /// Writes a whole small file; fsynced when `sync`.
    async fn put(&self, path: &str, content: Bytes, sync: bool) -> Result<(), StorageError> {
        let full = self.full(path)?;
        let tmp = self.temp_path();
        blocking(path, move || {
            let result = write_temp(&tmp, &content, sync)
                .and_then(|()| rename_into_place(&tmp, &full, sync));
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        })
        .await
    }

    /// Opens a streamed write to a temporary file (created with the first data written out),
    /// fsynced at commit when `sync`.
    async fn open_writer(
        &self,
        path: &str,
        sync: bool,
    ) -> Result<Box<dyn FileWriter>, StorageError> {
        let full = self.full(path)?;
        Ok(Box::new(FsWriter {
            path: path.to_owned(),
            full,
            tmp: self.temp_path(),
            file: WriterFile::Unborn,
            buf: Gather::default(),
            sync,
            writeback: Writeback::default(),
        }))
    }

    fn temp_path(&self) -> PathBuf {
        let r = rand::random::<u64>();
        self.root
            .join(TMP_DIR)
            .join(format!("{:02x}", r % TMP_SHARDS))
            .join(format!("{r:016x}"))
    }
}

/// The kernel's boot id: scratch (unsynced) data lives in the page cache until it is written
/// back, so it survives a process crash but maybe not a reboot, which changes this id. Where
/// it cannot be read, a random id per process: scratch data from an earlier process is then
/// always checked before use, which is slower but still safe.
fn boot_id() -> String {
    match fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        Ok(id) if !id.trim().is_empty() => format!("boot-{}", id.trim()),
        _ => format!("process-{:016x}", rand::random::<u64>()),
    }
}

/// Runs blocking file work off the async threads, mapping errors to `path`.
pub(crate) async fn blocking<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| StorageError::from_io(path, e)),
        Err(join) => Err(StorageError::Io {
            path: path.to_owned(),
            source: io::Error::other(join),
        }),
    }
}

fn remove_stale_temp_files(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let stale = |e: &fs::DirEntry| {
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        age.is_some_and(|a| a.as_secs() > 3600)
    };
    for entry in entries.flatten().filter(stale) {
        // Directories are trees a delete renamed aside and a crash stopped removing.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let _ = if is_dir {
            fs::remove_dir_all(entry.path())
        } else {
            fs::remove_file(entry.path())
        };
    }
}

/// How often an in-place recursive removal is retried when a writer added an entry meanwhile.
const REMOVE_ATTEMPTS: usize = 16;

/// Deletes the directory tree `dir` while writers may be adding to it (a tag PUT writing into
/// the tag directory a manifest DELETE removes): `remove_dir_all` alone lists a directory,
/// unlinks what it listed, then fails with ENOTEMPTY if a writer added an entry in between.
///
/// The tree is first renamed to `aside` (a fresh name under the temporary directory): one
/// atomic step that takes exactly what is there at that instant, as the in-memory driver's
/// delete does. A write that lands before it goes with the tree; one after it recreates the
/// path (`rename_into_place` creates the parents again) and is kept, so the delete is ordered
/// before it instead of failing. Writers resolve paths from the root at every call, so none
/// can add to the renamed tree, and removing it cannot race. A crash in between leaves the
/// tree under the temporary directory, removed at the next start like any stale temp file.
///
/// Where the rename is impossible (the directory is a mount point, or the temporary directory
/// is gone), the tree is removed in place, retried a bounded number of times on ENOTEMPTY.
fn delete_tree(dir: &Path, aside: &Path) -> io::Result<()> {
    match fs::rename(dir, aside) {
        Ok(()) => return remove_tree(aside),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => return Err(e),
        Err(_) => {}
    }
    remove_tree(dir)
}

/// `remove_dir_all`, retried when an entry appeared in a directory after it was emptied.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let mut attempts = 1;
    loop {
        match fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            // Gone since the first attempt (a concurrent delete finished it): done.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts > 1 => return Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::DirectoryNotEmpty && attempts < REMOVE_ATTEMPTS =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Makes a rename or a new directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How often `rename_into_place` starts again after a concurrent removal got in its way. Each
/// retry needs another whole removal to land in between, so this is only reached by a tight
/// delete loop on a loaded machine (16 was, in the conformance race test on 2 busy cores).
const PLACE_ATTEMPTS: usize = 256;

/// Renames `src` to `dst`, creating `dst`'s parent, then syncs the parent when `sync`.
///
/// Directories on the way may be removed at any moment: garbage collection removes empty ones
/// (`remove_empty_dir`), a delete takes a whole tree (a manifest DELETE, the tag directory this
/// PUT writes into). Then `create_dir_all` fails (`NotFound`, or `AlreadyExists` for a
/// directory that vanished right after `mkdir` saw it) or the rename does (`NotFound`),
/// although `src` is still there: both are retried with the parents created again, so the
/// write lands after the removal instead of failing. If the removal comes after the rename,
/// it took the new file with it, and there is no directory left to sync.
pub(crate) fn rename_into_place(src: &Path, dst: &Path, sync: bool) -> io::Result<()> {
    let parent = dst
        .parent()
        .ok_or_else(|| io::Error::other("destination has no parent"))?;
    let mut attempts = 1;
    loop {
        match fs::create_dir_all(parent).and_then(|()| fs::rename(src, dst)) {
            Ok(()) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists
                ) && attempts < PLACE_ATTEMPTS
                    && src.exists() =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if sync {
        match sync_dir(parent) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Writes `content` to the new temporary file `tmp`, synced to disk when `sync`.
fn write_temp(tmp: &Path, content: &[u8], sync: bool) -> io::Result<()> {
    let mut f = File::create(tmp)?;
    f.write_all(content)?;
    if sync {
        f.sync_data()?;
    }
    Ok(())
}

/// Gives `src` the name `dst` unless `dst` exists (`Ok(false)` then), creating `dst`'s parent;
/// retried like [`rename_into_place`] when a concurrent removal takes the parent away.
fn link_into_place(src: &Path, dst: &Path, sync: bool) -> io::Result<bool> {
    let parent = dst
        .parent()
        .ok_or_else(|| io::Error::other("destination has no parent"))?;
    let mut attempts = 1;
    loop {
        match fs::create_dir_all(parent).and_then(|()| fs::hard_link(src, dst)) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.exists() => return Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists
                ) && attempts < PLACE_ATTEMPTS =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if sync {
        match sync_dir(parent) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(true)
}

#[async_trait]
impl StorageDriver for FilesystemDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    /// A small file the kernel has cached (a link: every manifest GET by tag reads two) is
    /// read right here, without a hand-off to the blocking pool; anything else goes there.
    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let full = self.full(path)?;
        if let Some(read) = read_cached(&full) {
            return read.map_err(|e| StorageError::from_io(path, e));
        }
        blocking(path, move || fs::read(full).map(Bytes::from)).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.put(path, content, self.sync).await
    }

    /// Renamed into place like any small file, without an fsync.
    async fn put_scratch_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.put(path, content, false).await
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        self.open_writer(path, self.sync).await
    }

    /// A writer that never fsyncs: the data is synced once, when `move_file` or `compose`
    /// publishes it.
    async fn scratch_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        self.open_writer(path, false).await
    }

    fn scratch_epoch(&self) -> Option<&str> {
        Some(&self.epoch)
    }

    async fn lock_upload_file(
        &self,
        path: &str,
    ) -> Result<Option<Box<dyn UploadFile>>, StorageError> {
        let file = FsUploadFile::lock(self, path).await?;
        Ok(file.map(|file| Box::new(file) as Box<dyn UploadFile>))
    }

    /// The complete content goes to a temporary file first, then gets its name with
    /// `link(2)`, which fails if the name exists: atomic, and never a partial file.
    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        let full = self.full(path)?;
        let tmp = self.temp_path();
        let sync = self.sync;
        blocking(path, move || {
            let result =
                write_temp(&tmp, &content, sync).and_then(|()| link_into_place(&tmp, &full, sync));
            let _ = fs::remove_file(&tmp);
            result
        })
        .await
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        let crate::LocalFile { file, size } = self.open_sized(path).await?;
        // Positional reads of bounded chunks, one read ahead of the one being sent: no thread is
        // held while the client is slow, and memory per stream stays at two chunks.
        let end = len.map_or(size, |l| offset.saturating_add(l).min(size));
        let chunks = (offset..end)
            .step_by(CHUNK)
            .map(move |start| (start, (end - start).min(CHUNK as u64) as usize));
        let owned = path.to_owned();
        let stream = futures_util::stream::iter(chunks)
            .map(move |(start, want)| read_chunk(owned.clone(), file.clone(), start, want))
            .buffered(2);
        Ok(Box::pin(stream))
    }

    async fn open_local(&self, path: &str) -> Result<Option<crate::LocalFile>, StorageError> {
        Ok(Some(self.open_sized(path).await?))
    }

    /// Concatenates in the kernel (`copy_file_range` through `io::copy`) into a temporary
    /// file, then publishes it like any other write.
    async fn compose(&self, parts: &[String], dst: &str) -> Result<(), StorageError> {
        let sources = parts
            .iter()
            .map(|p| self.full(p))
            .collect::<Result<Vec<_>, _>>()?;
        let full = self.full(dst)?;
        let tmp = self.temp_path();
        let sync = self.sync;
        blocking(dst, move || {
            let result = (|| {
                let mut out = File::create(&tmp)?;
                for source in &sources {
                    io::copy(&mut File::open(source)?, &mut out)?;
                }
                if sync {
                    out.sync_data()?;
                }
                rename_into_place(&tmp, &full, sync)
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        })
        .await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let full = self.full(path)?;
        blocking(path, move || {
            let m = fs::metadata(full)?;
            Ok(FileInfo {
                size: if m.is_dir() { 0 } else { m.len() },
                modified: m.modified()?,
                is_dir: m.is_dir(),
            })
        })
        .await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let full = self.full(path)?;
        blocking(path, move || {
            fs::read_dir(full)?
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .await
    }

    /// With sync on, the file's data is synced before the rename: it may be scratch data
    /// (an upload's only chunk becoming its blob). A file synced before costs little more.
    async fn move_file(&self, src: &str, dst: &str) -> Result<(), StorageError> {
        let (from, to) = (self.full(src)?, self.full(dst)?);
        let sync = self.sync;
        blocking(src, move || {
            if sync {
                File::open(&from)?.sync_data()?;
            }
            rename_into_place(&from, &to, sync)
        })
        .await
    }

    async fn remove_empty_dir(&self, path: &str) -> Result<bool, StorageError> {
        let full = self.full(path)?;
        blocking(path, move || match fs::remove_dir(&full) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::DirectoryNotEmpty
                        | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let full = self.full(path)?;
        let aside = self.temp_path();
        blocking(path, move || {
            if fs::symlink_metadata(&full)?.is_dir() {
                delete_tree(&full, &aside)
            } else {
                fs::remove_file(&full)
            }
        })
        .await
    }
}

/// Reads `want` bytes at `start`; a file that shrank under us is an error, never a short blob.
async fn read_chunk(
    path: String,
    file: Arc<File>,
    start: u64,
    want: usize,
) -> Result<Bytes, StorageError> {
    blocking(&path, move || {
        if want > read_buffers::SIZE {
            let mut buf = BytesMut::zeroed(want);
            file.read_exact_at(&mut buf, start)?;
            return Ok(buf.freeze());
        }
        let mut buf = read_buffers::take();
        file.read_exact_at(&mut buf[..want], start)?;
        Ok(read_buffers::freeze(buf, want))
    })
    .await
}

/// Writes to a temporary file through a buffer of at most [`CHUNK`] bytes; `commit` fsyncs it
/// and renames it into place.
///
/// Every step that touches the file is one hand-off to the blocking pool, so they are
/// folded together: the file is created by the first write of data (a blob of at most one
/// chunk, or an empty one, costs a single hand-off, in `commit`), and `commit` writes the rest
/// of the buffer, syncs and renames in one. A writer cancelled before any data was written
/// has no file to remove.
struct FsWriter {
    path: String,
    full: PathBuf,
    tmp: PathBuf,
    file: WriterFile,
    buf: Gather,
    sync: bool,
    writeback: Writeback,
}

/// The temporary file of an [`FsWriter`].
enum WriterFile {
    /// Not created yet: nothing was written out.
    Unborn,
    /// Created, with everything written out so far.
    Open(File),
    /// A write failed (the file may exist and is removed on cancel).
    Failed,
}

impl WriterFile {
    /// Takes the file for a blocking step (which creates it if it was never created), leaving
    /// `Failed` until the step hands it back.
    fn take(&mut self, path: &str) -> Result<Option<File>, StorageError> {
        match std::mem::replace(self, WriterFile::Failed) {
            WriterFile::Unborn => Ok(None),
            WriterFile::Open(file) => Ok(Some(file)),
            WriterFile::Failed => Err(StorageError::Io {
                path: path.to_owned(),
                source: io::Error::other("writer already failed"),
            }),
        }
    }
}

/// The writer's open file, created at `tmp` if there is none yet.
fn open_or_create(file: Option<File>, tmp: &Path) -> io::Result<File> {
    match file {
        Some(file) => Ok(file),
        None => File::create(tmp),
    }
}

impl FsWriter {
    async fn write_out(&mut self, data: Bytes) -> Result<(), StorageError> {
        let file = self.file.take(&self.path)?;
        let tmp = self.tmp.clone();
        let written = data.len() as u64;
        let file = blocking(&self.path, move || {
            let mut file = open_or_create(file, &tmp)?;
            file.write_all(&data)?;
            Ok(file)
        })
        .await?;
        if self.sync && self.writeback.due(written, WRITEBACK_STEP) {
            if let Ok(file) = file.try_clone() {
                self.writeback.start(move || {
                    let _ = file.sync_data();
                });
            }
        }
        self.file = WriterFile::Open(file);
        Ok(())
    }

    async fn remove_temp(&mut self) -> Result<(), StorageError> {
        if let WriterFile::Unborn = std::mem::replace(&mut self.file, WriterFile::Failed) {
            return Ok(());
        }
        let tmp = self.tmp.clone();
        blocking(&self.path, move || match fs::remove_file(tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }
}

#[async_trait]
impl FileWriter for FsWriter {
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
        let (rest, tmp, full, sync) = (
            self.buf.rest(),
            self.tmp.clone(),
            self.full.clone(),
            self.sync,
        );
        let published = match self.file.take(&self.path) {
            Ok(file) => {
                blocking(&self.path, move || {
                    let mut file = open_or_create(file, &tmp)?;
                    file.write_all(&rest)?;
                    if sync {
                        file.sync_data()?;
                    }
                    drop(file);
                    rename_into_place(&tmp, &full, sync)
                })
                .await
            }
            Err(e) => Err(e),
        };
        if published.is_err() {
            let _ = self.remove_temp().await;
        }
        published
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        self.remove_temp().await
    }
}
