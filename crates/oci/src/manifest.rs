//! Manifest parsing: just enough structure to validate a PUT, find what a manifest references
//! (blobs, child manifests, its subject) and answer the referrers API. The stored bytes are never
//! re-serialized: clients get exactly what they pushed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::media_types as mt;
use crate::{Digest, OciError};

/// registry:2's and the spec's recommended upper bound for a manifest body.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// An OCI content descriptor, as found in `config`, `layers`, `manifests` and `subject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Where foreign (non-distributable) content can be fetched instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The artifact type, used in referrers indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A foreign layer lives at its URLs, not in the registry, so its blob need not exist.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
            && (self.media_type == mt::DOCKER_FOREIGN_LAYER
                || self.media_type.contains(".nondistributable."))
    }
}

/// The broad shape of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2): a config and layers.
    Image,
    /// An index / manifest list: child manifests.
    Index,
    /// A legacy Docker schema 1 manifest (read only).
    Schema1,
}

/// A parsed manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Image, index or schema 1.
    pub kind: ManifestKind,
    /// The media type the manifest is served with.
    pub media_type: String,
    /// The config blob of an image manifest.
    pub config: Option<Descriptor>,
    /// Layers of an image manifest.
    pub layers: Vec<Descriptor>,
    /// Children of an index.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 `subject`).
    pub subject: Option<Descriptor>,
    /// The OCI 1.1 `artifactType`.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blob digests of a schema 1 manifest (`fsLayers[].blobSum`).
    pub schema1_blobs: Vec<Digest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    fs_layers: Option<Vec<Schema1Layer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema1Layer {
    blob_sum: Digest,
}

fn invalid(msg: impl Into<String>) -> OciError {
    OciError::InvalidManifest(msg.into())
}

/// Strips parameters (`; charset=utf-8`) from a Content-Type.
fn bare_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn is_manifest_type(t: &str) -> bool {
    matches!(
        t,
        mt::OCI_MANIFEST
            | mt::OCI_INDEX
            | mt::DOCKER_MANIFEST
            | mt::DOCKER_MANIFEST_LIST
            | mt::DOCKER_SCHEMA1
            | mt::DOCKER_SCHEMA1_SIGNED
    )
}

