//! OCI image layouts (image-spec `image-layout.md`): [`Registry::export_layout`] writes one
//! from a repository and [`Registry::import_layout`] reads one into a repository, for backups,
//! air-gapped transfer and seeding a registry (`berth export`, `berth import`).
//!
//! ```text
//! DIR/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! DIR/index.json            an OCI index: one entry per exported tag, with the tag in the
//!                           org.opencontainers.image.ref.name annotation (as skopeo and umoci
//!                           write it); manifests exported by digest and referrers have none
//! DIR/blobs/<alg>/<hex>     every manifest and blob, named by its digest
//! ```
//!
//! Referrers (manifests with a `subject`: signatures, SBOMs) are reachable from nothing in a
//! layout, so they are listed in `index.json` without a ref name, as ORAS does: tools that
//! clean a layout keep them, and an importer finds them.
//!
//! [`Registry::export_layout`]: crate::Registry::export_layout
//! [`Registry::import_layout`]: crate::Registry::import_layout

mod export;
pub mod files;
mod import;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use berth_oci::{Descriptor, Digest, Tag};
pub use export::{ExportReport, Selection};
pub use import::{ImportOptions, ImportReport};

use crate::RegistryError;

/// The annotation that names an `index.json` entry (a tag, for Berth).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The file that marks a directory as an OCI image layout.
const LAYOUT_FILE: &str = "oci-layout";
/// What Berth writes into it.
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The layout's entry point.
const INDEX_FILE: &str = "index.json";

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Reading or writing the layout directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The directory is not a usable OCI image layout (or not a place to write one).
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The layout directory or the offending file in it.
        path: PathBuf,
        /// What is wrong, in words that say what to do.
        reason: String,
    },
    /// A blob of the layout does not hash to the digest it is named by.
    #[error("{}: content does not match its name (it hashes to {actual}); the layout is corrupt, nothing was tagged", path.display())]
    Corrupt {
        /// The blob file.
        path: PathBuf,
        /// What the content hashes to.
        actual: Digest,
    },
    /// The selection matches nothing, or is ambiguous.
    #[error("{0}")]
    Selection(String),
    /// The registry refused or failed (a missing manifest or blob, read-only mode, storage).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl LayoutError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LayoutError {
        let path = path.into();
        move |source| LayoutError::Io { path, source }
    }

    fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> LayoutError {
        LayoutError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Checks `oci-layout`: a JSON object whose `imageLayoutVersion` is 1.x.
async fn check_layout_file(path: &Path) -> Result<(), LayoutError> {
    let body = files::read_small(path, 4096).await?;
    let version = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_owned));
    match version {
        Some(v) if v.starts_with("1.") => Ok(()),
        Some(v) => Err(LayoutError::invalid(
            path,
            format!("imageLayoutVersion {v:?} is not supported (1.x is)"),
        )),
        None => Err(LayoutError::invalid(
            path,
            "is not {\"imageLayoutVersion\": ...}: not an OCI image layout",
        )),
    }
}

/// The ref name of an `index.json` entry, if it has one.
pub fn ref_name(entry: &Descriptor) -> Option<&str> {
    entry
        .annotations
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// An `index.json` entry for a manifest, named `tag` when given.
fn entry(digest: &Digest, media_type: &str, size: u64, tag: Option<&Tag>) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.clone(),
        size,
        urls: Vec::new(),
        annotations: tag.map(|t| [(REF_NAME.to_owned(), t.to_string())].into()),
        artifact_type: None,
    }
}
