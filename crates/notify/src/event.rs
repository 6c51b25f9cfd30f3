//! The event and its envelope, field for field as registry:2 (Distribution 2.8) writes them, so
//! receivers written for registry:2 parse Berth's events unchanged: the same keys, the same
//! omitted-when-empty rules, the same timestamp format.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize, Serializer};

/// The `Content-Type` of every notification request (registry:2's `EventsMediaType`).
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The media type registry:2 reports for every blob (it does not know a blob's real type).
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// registry:2's media type for schema 1 layer references.
const SCHEMA1_LAYER: &str = "application/vnd.docker.container.image.rootfs.diff+x-gtar";

/// What happened to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A manifest or blob was stored.
    Push,
    /// A manifest or blob was served (GET or HEAD).
    Pull,
    /// A manifest, tag or blob was deleted.
    Delete,
    /// A blob was linked into the repository from another one (cross-repository mount).
    Mount,
}

impl Action {
    /// The name used in the JSON and in `ignore.actions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
            Action::Mount => "mount",
        }
    }
}

/// The envelope POSTed to endpoints: `{"events": [...]}`.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    /// The events, in the order they happened.
    pub events: &'a [&'a Event],
}

/// One registry event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// A unique id (a random UUID).
    pub id: String,
    /// When it happened; written as RFC 3339 with nanoseconds, trailing zeros trimmed (Go's
    /// `time.RFC3339Nano`), in UTC.
    #[serde(serialize_with = "rfc3339_nano")]
    pub timestamp: SystemTime,
    /// `push`, `pull`, `delete` or `mount`.
    pub action: Action,
    /// What the action was applied to.
    pub target: Target,
    /// The HTTP request that caused it.
    pub request: RequestRecord,
    /// Who sent that request.
    pub actor: ActorRecord,
    /// Which registry instance generated the event.
    pub source: SourceRecord,
}

/// The target of an event: a registry:2 descriptor plus where it lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The manifest's media type, or `application/octet-stream` for blobs; empty for deletes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Size in bytes (omitted when 0, as in registry:2).
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
    /// The content digest; empty for tag deletes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The size again (registry:2 keeps it for old receivers).
    #[serde(skip_serializing_if = "is_zero")]
    pub length: u64,
    /// The repository name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// For mounts: the repository the blob came from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from_repository: String,
    /// A URL that fetches the content (by digest).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The tag of a manifest pushed or pulled by tag, or of a deleted tag.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// What a manifest references (`notifications.events.includereferences`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Descriptor>,
}

impl Target {
    /// A manifest push or pull.
    pub fn manifest(
        repository: &str,
        media_type: &str,
        digest: &str,
        size: u64,
        url: String,
    ) -> Self {
        Target {
            media_type: media_type.to_owned(),
            size,
            digest: digest.to_owned(),
            length: size,
            repository: repository.to_owned(),
            url,
            ..Target::default()
        }
    }

    /// A blob push, pull or mount.
    pub fn blob(repository: &str, digest: &str, size: u64, url: String) -> Self {
        Target::manifest(repository, BLOB_MEDIA_TYPE, digest, size, url)
    }

    /// A deleted manifest or blob: only the repository and the digest, as in registry:2.
    pub fn deleted(repository: &str, digest: &str) -> Self {
        Target {
            digest: digest.to_owned(),
            repository: repository.to_owned(),
            ..Target::default()
        }
    }

    /// A deleted tag: only the repository and the tag.
    pub fn deleted_tag(repository: &str, tag: &str) -> Self {
        Target {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            ..Target::default()
        }
    }

    /// Sets the tag.
    pub fn with_tag(mut self, tag: &str) -> Self {
        self.tag = tag.to_owned();
        self
    }

    /// Sets the repository a mounted blob came from.
    pub fn with_from(mut self, repository: &str) -> Self {
        self.from_repository = repository.to_owned();
        self
    }

    /// Sets the references of a manifest.
    pub fn with_references(mut self, references: Vec<Descriptor>) -> Self {
        self.references = references;
        self
    }
}

