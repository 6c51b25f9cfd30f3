//! An OCI image layout directory as a source and a target, in the shape `berth export`
//! writes (`berth_registry::layout`, whose file helpers this reuses): blobs under
//! `blobs/<alg>/<hex>`, tagged images named by `org.opencontainers.image.ref.name` in
//! `index.json`, referrers listed there without a name. A target publishes `index.json` last,
//! so an interrupted copy leaves blobs but no entry pointing at an incomplete image.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_oci::media_types::OCI_INDEX;
use berth_oci::{Descriptor, Digest};
use berth_registry::layout::files;
use berth_registry::layout::{ref_name, LayoutError, REF_NAME};
use berth_storage::StorageError;
use futures_util::TryStreamExt;
use serde::Deserialize;

use crate::endpoint::{check_manifest, ManifestBlob, Source, Target};
use crate::verify::{is_content_error, BlobStream};
use crate::Failure;

const INDEX: &str = "index.json";
const LAYOUT: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Deserialize, Default)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn source_error(e: LayoutError) -> Failure {
    Failure::Source(e.to_string())
}

fn target_error(e: LayoutError) -> Failure {
    Failure::Target(e.to_string())
}

/// `index.json`'s entries; an absent file is an empty layout.
async fn read_index(dir: &Path) -> Result<Vec<Descriptor>, LayoutError> {
    let path = dir.join(INDEX);
    if !files::exists(&path).await? {
        return Ok(Vec::new());
    }
    let body = files::read_small(&path, berth_oci::MAX_MANIFEST_SIZE as u64).await?;
    let index: Index = serde_json::from_slice(&body).map_err(|e| LayoutError::Invalid {
        path: path.clone(),
        reason: format!("not an OCI index: {e}"),
    })?;
    Ok(index.manifests)
}

/// Images read from a layout directory.
pub struct LayoutSource {
    dir: PathBuf,
    tag: Option<String>,
    entries: Vec<Descriptor>,
}

impl LayoutSource {
    /// Opens `dir` (which must hold `index.json`); `tag` names the image in it.
    pub async fn open(dir: &Path, tag: Option<String>) -> crate::Result<LayoutSource> {
        if !files::exists(&dir.join(LAYOUT))
            .await
            .map_err(source_error)?
        {
            return Err(Failure::Source(format!(
                "{}: no oci-layout file, not an OCI image layout",
                dir.display()
            )));
        }
        let entries = read_index(dir).await.map_err(source_error)?;
        Ok(LayoutSource {
            dir: dir.to_owned(),
            tag,
            entries,
        })
    }

    async fn read_manifest(&self, descriptor: &Descriptor) -> crate::Result<ManifestBlob> {
        let path = files::blob_path(&self.dir, &descriptor.digest);
        let body = files::read_small(&path, berth_oci::MAX_MANIFEST_SIZE as u64)
            .await
            .map_err(|e| match e {
                LayoutError::Invalid { .. } => Failure::Content(e.to_string()),
                other => source_error(other),
            })?;
        let media_type = Some(descriptor.media_type.clone());
        check_manifest(
            body,
            media_type,
            Some(&descriptor.digest),
            Some(descriptor.size),
        )
    }
}

#[async_trait]
impl Source for LayoutSource {
    async fn root(&self) -> crate::Result<ManifestBlob> {
        let named: Vec<&Descriptor> = self
            .entries
            .iter()
            .filter(|e| ref_name(e).is_some())
            .collect();
        let entry = match &self.tag {
            Some(tag) => self
                .entries
                .iter()
                .find(|e| ref_name(e) == Some(tag.as_str()))
                .ok_or_else(|| {
                    Failure::Source(format!("{}: no image named {tag}", self.dir.display()))
                })?,
            None if named.len() == 1 => named[0],
            None if self.entries.len() == 1 => &self.entries[0],
            None => {
                return Err(Failure::Usage(format!(
                    "{} holds {} images: name one with oci:DIR:TAG",
                    self.dir.display(),
                    self.entries.len()
                )))
            }
        };
        self.read_manifest(entry).await
    }

    async fn manifest(&self, descriptor: &Descriptor) -> crate::Result<ManifestBlob> {
        self.read_manifest(descriptor).await
    }

    async fn blob(&self, descriptor: &Descriptor) -> crate::Result<BlobStream> {
        let path = files::blob_path(&self.dir, &descriptor.digest);
        files::file_stream(&path).await.map_err(source_error)
    }

