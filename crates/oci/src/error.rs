//! The error type of the OCI parsers. The API crate maps each variant to an OCI error code.

/// Why a piece of client input is not a valid OCI value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    /// The digest does not follow `algorithm:encoded`, or its encoding is wrong for the algorithm.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// The digest is well-formed but uses an algorithm Berth does not verify.
    #[error("unsupported digest algorithm {0:?} (sha256 and sha512 are supported)")]
    UnsupportedAlgorithm(String),
    /// The repository name does not match the distribution spec's grammar.
    #[error("invalid repository name {0:?}")]
    InvalidName(String),
    /// The tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    /// The manifest body is not a manifest Berth can store.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
}
