//! The registry core's error enum; the API maps each variant to an OCI error code and status.

use berth_oci::{Digest, OciError};
use berth_storage::StorageError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Client input did not parse (digest, name, tag, manifest).
    #[error(transparent)]
    Invalid(#[from] OciError),
    /// The blob is not known in this repository.
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    /// The upload session does not exist (finished, cancelled, purged or never started).
    #[error("upload unknown: {0}")]
    UploadUnknown(String),
    /// The uploaded content does not hash to the digest the client gave.
    #[error("digest mismatch: client said {expected}, content is {actual}")]
    DigestMismatch {
        /// The digest the client claimed.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// A chunk did not start where the upload ends (out of order or overlapping).
    #[error("chunk starts at {got}, upload is at {expected}")]
    RangeInvalid {
        /// Bytes received so far.
        expected: u64,
        /// Where the chunk claimed to start.
        got: u64,
    },
    /// The chunk's length did not match its Content-Range.
    #[error("chunk length {got} does not match Content-Range length {expected}")]
    ChunkLengthMismatch {
        /// Length from Content-Range.
        expected: u64,
        /// Bytes actually received.
        got: u64,
    },
    /// The upload cannot go on as asked (too many chunks).
    #[error("{0}")]
    UploadInvalid(String),
    /// The manifest (by tag or digest) is not in this repository.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// A blob the manifest references is missing from this repository.
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(Digest),
    /// A child manifest of an index is missing from this repository.
    #[error("index references unknown manifest {0}")]
    ManifestChildUnknown(Digest),
    /// The repository does not exist.
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    /// Deletes are disabled (`storage.delete.enabled: false`).
    #[error("deletes are disabled on this registry")]
    DeleteDisabled,
    /// The registry is in read-only maintenance mode.
    #[error("registry is in read-only mode")]
    ReadOnly,
    /// New upload data is refused: the disk is above its watermark.
    #[error("{0}")]
    SpaceLow(String),
    /// The request body was cut short or unreadable.
    #[error("request body: {0}")]
    Body(std::io::Error),
    /// A maintenance operation (garbage collection) stopped rather than risk losing data.
    #[error("{0}")]
    WouldLoseData(String),
    /// Stored content is damaged (it no longer matches its digest): a server fault, logged,
    /// never blamed on the client.
    #[error("stored content is damaged: {0}")]
    Corrupt(String),
    /// Storage failed; details are logged, never sent to clients.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