    async fn referrers(&self, digest: &Digest) -> crate::Result<Vec<Descriptor>> {
        let mut found = Vec::new();
        // Referrers are the unnamed entries whose manifest has this subject.
        for entry in self.entries.iter().filter(|e| ref_name(e).is_none()) {
            let Ok(manifest) = self.read_manifest(entry).await else {
                continue;
            };
            let Ok(parsed) = berth_oci::Manifest::parse(&manifest.body, Some(&manifest.media_type))
            else {
                continue;
            };
            if parsed.subject.as_ref().map(|s| &s.digest) == Some(digest) {
                let mut d = manifest.descriptor();
                d.artifact_type = parsed.effective_artifact_type();
                found.push(d);
            }
        }
        Ok(found)
    }
}

/// Images written into a layout directory.
pub struct LayoutTarget {
    dir: PathBuf,
    tag: Option<String>,
    /// Entries to add to `index.json` at commit.
    added: Mutex<Vec<Descriptor>>,
}

impl LayoutTarget {
    /// Opens (creating) the directory `dir`; the image will be named `tag`.
    pub async fn open(dir: &Path, tag: Option<String>) -> crate::Result<LayoutTarget> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Failure::Target(format!("{}: {e}", dir.display())))?;
        Ok(LayoutTarget {
            dir: dir.to_owned(),
            tag,
            added: Mutex::new(Vec::new()),
        })
    }

    async fn write(&self, manifest: &ManifestBlob) -> crate::Result<()> {
        let content = files::once(manifest.body.clone());
        files::write_blob(&self.dir, &manifest.digest, content)
            .await
            .map(drop)
            .map_err(target_error)
    }

    fn add(&self, entry: Descriptor) {
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }
}

#[async_trait]
impl Target for LayoutTarget {
    async fn has_blob(&self, descriptor: &Descriptor) -> crate::Result<bool> {
        files::exists(&files::blob_path(&self.dir, &descriptor.digest))
            .await
            .map_err(target_error)
    }

    async fn put_blob(&self, descriptor: &Descriptor, content: BlobStream) -> crate::Result<()> {
        // A content failure of the stream is remembered here, so it is reported as refused
        // content (exit 5), not as a failing directory.
        let refused: Arc<Mutex<Option<String>>> = Arc::default();
        let seen = refused.clone();
        let path = files::blob_path(&self.dir, &descriptor.digest);
        let shown = path.display().to_string();
        let stream = content.map_err(move |e| {
            if let Some(m) = is_content_error(&e) {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
            }
            StorageError::Io {
                path: shown.clone(),
                source: e,
            }
        });
        let result = files::write_blob(&self.dir, &descriptor.digest, Box::pin(stream)).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(m) => Err(Failure::Content(m)),
                None => Err(target_error(e)),
            },
        }
    }

    async fn has_manifest(&self, digest: &Digest) -> crate::Result<bool> {
        files::exists(&files::blob_path(&self.dir, digest))
            .await
            .map_err(target_error)
    }

    async fn tagged(&self) -> crate::Result<Option<Digest>> {
        let Some(tag) = &self.tag else {
            return Ok(None);
        };
        let entries = read_index(&self.dir).await.map_err(target_error)?;
        Ok(entries
            .iter()
            .find(|e| ref_name(e) == Some(tag.as_str()))
            .map(|e| e.digest.clone()))
    }

    async fn put_manifest(&self, manifest: &ManifestBlob, root: bool) -> crate::Result<()> {
        self.write(manifest).await?;
        if root {
            let mut entry = manifest.descriptor();
            entry.annotations = self
                .tag
                .as_ref()
                .map(|t| [(REF_NAME.to_owned(), t.clone())].into());
            self.add(entry);
        }
        Ok(())
    }

    async fn put_referrer(&self, manifest: &ManifestBlob, _subject: &Digest) -> crate::Result<()> {
        self.write(manifest).await?;
        let parsed = berth_oci::Manifest::parse(&manifest.body, Some(&manifest.media_type))
            .map_err(|e| Failure::Content(e.to_string()))?;
        let mut entry = manifest.descriptor();
        entry.artifact_type = parsed.effective_artifact_type();
        self.add(entry);
        Ok(())
    }

    async fn commit(&self) -> crate::Result<()> {
        let added = std::mem::take(&mut *self.added.lock().unwrap_or_else(|e| e.into_inner()));
        let mut entries = read_index(&self.dir).await.map_err(target_error)?;
        for entry in added {
            match ref_name(&entry) {
                // A name moves to the new image, as a tag would.
                Some(name) => entries.retain(|e| ref_name(e) != Some(name)),
                None => entries.retain(|e| ref_name(e).is_some() || e.digest != entry.digest),
            }
            entries.push(entry);
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        let body = serde_json::to_vec_pretty(&index).map_err(|e| Failure::Target(e.to_string()))?;
        files::write_small(&self.dir, LAYOUT, LAYOUT_CONTENT)
            .await
            .map_err(target_error)?;
        files::write_small(&self.dir, INDEX, &body)
            .await
            .map_err(target_error)?;
        files::sync_dir(&self.dir).await.map_err(target_error)
    }
}
