//! Reading a small file on an async thread when that cannot block: what the filesystem driver
//! does for links instead of a hand-off to the blocking pool.

use std::io;
use std::path::Path;

use bytes::Bytes;

/// Files at most this big may be read on an async thread when cached.
pub(crate) const CACHED_READ_MAX: u64 = 16 * 1024;

/// Reads a whole small file only if that cannot block: the path is resolved from the kernel's
/// dentry cache alone (`openat2` with `RESOLVE_CACHED`) and the data read from the page cache
/// alone (`preadv2` with `RWF_NOWAIT`). `None` whenever that is not possible (not cached, too
/// big, not a regular file, an older kernel, any error but a cached "not found"): the caller
/// then reads on the blocking pool, which also reports the real error. A hand-off to the
/// blocking pool costs two thread switches, far more than these four system calls.
#[cfg(target_os = "linux")]
pub(crate) fn read_cached(full: &Path) -> Option<io::Result<Bytes>> {
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustix::fs::{fstat, openat2, FileType, Mode, OFlags, ResolveFlags, CWD};
    use rustix::io::{preadv2, Errno, ReadWriteFlags};

    /// Set once the kernel (older than 5.12: `EINVAL`; without `openat2`: `ENOSYS`) or a
    /// seccomp profile (`EPERM`) refuses the call, so it is not tried on every read again.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return None;
    }
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = match openat2(CWD, full, flags, Mode::empty(), ResolveFlags::CACHED) {
        Ok(fd) => fd,
        // A cached negative entry: the path is known not to exist.
        Err(Errno::NOENT) => return Some(Err(io::ErrorKind::NotFound.into())),
        Err(Errno::INVAL | Errno::NOSYS | Errno::PERM) => {
            UNSUPPORTED.store(true, Ordering::Relaxed);
            return None;
        }
        Err(_) => return None,
    };
    let stat = fstat(&fd).ok()?;
    let size = u64::try_from(stat.st_size).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile || size > CACHED_READ_MAX {
        return None;
    }
    let mut buf = vec![0u8; usize::try_from(size).ok()?];
    let mut done = 0;
    while done < buf.len() {
        let mut slice = [io::IoSliceMut::new(&mut buf[done..])];
        match preadv2(&fd, &mut slice, done as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(_) => return None,
        }
    }
    // Files are published by rename and never rewritten in place, so the size read is the
    // file's; a shorter read is left to the blocking path to make sense of.
    (done == buf.len()).then(|| Ok(Bytes::from(buf)))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_cached(_full: &Path) -> Option<io::Result<Bytes>> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io;

    use super::{read_cached, CACHED_READ_MAX};

    /// The inline read answers for small cached files and cached misses, and steps aside
    /// (`None`) for everything else.
    #[test]
    fn cached_reads_of_small_files_stay_inline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("link");
        std::fs::write(&small, b"sha256:abc").expect("write");
        let read = read_cached(&small).expect("cached").expect("read");
        assert_eq!(read, "sha256:abc");

        let missing = dir.path().join("missing");
        assert!(std::fs::metadata(&missing).is_err(), "caches the miss");
        let miss = read_cached(&missing).expect("cached miss");
        assert_eq!(miss.expect_err("missing").kind(), io::ErrorKind::NotFound);

        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; CACHED_READ_MAX as usize + 1]).expect("write");
        assert!(read_cached(&big).is_none(), "too big for the async thread");
        assert!(read_cached(dir.path()).is_none(), "a directory");
    }
}
