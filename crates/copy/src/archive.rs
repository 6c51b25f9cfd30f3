//! `docker save` tarballs (docker-archive) as a source and a target.
//!
//! A source is indexed once (every file's offset and size), its `manifest.json` entry turned
//! into a Docker schema 2 manifest whose config and layers are the archive's files, hashed as
//! they are (uncompressed layers stay uncompressed, so their digests are the config's
//! `diff_ids`); blobs then stream straight from the file. A target stages blobs beside the
//! file (`FILE.berth-partial.d`, reused by a re-run) and writes the tarball on commit, to a
//! temporary name renamed into place: an interrupted copy leaves no half-written archive.
//! Archives hold one image: an index is narrowed to one platform first.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use berth_oci::media_types::DOCKER_MANIFEST;
use berth_oci::{Descriptor, Digest, Digester, ManifestKind};
use berth_registry::layout::files;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::endpoint::{ManifestBlob, Source, Target};
use crate::verify::BlobStream;
use crate::Failure;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Largest `manifest.json` or image config read into memory.
const MAX_SMALL_FILE: u64 = 16 * 1024 * 1024;

/// One image of `manifest.json`, as docker writes it.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Where a file lies inside the tarball.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

/// An image read from a docker-archive.
pub struct ArchiveSource {
    file: PathBuf,
    manifest: ManifestBlob,
    blobs: HashMap<Digest, Span>,
}

fn src_err(file: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::Source(format!("{}: {e}", file.display()))
}

impl ArchiveSource {
    /// Indexes `file` and builds the manifest of the image named `reference` (a `RepoTags`
    /// entry; without it the archive must hold one image).
    pub async fn open(file: &Path, reference: Option<String>) -> crate::Result<ArchiveSource> {
        let path = file.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, reference.as_deref()))
            .await
            .map_err(|e| Failure::Source(e.to_string()))?
    }

    fn open_blocking(file: &Path, reference: Option<&str>) -> crate::Result<ArchiveSource> {
        let spans = index_tar(file)?;
        let span = |name: &str| {
            spans
                .get(name.trim_start_matches("./"))
                .copied()
                .ok_or_else(|| {
                    Failure::Content(format!("{}: no {name} in the archive", file.display()))
                })
        };
        let listing = read_span(file, span("manifest.json")?)?;
        let entries: Vec<Entry> = serde_json::from_slice(&listing)
            .map_err(|e| Failure::Content(format!("{}: manifest.json: {e}", file.display())))?;
        let entry = match reference {
            Some(r) => entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .any(|t| t == r || t.ends_with(&format!("/{r}")))
                })
                .ok_or_else(|| src_err(file, format!("no image {r} in manifest.json")))?,
            None if entries.len() == 1 => &entries[0],
            None => {
                return Err(Failure::Usage(format!(
                    "{} holds {} images: name one with docker-archive:FILE:REPO:TAG",
                    file.display(),
                    entries.len()
                )))
            }
        };
        let config_span = span(&entry.config)?;
        let config = read_span(file, config_span)?;
        let mut blobs = HashMap::new();
        let config_digest = Digest::sha256_of(&config);
        blobs.insert(config_digest.clone(), config_span);
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let s = span(layer)?;
            let (digest, magic) = hash_span(file, s)?;
            let media_type = match magic {
                [0x1f, 0x8b, ..] => LAYER_GZIP,
                [0x28, 0xb5, 0x2f, 0xfd] => LAYER_ZSTD,
                _ => LAYER_TAR,
            };
            layers.push(
                serde_json::json!({"mediaType": media_type, "size": s.size, "digest": digest}),
            );
            blobs.insert(digest, s);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": layers,
        });
        let body = Bytes::from(serde_json::to_vec_pretty(&manifest).map_err(|e| src_err(file, e))?);
        Ok(ArchiveSource {
            file: file.to_owned(),
            manifest: ManifestBlob {
                digest: Digest::sha256_of(&body),
                body,
                media_type: DOCKER_MANIFEST.to_owned(),
            },
            blobs,
        })
    }
}