impl Manifest {
    /// Parses and validates a manifest body. `content_type` is the PUT's Content-Type; a body
    /// without `mediaType` (umoci omits it) is an index when it has `manifests`, else an image
    /// manifest, and a manifest Content-Type that contradicts that is rejected, as registry:2
    /// does.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, OciError> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(invalid(format!(
                "manifest is larger than {MAX_MANIFEST_SIZE} bytes"
            )));
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
        let header = content_type
            .map(bare_media_type)
            .filter(|t| is_manifest_type(t));
        // The type must be derivable from the bytes alone (stored manifests have no
        // Content-Type of their own), so a Content-Type that contradicts the body's `mediaType`,
        // or what a body without one is, is refused: the manifest is then always served with
        // the Content-Type it was pushed with, before and after a restart.
        let media_type = raw
            .media_type
            .clone()
            .unwrap_or_else(|| Self::guess_media_type(&raw));
        if let Some(h) = header.filter(|h| *h != media_type) {
            let what = match &raw.media_type {
                Some(body_type) => format!("mediaType {body_type:?}"),
                None => format!("a manifest without mediaType (read as {media_type:?})"),
            };
            return Err(invalid(format!("{what} does not match Content-Type {h:?}")));
        }
        Self::from_raw(raw, media_type)
    }

    /// The media type to serve a stored manifest with, derived from its bytes the way registry:2
    /// does (stored manifests carry no Content-Type of their own).
    pub fn detect_media_type(body: &[u8]) -> String {
        match serde_json::from_slice::<Raw>(body) {
            Ok(raw) => raw
                .media_type
                .clone()
                .unwrap_or_else(|| Self::guess_media_type(&raw)),
            Err(_) => mt::OCI_MANIFEST.to_owned(),
        }
    }

    fn guess_media_type(raw: &Raw) -> String {
        if raw.schema_version == Some(1) {
            mt::DOCKER_SCHEMA1_SIGNED.to_owned()
        } else if raw.manifests.is_some() {
            mt::OCI_INDEX.to_owned()
        } else {
            mt::OCI_MANIFEST.to_owned()
        }
    }

    fn from_raw(raw: Raw, media_type: String) -> Result<Manifest, OciError> {
        let kind = match media_type.as_str() {
            mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => ManifestKind::Image,
            mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => ManifestKind::Index,
            mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED => ManifestKind::Schema1,
            other => {
                return Err(invalid(format!(
                    "unsupported manifest media type {other:?}"
                )))
            }
        };
        let expected_version = if kind == ManifestKind::Schema1 { 1 } else { 2 };
        if raw.schema_version != Some(expected_version) {
            return Err(invalid(format!("schemaVersion must be {expected_version}")));
        }
        let manifest = Manifest {
            kind,
            media_type,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
            schema1_blobs: raw
                .fs_layers
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.blob_sum)
                .collect(),
        };
        match kind {
            ManifestKind::Image if manifest.config.is_none() => {
                Err(invalid("image manifest has no config"))
            }
            ManifestKind::Index if !manifest.layers.is_empty() || manifest.config.is_some() => {
                Err(invalid("an index cannot have a config or layers"))
            }
            _ => Ok(manifest),
        }
    }

    /// Blobs this manifest needs in the repository: config and layers (foreign layers excluded),
    /// or schema 1 blob sums.
    pub fn blob_references(&self) -> Vec<&Digest> {
        let descriptors = self
            .config
            .iter()
            .chain(&self.layers)
            .filter(|d| !d.is_foreign());
        descriptors
            .map(|d| &d.digest)
            .chain(&self.schema1_blobs)
            .collect()
    }

    /// The artifact type the referrers API reports: `artifactType`, else the config media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
            .filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]}}"#
        )
    }

    #[test]
    fn image_without_media_type_is_oci() {
        let m = Manifest::parse(image(None).as_bytes(), Some(mt::OCI_MANIFEST)).expect("valid");
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blob_references().len(), 2);
        let m = Manifest::parse(image(None).as_bytes(), None).expect("valid");
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
        // Docker schema 2 requires the field; without it the bytes say OCI, which contradicts.
        assert!(Manifest::parse(image(None).as_bytes(), Some(mt::DOCKER_MANIFEST)).is_err());
        assert!(Manifest::parse(image(None).as_bytes(), Some(mt::OCI_INDEX)).is_err());
        assert_eq!(
            Manifest::detect_media_type(image(None).as_bytes()),
            mt::OCI_MANIFEST
        );
    }

    #[test]
    fn conflicting_media_type_is_rejected() {
        let body = image(Some(mt::DOCKER_MANIFEST));
        assert!(Manifest::parse(body.as_bytes(), Some(mt::OCI_MANIFEST)).is_err());
        assert!(Manifest::parse(body.as_bytes(), Some("application/json")).is_ok());
    }

    #[test]
    fn index_and_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":5}}],"subject":{{"mediaType":"{}","digest":"{D2}","size":7}},"artifactType":"a/b"}}"#,
            mt::OCI_INDEX,
            mt::OCI_MANIFEST,
            mt::OCI_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), None).expect("valid");
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(
            m.subject.as_ref().map(|s| s.digest.to_string()),
            Some(D2.to_owned())
        );
        assert_eq!(m.effective_artifact_type().as_deref(), Some("a/b"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "null",
            "[]",
            "{",
            r#"{"schemaVersion":2}"#,
            r#"{"schemaVersion":3,"config":{"digest":"sha256:1","size":1}}"#,
            r#"{"schemaVersion":2,"config":{"digest":"sha256:xyz","size":1},"layers":[]}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain","config":{"digest":"sha256:1","size":1}}"#,
        ] {
            assert!(
                Manifest::parse(bad.as_bytes(), None).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn detects_stored_types() {
        assert_eq!(
            Manifest::detect_media_type(br#"{"schemaVersion":1,"fsLayers":[]}"#),
            mt::DOCKER_SCHEMA1_SIGNED
        );
        assert_eq!(
            Manifest::detect_media_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            mt::OCI_INDEX
        );
        assert_eq!(
            Manifest::detect_media_type(image(Some(mt::DOCKER_MANIFEST)).as_bytes()),
            mt::DOCKER_MANIFEST
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), ct in "\\PC{0,40}") {
            let _ = Manifest::parse(&body, Some(&ct));
            let _ = Manifest::detect_media_type(&body);
        }
    }
}
