//! Storage errors, kept small so the registry core can tell "not there" from "broken".

use std::io;

/// What went wrong in a storage driver.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The path does not exist.
    #[error("path not found: {0}")]
    NotFound(String),
    /// The path is not one the driver accepts (empty component, `..`, not absolute).
    #[error("invalid storage path: {0}")]
    InvalidPath(String),
    /// The device has no room left; reported to clients as a clear "disk full" error.
    #[error("storage is full: {0}")]
    Full(String),
    /// Any other I/O failure.
    #[error("storage I/O error on {path}: {source}")]
    Io {
        /// The storage path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A remote store (S3) refused or failed a request after its retries, or could not be
    /// reached. `message` is the store's answer, for the log; clients get a generic error.
    #[error("storage backend error on {path}: {message}")]
    Backend {
        /// The storage path involved.
        path: String,
        /// What the store answered (status, error code, message) or why it could not be reached.
        message: String,
    },
}

impl StorageError {
    /// Wraps an I/O error for `path`, recognising "not found" and "no space left".
    pub fn from_io(path: &str, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound(path.to_owned()),
            io::ErrorKind::StorageFull => StorageError::Full(path.to_owned()),
            _ if source.raw_os_error() == Some(28) => StorageError::Full(path.to_owned()),
            _ => StorageError::Io {
                path: path.to_owned(),
                source,
            },
        }
    }

    /// True when the error means the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}
