//! What the pages show of a stored manifest, read from its JSON (which is untrusted: every
//! string is escaped where it is shown, and missing or odd fields are shown as absent).

use serde_json::Value;

/// One entry of an index.
pub struct Child {
    /// `linux/arm64`, `linux/arm/v7`, or `unknown`.
    pub platform: String,
    /// The child manifest's digest.
    pub digest: String,
    /// The child's `artifactType` or media type, for entries that are not images.
    pub media_type: String,
}

/// A blob a manifest references.
pub struct Blob {
    /// Its digest.
    pub digest: String,
    /// Its (compressed) size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// A manifest's content, as far as the UI shows it.
pub enum Content {
    /// An image index (or Docker manifest list).
    Index(Vec<Child>),
    /// An image manifest (or an artifact manifest with layers).
    Image {
        /// The config blob.
        config: Option<Blob>,
        /// The layers.
        layers: Vec<Blob>,
    },
    /// Anything else (Docker schema 1, unknown JSON).
    Other,
}

/// A parsed manifest.
pub struct Summary {
    /// The media type it is served with.
    pub media_type: String,
    /// `artifactType`, else the config media type when it is not an image config.
    pub artifact_type: Option<String>,
    /// Index or image.
    pub content: Content,
    /// The `subject` digest (for artifacts that refer to an image).
    pub subject: Option<String>,
    /// `annotations`, sorted.
    pub annotations: Vec<(String, String)>,
}

impl Summary {
    /// Config plus layers: what pulling this image downloads (before its manifest).
    pub fn compressed_size(&self) -> Option<u64> {
        match &self.content {
            Content::Image { config, layers } => Some(
                config.as_ref().map_or(0, |c| c.size) + layers.iter().map(|l| l.size).sum::<u64>(),
            ),
            _ => None,
        }
    }

    /// The platforms of an index, in its order.
    pub fn platforms(&self) -> Vec<String> {
        match &self.content {
            Content::Index(children) => children.iter().map(|c| c.platform.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Reads `body` (served as `media_type`).
pub fn parse(body: &[u8], media_type: &str) -> Summary {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let blob = |v: &Value| -> Option<Blob> {
        Some(Blob {
            digest: text(v, "digest")?,
            size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
            media_type: text(v, "mediaType").unwrap_or_default(),
        })
    };
    let content = if let Some(children) = json.get("manifests").and_then(Value::as_array) {
        Content::Index(
            children
                .iter()
                .filter_map(|c| {
                    Some(Child {
                        platform: platform(c.get("platform")),
                        digest: text(c, "digest")?,
                        media_type: text(c, "artifactType")
                            .or_else(|| text(c, "mediaType"))
                            .unwrap_or_default(),
                    })
                })
                .collect(),
        )
    } else if json.get("layers").is_some() || json.get("config").is_some() {
        Content::Image {
            config: json.get("config").and_then(blob),
            layers: json
                .get("layers")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(blob).collect())
                .unwrap_or_default(),
        }
    } else {
        Content::Other
    };
    let config_type = json
        .get("config")
        .and_then(|c| c.get("mediaType"))
        .and_then(Value::as_str)
        .filter(|t| !IMAGE_CONFIGS.contains(t));
    let annotations = sorted_pairs(json.get("annotations"));
    Summary {
        media_type: media_type.to_owned(),
        artifact_type: text(&json, "artifactType").or(config_type.map(str::to_owned)),
        subject: json.get("subject").and_then(|s| text(s, "digest")),
        content,
        annotations,
    }
}

/// `os/architecture[/variant]` of an index entry's `platform`.
fn platform(p: Option<&Value>) -> String {
    let Some(p) = p else {
        return "unknown".to_owned();
    };
    let part = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (part("os"), part("architecture")) {
        (Some(os), Some(arch)) => match part("variant") {
            Some(variant) => format!("{os}/{arch}/{variant}"),
            None => format!("{os}/{arch}"),
        },
        _ => "unknown".to_owned(),
    }
}

/// Whether `tag` is a cosign signature, attestation or SBOM tag (`sha256-<hex>.sig`), and of
/// which digest and kind.
pub fn cosign_tag(tag: &str) -> Option<(String, &str)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, kind) = rest.split_once('.')?;
    let ok = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && matches!(kind, "sig" | "att" | "sbom");
    ok.then(|| (format!("sha256:{hex}"), kind))
}

/// The entries of a JSON object of strings (annotations, labels), sorted by key; a value that
/// is not a string is shown as JSON. Anything but an object gives none.
pub(crate) fn sorted_pairs(object: Option<&Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = object
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_platforms() {
        let body = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:a","size":5,"platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:b","size":6,"platform":{"os":"linux","architecture":"arm","variant":"v7"}},
            {"digest":"sha256:c","size":7}]}"#;
        let s = parse(body, "application/vnd.oci.image.index.v1+json");
        assert_eq!(s.platforms(), ["linux/arm64", "linux/arm/v7", "unknown"]);
        assert_eq!(s.compressed_size(), None);
    }

    #[test]
    fn image_sizes_and_artifacts() {
        let body = br#"{"config":{"mediaType":"application/vnd.example.sbom","digest":"sha256:c","size":10},
            "layers":[{"digest":"sha256:l","size":100}],"subject":{"digest":"sha256:s"},
            "annotations":{"b":"2","a":"1"}}"#;
        let s = parse(body, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(s.compressed_size(), Some(110));
        assert_eq!(
            s.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(s.subject.as_deref(), Some("sha256:s"));
        assert_eq!(s.annotations[0], ("a".to_owned(), "1".to_owned()));
    }

    #[test]
    fn cosign_tags() {
        let hex = "0".repeat(64);
        assert_eq!(
            cosign_tag(&format!("sha256-{hex}.sig")),
            Some((format!("sha256:{hex}"), "sig"))
        );
        assert!(cosign_tag(&format!("sha256-{hex}.txt")).is_none());
        assert!(cosign_tag("sha256-abc.sig").is_none());
        assert!(cosign_tag("latest").is_none());
    }
}
