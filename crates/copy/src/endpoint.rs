//! The two ends of a copy as small traits, and opening them from a [`Location`].

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Descriptor, Digest};
use bytes::Bytes;

use crate::client::{Client, ClientOptions, Side};
use crate::transport::Location;
use crate::verify::BlobStream;
use crate::{archive, creds, layout, registry, Failure};

/// A manifest as read from a source, its digest checked against its bytes.
#[derive(Debug, Clone)]
pub struct ManifestBlob {
    /// The exact bytes (never re-serialized, so digests survive).
    pub body: Bytes,
    /// Its media type.
    pub media_type: String,
    /// The digest of `body`.
    pub digest: Digest,
}

impl ManifestBlob {
    /// A descriptor of this manifest (for index entries and referrer lists).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.body.len() as u64,
            urls: Vec::new(),
            annotations: None,
            artifact_type: None,
        }
    }
}

/// Where images are read from.
#[async_trait]
pub trait Source: Send + Sync {
    /// The manifest the location names (its tag, its digest, or its only image).
    async fn root(&self) -> crate::Result<ManifestBlob>;
    /// A manifest by descriptor, its digest and size verified.
    async fn manifest(&self, descriptor: &Descriptor) -> crate::Result<ManifestBlob>;
    /// A blob's bytes; the caller verifies them ([`crate::verify::verified`]).
    async fn blob(&self, descriptor: &Descriptor) -> crate::Result<BlobStream>;
    /// The manifests whose `subject` is `digest` (signatures, SBOMs).
    async fn referrers(&self, digest: &Digest) -> crate::Result<Vec<Descriptor>>;
    /// `(host, repository)` when the source is a registry, for cross-repository mounts.
    fn registry(&self) -> Option<(&str, &str)> {
        None
    }
}

/// Where images are written to.
#[async_trait]
pub trait Target: Send + Sync {
    /// Whether the target has the blob already.
    async fn has_blob(&self, descriptor: &Descriptor) -> crate::Result<bool>;
    /// Mounts the blob from repository `from` on the same registry; false when the registry
    /// would not (the blob is then uploaded).
    async fn mount(&self, _descriptor: &Descriptor, _from: &str) -> crate::Result<bool> {
        Ok(false)
    }
    /// Stores a blob from a verified stream; nothing is kept if the stream fails.
    async fn put_blob(&self, descriptor: &Descriptor, content: BlobStream) -> crate::Result<()>;
    /// Whether the target has the manifest (by digest).
    async fn has_manifest(&self, digest: &Digest) -> crate::Result<bool>;
    /// What the target's tag points at now, if it has one.
    async fn tagged(&self) -> crate::Result<Option<Digest>>;
    /// Stores a manifest: under the target's tag when `root`, else by digest.
    async fn put_manifest(&self, manifest: &ManifestBlob, root: bool) -> crate::Result<()>;
    /// Stores a referrer of `subject`, findable as the target can list referrers.
    async fn put_referrer(&self, manifest: &ManifestBlob, subject: &Digest) -> crate::Result<()>;
    /// Publishes what was stored (a layout's `index.json`, an archive's file); the last
    /// step, so an interrupted copy leaves nothing half-made under the target's name.
    async fn commit(&self) -> crate::Result<()> {
        Ok(())
    }
    /// `(host, repository)` when the target is a registry.
    fn registry(&self) -> Option<(&str, &str)> {
        None
    }
    /// Whether the target holds one platform only (a docker archive), so an index must be
    /// narrowed to one of its images.
    fn single_image(&self) -> bool {
        false
    }
}

/// How to open one end: TLS and credentials for a registry.
#[derive(Debug, Clone, Default)]
pub struct EndOptions {
    /// Verify TLS (skopeo's `--src-tls-verify`/`--dest-tls-verify`, default true).
    pub tls_verify: bool,
    /// skopeo's `--src-cert-dir`/`--dest-cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// `--src-creds`/`--dest-creds`; else the docker config file is read.
    pub credentials: Option<(String, String)>,
    /// The docker config file (`--authfile`), else docker's own.
    pub authfile: Option<PathBuf>,
}

