//! Writing small secret files (htpasswd, signing keys) so that a crash never leaves a
//! half-written one visible: a temporary file beside the target, fsynced, then published by
//! rename (replace) or hard link (create only, so the first of several nodes wins), then the
//! directory fsynced.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// How the finished file is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publish {
    /// Replace whatever is at the path.
    Replace,
    /// Only if nothing is there yet; otherwise leave the existing file alone.
    CreateOnly,
}

/// Writes `bytes` to `path` with permission `mode`. Returns whether this call published the
/// file (`false` only for [`Publish::CreateOnly`] when the path already existed).
pub(crate) fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    publish: Publish,
) -> std::io::Result<bool> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let published = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        match publish {
            Publish::Replace => std::fs::rename(&tmp, path).map(|()| true),
            Publish::CreateOnly => match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            },
        }
    })();
    // After a rename the temporary name is gone already; after a link or a failure it is not.
    let _ = std::fs::remove_file(&tmp);
    let published = published?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(published)
}
