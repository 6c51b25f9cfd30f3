//! `berth copy` and `berth sync`: images moved between registries, OCI image layouts and
//! docker-archive tarballs, with every platform of an index (or one, `--platform`), referrers
//! along (`--referrers`), digests preserved and blobs the target has skipped or mounted.
//!
//! The copy walks the image graph bottom-up ([`copy`]): blobs first, then child manifests by
//! digest, then referrers, and the tagged manifest last, so a tag at the target never points
//! at an incomplete image, and a re-run after an interruption finds what is already there
//! (blobs by `HEAD`, manifests by digest) and moves only the rest. Every byte read from a
//! source is bounded (manifests at 4 MiB, like registry:2) or streamed with its digest and
//! size checked as it passes ([`verify`]), so memory stays flat and bad content never lands.
//!
//! The ends are two small traits ([`endpoint::Source`], [`endpoint::Target`]) implemented by
//! a registry ([`registry`], reusing the pull-through cache's token auth), a layout
//! directory ([`layout`]) and a tarball ([`archive`]).
//!
//! [`scan`] runs a scanner on an image and attaches its report as a referrer, written with
//! the same registry target.

pub mod archive;
pub mod client;
pub mod copy;
pub mod creds;
pub mod endpoint;
pub mod known;
pub mod layout;
pub mod local;
pub mod platform;
pub mod progress;
pub mod registry;
pub mod scan;
pub mod sync;
pub mod transport;
pub mod verify;
pub mod watchdog;

pub use copy::{copy_image, CopyOptions, Summary};
pub use endpoint::{open_source, open_target, EndOptions};
pub use progress::{Progress, ProgressMode};
pub use transport::{Location, RegistryRef};

/// Why a copy or sync failed, by whose fault: the process exit code says which (documented
/// in docs/copy-sync.md), so scripts can tell a missing source from a refusing target.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The command line or sync file is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The source failed: not found, refused, unreachable (exit 3).
    #[error("source: {0}")]
    Source(String),
    /// The target failed: refused a push, unreachable, disk full (exit 4).
    #[error("destination: {0}")]
    Target(String),
    /// The scanner of `berth scan` failed, timed out or wrote no valid report (exit 7).
    #[error("scanner: {0}")]
    Scanner(String),
    /// Content from the source is invalid: wrong digest or size, too large, not a manifest
    /// (exit 5). Nothing of it was stored.
    #[error("refused content: {0}")]
    Content(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Source(_) => 3,
            Failure::Target(_) => 4,
            Failure::Content(_) => 5,
            Failure::Scanner(_) => 7,
        }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Failure>;
