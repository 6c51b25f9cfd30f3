//! The spool directory: where cold blob downloads are written while they arrive (unnamed
//! `O_TMPFILE` files, see [`crate::blob`]). `proxy.spooldir` when set, else the filesystem
//! storage's root (same disk as the blobs), else the system temp directory (`TMPDIR`, else
//! `/tmp`). It is checked once at startup, so a missing or read-only directory (the
//! `FROM scratch` image has no `/tmp`) stops the server instead of failing the first cold pull.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_config::{Config, StorageDriverConfig};

/// Where the spool directory came from, for the startup log and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolSource {
    /// `proxy.spooldir`.
    Configured,
    /// `storage.filesystem.rootdirectory`.
    StorageRoot,
    /// The system temp directory.
    TempDir,
}

impl SpoolSource {
    /// How the directory was chosen, as the log and errors say it.
    pub fn describe(self) -> &'static str {
        match self {
            SpoolSource::Configured => "set by proxy.spooldir",
            SpoolSource::StorageRoot => {
                "proxy.spooldir is unset, so the storage.filesystem.rootdirectory"
            }
            SpoolSource::TempDir => {
                "proxy.spooldir is unset and the storage is not a local directory, so the system temp directory: TMPDIR, else /tmp"
            }
        }
    }
}

/// The spool directory the configuration asks for, and why.
pub fn choose(config: &Config) -> (PathBuf, SpoolSource) {
    if let Some(dir) = config.proxy.as_ref().and_then(|p| p.spooldir.clone()) {
        return (dir, SpoolSource::Configured);
    }
    match &config.storage.driver {
        StorageDriverConfig::Filesystem { rootdirectory, .. } => {
            (rootdirectory.clone(), SpoolSource::StorageRoot)
        }
        _ => (std::env::temp_dir(), SpoolSource::TempDir),
    }
}

/// Checks that `dir` exists, is a directory, and takes an unnamed temp file with some bytes
/// written (exactly what a download does). The error names `proxy.spooldir`, the directory,
/// the OS error and the fix.
pub fn check(dir: &Path, source: SpoolSource) -> Result<(), String> {
    let problem = match std::fs::metadata(dir) {
        Err(e) => Some(format!("cannot use it: {e}")),
        Ok(m) if !m.is_dir() => Some("it is not a directory".to_owned()),
        Ok(_) => probe(dir)
            .err()
            .map(|e| format!("cannot create and write a temporary file in it: {e}")),
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "proxy.spooldir: the pull-through cache spools downloads in {} ({}), but {problem}; set proxy.spooldir (or REGISTRY_PROXY_SPOOLDIR) to a writable local directory, such as the data volume (/var/lib/registry in the image)",
            dir.display(),
            source.describe(),
        )),
    }
}

/// An unnamed file in `dir`, written and synced, then dropped (nothing stays behind).
fn probe(dir: &Path) -> std::io::Result<()> {
    let mut file = tempfile::tempfile_in(dir)?;
    file.write_all(&[0u8; 4096])?;
    file.flush()?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_writable_directory_passes_and_keeps_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        check(dir.path(), SpoolSource::Configured).expect("writable");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_missing_directory_or_a_file_is_refused_with_the_key_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let e = check(&missing, SpoolSource::Configured).expect_err("missing");
        for part in [
            "proxy.spooldir",
            &missing.display().to_string(),
            "No such file or directory",
            "set proxy.spooldir",
            "writable local directory",
        ] {
            assert!(e.contains(part), "{part:?} in {e}");
        }
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("file");
        let e = check(&file, SpoolSource::TempDir).expect_err("file");
        assert!(e.contains("not a directory"), "{e}");
        assert!(e.contains("system temp directory"), "{e}");
    }

    #[test]
    fn a_read_only_directory_is_refused_unless_permissions_do_not_bind_us() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555))
            .expect("chmod");
        // Root ignores permission bits (the integration test runs the server as another user).
        let bound = std::fs::File::create(dir.path().join("x")).is_err();
        let result = check(dir.path(), SpoolSource::StorageRoot);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        if bound {
            let e = result.expect_err("read-only");
            assert!(e.contains("Permission denied"), "{e}");
            assert!(e.contains("rootdirectory"), "{e}");
        }
    }

    #[test]
    fn the_default_follows_the_storage() {
        let fs = berth_config::load_str(
            "version: 0.1\nstorage: {filesystem: {rootdirectory: /srv/r}}\nproxy: {remoteurl: https://a}\n",
            "t.yml",
            &[],
        )
        .expect("config")
        .config;
        assert_eq!(
            choose(&fs),
            (PathBuf::from("/srv/r"), SpoolSource::StorageRoot)
        );
        let mem = berth_config::load_str(
            "version: 0.1\nstorage: {inmemory: {}}\nproxy: {remoteurl: https://a}\n",
            "t.yml",
            &[],
        )
        .expect("config")
        .config;
        assert_eq!(choose(&mem), (std::env::temp_dir(), SpoolSource::TempDir));
        let set = berth_config::load_str(
            "version: 0.1\nstorage: {filesystem: {rootdirectory: /srv/r}}\nproxy: {remoteurl: https://a, spooldir: /spool}\n",
            "t.yml",
            &[],
        )
        .expect("config")
        .config;
        assert_eq!(
            choose(&set),
            (PathBuf::from("/spool"), SpoolSource::Configured)
        );
    }
}
