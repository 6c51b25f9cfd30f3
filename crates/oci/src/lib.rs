//! OCI types shared by every Berth crate: digests, repository names, references, media types
//! and manifests. Everything here is pure (no I/O), so every parser that sees network input
//! lives here and is property-tested here.

mod digest;
mod error;
mod manifest;
pub mod media_types;
mod name;
mod pattern;
mod reference;
mod resumable;

pub use digest::{Algorithm, Digest, Digester};
pub use error::OciError;
pub use manifest::{Descriptor, Manifest, ManifestKind, MAX_MANIFEST_SIZE};
pub use name::RepoName;
pub use pattern::RepoPattern;
pub use reference::{Reference, Tag};
pub use resumable::ResumableSha256;