/// A client for the registry `host`, with credentials from the options or docker's file.
pub fn client(host: &str, side: Side, options: &EndOptions) -> crate::Result<Arc<Client>> {
    let credentials = match &options.credentials {
        Some(c) => Some(c.clone()),
        None => match creds::config_path(options.authfile.as_deref()) {
            Some(path) => creds::from_docker_config(&path, host)?,
            None => None,
        },
    };
    let client_options = ClientOptions {
        tls_verify: options.tls_verify,
        cert_dir: options.cert_dir.clone(),
        credentials,
    };
    let api_host = crate::transport::api_host(host);
    Ok(Arc::new(Client::new(api_host, side, &client_options)?))
}

/// The local storage for `local:` locations, if the caller opened one.
pub type LocalStorage<'a> = Option<&'a Arc<berth_registry::Registry>>;

fn local(storage: LocalStorage<'_>) -> crate::Result<Arc<berth_registry::Registry>> {
    storage.cloned().ok_or_else(|| {
        Failure::Usage(
            "local: names Berth's storage: give the configuration with --config".to_owned(),
        )
    })
}

/// Opens a source.
pub async fn open_source(
    location: &Location,
    options: &EndOptions,
    storage: LocalStorage<'_>,
) -> crate::Result<Box<dyn Source>> {
    Ok(match location {
        Location::Local(image) => Box::new(crate::local::LocalSource::new(
            local(storage)?,
            image.clone(),
        )),
        Location::Registry(r) => {
            let client = client(&r.host, Side::Source, options)?;
            Box::new(registry::RegistrySource::new(client, r.clone()))
        }
        Location::Layout { dir, tag } => {
            Box::new(layout::LayoutSource::open(dir, tag.clone()).await?)
        }
        Location::Archive { file, reference } => {
            Box::new(archive::ArchiveSource::open(file, reference.clone()).await?)
        }
    })
}

/// Opens a target.
pub async fn open_target(
    location: &Location,
    options: &EndOptions,
    storage: LocalStorage<'_>,
) -> crate::Result<Box<dyn Target>> {
    Ok(match location {
        Location::Local(image) => Box::new(crate::local::LocalTarget::new(
            local(storage)?,
            image.clone(),
        )),
        Location::Registry(r) => {
            let client = client(&r.host, Side::Target, options)?;
            Box::new(registry::RegistryTarget::new(client, r.clone()))
        }
        Location::Layout { dir, tag } => {
            Box::new(layout::LayoutTarget::open(dir, tag.clone()).await?)
        }
        Location::Archive { file, reference } => {
            Box::new(archive::ArchiveTarget::create(file, reference.clone())?)
        }
    })
}

/// A manifest body checked against what it claims to be: at most 4 MiB, hashing to
/// `expected` (and `size` bytes long, when known).
pub fn check_manifest(
    body: Bytes,
    media_type: Option<String>,
    expected: Option<&Digest>,
    size: Option<u64>,
) -> crate::Result<ManifestBlob> {
    if body.len() > berth_oci::MAX_MANIFEST_SIZE {
        return Err(Failure::Content(format!(
            "manifest of {} bytes is over the {} byte limit",
            body.len(),
            berth_oci::MAX_MANIFEST_SIZE
        )));
    }
    let digest = match expected {
        Some(d) => {
            let mut digester = berth_oci::Digester::new(d.algorithm());
            digester.update(&body);
            let actual = digester.finish();
            if actual != *d {
                return Err(Failure::Content(format!("manifest {d} hashes to {actual}")));
            }
            actual
        }
        None => Digest::sha256_of(&body),
    };
    if let Some(size) = size.filter(|s| *s != body.len() as u64) {
        return Err(Failure::Content(format!(
            "manifest {digest} is {} bytes, its descriptor says {size}",
            body.len()
        )));
    }
    let media_type = media_type
        .filter(|t| !t.is_empty() && t != "application/json" && t != "text/plain")
        .unwrap_or_else(|| berth_oci::Manifest::detect_media_type(&body));
    berth_oci::Manifest::parse(&body, Some(&media_type))
        .map_err(|e| Failure::Content(format!("manifest {digest}: {e}")))?;
    Ok(ManifestBlob {
        body,
        media_type,
        digest,
    })
}