/// A content descriptor as registry:2 2.8 writes it in `references`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Its size in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Its digest.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Where foreign content can be fetched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Free-form annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform of an index entry, as written in the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// What a manifest body references, as registry:2's `Manifest.References()`: the config and
/// the layers of an image, the entries of an index, the layers of a schema 1 manifest. A body
/// that does not parse has none.
pub fn references(body: &[u8]) -> Vec<Descriptor> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        manifests: Option<Vec<Descriptor>>,
        fs_layers: Option<Vec<FsLayer>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct FsLayer {
        blob_sum: String,
    }
    let Ok(raw) = serde_json::from_slice::<Raw>(body) else {
        return Vec::new();
    };
    if let Some(children) = raw.manifests {
        return children;
    }
    if let Some(fs_layers) = raw.fs_layers {
        return fs_layers
            .into_iter()
            .map(|l| Descriptor {
                media_type: SCHEMA1_LAYER.to_owned(),
                digest: l.blob_sum,
                ..Descriptor::default()
            })
            .collect();
    }
    raw.config.into_iter().chain(raw.layers).collect()
}

/// The request that caused an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestRecord {
    /// A unique id of the request.
    pub id: String,
    /// The client's address: the first `X-Forwarded-For` entry, else `X-Real-Ip`, else the
    /// connection's `ip:port`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// The `Host` the client asked for.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The HTTP method.
    pub method: String,
    /// The `User-Agent` header.
    pub useragent: String,
}

impl RequestRecord {
    /// The record of a request, with a new random id.
    pub fn new(addr: String, host: String, method: &str, useragent: String) -> Self {
        RequestRecord {
            id: uuid::Uuid::new_v4().to_string(),
            addr,
            host,
            method: method.to_owned(),
            useragent,
        }
    }
}

/// Who initiated an event: the authenticated user, empty for anonymous requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActorRecord {
    /// The user or service account name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The registry instance that generated an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceRecord {
    /// `hostname:port` of this instance.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// A random id chosen at startup, so receivers can tell restarts apart.
    #[serde(rename = "instanceID", skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn rfc3339_nano<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::timestamp::format_timestamp(*t))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_fields_are_omitted_like_registry2() {
        let event = Event {
            id: "e1".into(),
            timestamp: SystemTime::UNIX_EPOCH,
            action: Action::Delete,
            target: Target::deleted_tag("library/app", "v1"),
            request: RequestRecord {
                id: "r1".into(),
                method: "DELETE".into(),
                ..RequestRecord::default()
            },
            actor: ActorRecord::default(),
            source: SourceRecord::default(),
        };
        assert_eq!(
            serde_json::to_value(Envelope { events: &[&event] }).ok(),
            Some(json!({"events": [{
                "id": "e1",
                "timestamp": "1970-01-01T00:00:00Z",
                "action": "delete",
                "target": {"repository": "library/app", "tag": "v1"},
                "request": {"id": "r1", "method": "DELETE", "useragent": ""},
                "actor": {},
                "source": {},
            }]}))
        );
    }

    #[test]
    fn blob_targets_carry_registry2_fields() {
        let t = Target::blob(
            "a/b",
            "sha256:00",
            5,
            "http://h/v2/a/b/blobs/sha256:00".into(),
        )
        .with_from("c");
        assert_eq!(
            serde_json::to_value(&t).ok(),
            Some(json!({
                "mediaType": "application/octet-stream",
                "size": 5,
                "digest": "sha256:00",
                "length": 5,
                "repository": "a/b",
                "fromRepository": "c",
                "url": "http://h/v2/a/b/blobs/sha256:00",
            }))
        );
    }

    #[test]
    fn references_of_images_indexes_and_schema1() {
        let image = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "c", "digest": "sha256:c", "size": 1},
            "layers": [{"mediaType": "l", "digest": "sha256:l", "size": 2, "annotations": {"k": "v"}}],
        });
        let refs = references(image.to_string().as_bytes());
        assert_eq!(refs.len(), 2);
        assert_eq!((refs[0].digest.as_str(), refs[1].size), ("sha256:c", 2));
        assert_eq!(refs[1].annotations.get("k").map(String::as_str), Some("v"));

        let index = json!({"manifests": [{"mediaType": "m", "digest": "sha256:m", "size": 3,
            "platform": {"architecture": "arm64", "os": "linux"}}]});
        let refs = references(index.to_string().as_bytes());
        assert_eq!(refs.len(), 1);
        assert_eq!(
            serde_json::to_value(&refs[0]).ok(),
            Some(json!({"mediaType": "m", "size": 3, "digest": "sha256:m",
                "platform": {"architecture": "arm64", "os": "linux"}}))
        );

        let schema1 = json!({"fsLayers": [{"blobSum": "sha256:a"}]});
        let refs = references(schema1.to_string().as_bytes());
        assert_eq!(refs[0].media_type, SCHEMA1_LAYER);
        assert!(references(b"not json").is_empty());
    }
}