/// Every regular file of the tarball by name, following docker's layer symlinks.
fn index_tar(file: &Path) -> crate::Result<HashMap<String, Span>> {
    let handle = File::open(file).map_err(|e| src_err(file, e))?;
    let mut archive = tar::Archive::new(handle);
    let mut spans = HashMap::new();
    let mut links = Vec::new();
    for entry in archive.entries().map_err(|e| src_err(file, e))? {
        let entry = entry.map_err(|e| Failure::Content(format!("{}: {e}", file.display())))?;
        let name = entry
            .path()
            .map_err(|e| src_err(file, e))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let span = Span {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                };
                spans.insert(name, span);
            }
            tar::EntryType::Symlink => {
                if let Ok(Some(target)) = entry.link_name() {
                    links.push((name, target.to_string_lossy().into_owned()));
                }
            }
            _ => {}
        }
    }
    for (name, target) in links {
        let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
        let resolved = normalize(&dir.join(&target));
        if let Some(span) = spans.get(&resolved).copied() {
            spans.insert(name, span);
        }
    }
    Ok(spans)
}

/// `a/../b/./c` as `b/c`.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

fn read_span(file: &Path, span: Span) -> crate::Result<Vec<u8>> {
    if span.size > MAX_SMALL_FILE {
        return Err(Failure::Content(format!(
            "{}: a {} byte file where at most {MAX_SMALL_FILE} is expected",
            file.display(),
            span.size
        )));
    }
    let mut handle = File::open(file).map_err(|e| src_err(file, e))?;
    handle
        .seek(SeekFrom::Start(span.offset))
        .map_err(|e| src_err(file, e))?;
    let mut out = Vec::with_capacity(span.size as usize);
    handle
        .take(span.size)
        .read_to_end(&mut out)
        .map_err(|e| src_err(file, e))?;
    Ok(out)
}

/// The digest of a span and its first four bytes (to tell compression).
fn hash_span(file: &Path, span: Span) -> crate::Result<(Digest, [u8; 4])> {
    let mut handle = File::open(file).map_err(|e| src_err(file, e))?;
    handle
        .seek(SeekFrom::Start(span.offset))
        .map_err(|e| src_err(file, e))?;
    let mut reader = handle.take(span.size);
    let mut digester = Digester::new(berth_oci::Algorithm::Sha256);
    let mut magic = [0u8; 4];
    let mut first = true;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| src_err(file, e))?;
        if n == 0 {
            break;
        }
        if first {
            let k = n.min(4);
            magic[..k].copy_from_slice(&buf[..k]);
            first = false;
        }
        digester.update(&buf[..n]);
    }
    Ok((digester.finish(), magic))
}

#[async_trait]
impl Source for ArchiveSource {
    async fn root(&self) -> crate::Result<ManifestBlob> {
        Ok(self.manifest.clone())
    }

    async fn manifest(&self, descriptor: &Descriptor) -> crate::Result<ManifestBlob> {
        if descriptor.digest == self.manifest.digest {
            return Ok(self.manifest.clone());
        }
        Err(src_err(
            &self.file,
            format!("no manifest {}", descriptor.digest),
        ))
    }

    async fn blob(&self, descriptor: &Descriptor) -> crate::Result<BlobStream> {
        let span = *self
            .blobs
            .get(&descriptor.digest)
            .ok_or_else(|| src_err(&self.file, format!("no blob {}", descriptor.digest)))?;
        let mut handle = tokio::fs::File::open(&self.file)
            .await
            .map_err(|e| src_err(&self.file, e))?;
        handle
            .seek(SeekFrom::Start(span.offset))
            .await
            .map_err(|e| src_err(&self.file, e))?;
        let reader = handle.take(span.size);
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            reader,
            256 * 1024,
        )))
    }

    async fn referrers(&self, _digest: &Digest) -> crate::Result<Vec<Descriptor>> {
        Ok(Vec::new())
    }
}

/// A docker-archive being written.
pub struct ArchiveTarget {
    file: PathBuf,
    staging: PathBuf,
    reference: Option<String>,
    root: Mutex<Option<ManifestBlob>>,
}

impl ArchiveTarget {
    /// A target writing `file`, its image named `reference` (`repo:tag`) in `RepoTags`.
    pub fn create(file: &Path, reference: Option<String>) -> crate::Result<ArchiveTarget> {
        let mut staging = file.as_os_str().to_owned();
        staging.push(".berth-partial.d");
        let staging = PathBuf::from(staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| Failure::Target(format!("{}: {e}", staging.display())))?;
        Ok(ArchiveTarget {
            file: file.to_owned(),
            staging,
            reference,
            root: Mutex::new(None),
        })
    }
}

/// What commit writes: the image's files from the staging directory into the tarball.
struct Plan {
    file: PathBuf,
    staging: PathBuf,
    reference: Option<String>,
}

impl Plan {
    fn write_tar(&self, root: &ManifestBlob) -> crate::Result<()> {
        let err = |e: std::io::Error| Failure::Target(format!("{}: {e}", self.file.display()));
        let parsed = berth_oci::Manifest::parse(&root.body, Some(&root.media_type))
            .map_err(|e| Failure::Content(e.to_string()))?;
        let config = parsed
            .config
            .as_ref()
            .ok_or_else(|| Failure::Content("image manifest without config".to_owned()))?;
        let name = |d: &Digest| format!("blobs/{}/{}", d.algorithm().as_str(), d.hex());
        let entry = Entry {
            config: name(&config.digest),
            repo_tags: self.reference.iter().cloned().collect(),
            layers: parsed.layers.iter().map(|l| name(&l.digest)).collect(),
        };
        let listing = serde_json::to_vec(&[entry]).map_err(|e| Failure::Target(e.to_string()))?;
        let mut partial = self.file.as_os_str().to_owned();
        partial.push(".berth-partial");
        let partial = PathBuf::from(partial);
        let mut builder = tar::Builder::new(File::create(&partial).map_err(err)?);
        let mut written = std::collections::HashSet::new();
        for d in std::iter::once(&config.digest).chain(parsed.layers.iter().map(|l| &l.digest)) {
            if !written.insert(d.clone()) {
                continue;
            }
            let path = files::blob_path(&self.staging, d);
            let blob = File::open(&path).map_err(err)?;
            let mut header = header(blob.metadata().map_err(err)?.len());
            builder
                .append_data(&mut header, name(d), blob)
                .map_err(err)?;
        }
        let mut header = header(listing.len() as u64);
        builder
            .append_data(&mut header, "manifest.json", listing.as_slice())
            .map_err(err)?;
        let out = builder.into_inner().map_err(err)?;
        out.sync_all().map_err(err)?;
        std::fs::rename(&partial, &self.file).map_err(err)?;
        let _ = std::fs::remove_dir_all(&self.staging);
        Ok(())
    }
}

/// A plain file header with a fixed time, so the same image makes the same tarball.
fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

#[async_trait]
impl Target for ArchiveTarget {
    async fn has_blob(&self, descriptor: &Descriptor) -> crate::Result<bool> {
        // Blobs staged by an interrupted run are reused.
        files::exists(&files::blob_path(&self.staging, &descriptor.digest))
            .await
            .map_err(|e| Failure::Target(e.to_string()))
    }

    async fn put_blob(&self, descriptor: &Descriptor, content: BlobStream) -> crate::Result<()> {
        let staging = crate::layout::LayoutTarget::open(&self.staging, None).await?;
        staging.put_blob(descriptor, content).await
    }

    async fn has_manifest(&self, _digest: &Digest) -> crate::Result<bool> {
        Ok(false)
    }

    async fn tagged(&self) -> crate::Result<Option<Digest>> {
        Ok(None)
    }

    async fn put_manifest(&self, manifest: &ManifestBlob, root: bool) -> crate::Result<()> {
        if !root {
            return Ok(());
        }
        let parsed = berth_oci::Manifest::parse(&manifest.body, Some(&manifest.media_type))
            .map_err(|e| Failure::Content(e.to_string()))?;
        if parsed.kind != ManifestKind::Image {
            return Err(Failure::Usage(
                "a docker-archive holds one image: choose a platform with --platform".to_owned(),
            ));
        }
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = Some(manifest.clone());
        Ok(())
    }

    async fn put_referrer(&self, _manifest: &ManifestBlob, _subject: &Digest) -> crate::Result<()> {
        // docker save's format has no place for referrers.
        Ok(())
    }

    async fn commit(&self) -> crate::Result<()> {
        let root = self.root.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(root) = root else {
            return Ok(());
        };
        let plan = Plan {
            file: self.file.clone(),
            staging: self.staging.clone(),
            reference: self.reference.clone(),
        };
        tokio::task::spawn_blocking(move || plan.write_tar(&root))
            .await
            .map_err(|e| Failure::Target(e.to_string()))?
    }

    fn single_image(&self) -> bool {
        true
    }
}
