//! Export: a repository's manifests (one tag, one digest, or every tag) into an OCI image
//! layout, with everything they reach (configs, layers, the children of an index: all
//! platforms) and their referrers, found through the referrers index, recursively (the
//! signature of an SBOM of a platform image comes along).
//!
//! Export only reads the registry's storage, so it is safe while the registry serves. Blobs are
//! streamed, verified while copied, fsynced and renamed into place; `index.json` is written
//! last, so an interrupted export never leaves a layout that names a missing blob.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use berth_oci::{media_types, Descriptor, Digest, Manifest, Reference, RepoName, Tag};
use serde::Serialize;
use serde_json::Value;

use super::files::{self, blob_path, write_blob};
use super::{entry, ref_name, LayoutError};
use crate::{Registry, RegistryError};

/// Upper bound for an `index.json` read back from an existing layout.
pub(super) const MAX_INDEX_JSON: u64 = 64 * 1024 * 1024;

/// What to export from a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One tag: one `index.json` entry named by it.
    Tag(Tag),
    /// One manifest by digest: an entry without a ref name.
    Digest(Digest),
    /// Every tag of the repository, one entry each.
    AllTags,
}

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportReport {
    /// The selected manifests, with the tag each entry is named by.
    pub exported: Vec<(Option<Tag>, Digest)>,
    /// Referrers, listed in `index.json` without a ref name.
    pub referrers: Vec<Digest>,
    /// Manifests in the layout for this export: selected ones, children and referrers.
    pub manifests: usize,
    /// Other blobs (configs, layers) in the layout for this export.
    pub blobs: usize,
    /// Bytes written; files the layout already held with the right content are kept as they are.
    pub bytes_written: u64,
}

/// The state of one export's walk over the manifest graph.
#[derive(Default)]
struct Walk {
    pending: Vec<Digest>,
    seen: HashSet<Digest>,
    blobs: HashSet<Digest>,
    /// Media type and size of every manifest written.
    info: HashMap<Digest, (String, u64)>,
    referrers: Vec<Descriptor>,
    blob_dirs: BTreeSet<std::path::PathBuf>,
    bytes_written: u64,
}

impl Registry {
    /// Writes `selection` of `repo` into the OCI image layout at `dir`: a new or empty
    /// directory, or an existing layout, whose `index.json` entries with the same ref names
    /// are replaced and others kept.
    pub async fn export_layout(
        &self,
        repo: &RepoName,
        selection: &Selection,
        dir: &Path,
    ) -> Result<ExportReport, LayoutError> {
        let roots = self.export_roots(repo, selection).await?;
        prepare_dir(dir).await?;
        let mut walk = Walk::default();
        walk.pending
            .extend(roots.iter().rev().map(|(_, d)| d.clone()));
        while let Some(digest) = walk.pending.pop() {
            if walk.seen.insert(digest.clone()) {
                self.export_manifest(repo, &digest, dir, &mut walk).await?;
            }
        }

        let mut entries = Vec::new();
        for (tag, digest) in &roots {
            let (media_type, size) = &walk.info[digest];
            entries.push(entry(digest, media_type, *size, tag.as_ref()));
        }
        let root_digests: HashSet<&Digest> = roots.iter().map(|(_, d)| d).collect();
        walk.referrers.sort_by(|a, b| a.digest.cmp(&b.digest));
        let referrers: Vec<Descriptor> = walk
            .referrers
            .iter()
            .filter(|r| !root_digests.contains(&r.digest))
            .map(|r| Descriptor {
                annotations: None,
                ..r.clone()
            })
            .collect();
        entries.extend(referrers.iter().cloned());

        for blob_dir in &walk.blob_dirs {
            files::sync_dir(blob_dir).await?;
        }
        files::sync_dir(&dir.join("blobs")).await?;
        write_index(dir, entries).await?;
        files::sync_dir(dir).await?;
        Ok(ExportReport {
            exported: roots,
            referrers: referrers.into_iter().map(|r| r.digest).collect(),
            manifests: walk.info.len(),
            blobs: walk.blobs.len(),
            bytes_written: walk.bytes_written,
        })
    }

    /// The selected manifests: `(tag, digest)` pairs, in tag order.
    async fn export_roots(
        &self,
        repo: &RepoName,
        selection: &Selection,
    ) -> Result<Vec<(Option<Tag>, Digest)>, LayoutError> {
        match selection {
            Selection::Tag(tag) => {
                let digest = self
                    .resolve_manifest(repo, &Reference::Tag(tag.clone()))
                    .await?;
                Ok(vec![(Some(tag.clone()), digest)])
            }
            Selection::Digest(digest) => {
                let digest = self
                    .resolve_manifest(repo, &Reference::Digest(digest.clone()))
                    .await?;
                Ok(vec![(None, digest)])
            }
            Selection::AllTags => {
                let mut roots = Vec::new();
                for name in self.all_tags(repo).await? {
                    let Ok(tag) = name.parse::<Tag>() else {
                        continue;
                    };
                    match self
                        .resolve_manifest(repo, &Reference::Tag(tag.clone()))
                        .await
                    {
                        Ok(digest) => roots.push((Some(tag), digest)),
                        // Deleted since the listing: export what is there.
                        Err(RegistryError::ManifestUnknown(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if roots.is_empty() {
                    return Err(LayoutError::Selection(format!(
                        "repository {repo} has no tags; export a manifest by digest with {repo}@DIGEST"
                    )));
                }
                Ok(roots)
            }
        }
    }

    /// Writes one manifest and its blobs, and queues its children and referrers.
    async fn export_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        dir: &Path,
        walk: &mut Walk,
    ) -> Result<(), LayoutError> {
        let cached = self.load_manifest(digest).await?;
        let manifest =
            Manifest::parse(&cached.body, Some(&cached.media_type)).map_err(RegistryError::from)?;
        walk.info.insert(
            digest.clone(),
            (cached.media_type.clone(), cached.body.len() as u64),
        );
        walk.bytes_written += write_blob(dir, digest, files::once(cached.body)).await?;
        note_dir(walk, dir, digest);
        for blob in manifest.blob_references() {
            if walk.blobs.insert(blob.clone()) {
                let content = self.read_blob(blob, 0, None).await?;
                walk.bytes_written += write_blob(dir, blob, content).await?;
                note_dir(walk, dir, blob);
            }
        }
        walk.pending
            .extend(manifest.manifests.iter().rev().map(|c| c.digest.clone()));
        for referrer in self.referrers(repo, digest, None).await? {
            if !walk.seen.contains(&referrer.digest)
                && !walk.referrers.iter().any(|r| r.digest == referrer.digest)
            {
                walk.pending.push(referrer.digest.clone());
                walk.referrers.push(referrer);
            }
        }
        Ok(())
    }
}

fn note_dir(walk: &mut Walk, dir: &Path, digest: &Digest) {
    if let Some(parent) = blob_path(dir, digest).parent() {
        walk.blob_dirs.insert(parent.to_path_buf());
    }
}

/// Creates `dir` if needed, and makes sure it is empty or already an OCI image layout, so an
/// export never scatters files into an unrelated directory. `oci-layout` is written first, so
/// an interrupted export can be run again into the same directory.
async fn prepare_dir(dir: &Path) -> Result<(), LayoutError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(LayoutError::io(dir))?;
    let layout_file = dir.join(super::LAYOUT_FILE);
    if files::exists(&layout_file).await? {
        super::check_layout_file(&layout_file).await?;
    } else {
        let mut entries = tokio::fs::read_dir(dir)
            .await
            .map_err(LayoutError::io(dir))?;
        if entries
            .next_entry()
            .await
            .map_err(LayoutError::io(dir))?
            .is_some()
        {
            return Err(LayoutError::invalid(
                dir,
                "is neither empty nor an OCI image layout (no oci-layout file); export into a new or empty directory",
            ));
        }
        files::write_small(dir, super::LAYOUT_FILE, super::LAYOUT_CONTENT).await?;
    }
    let blobs = dir.join("blobs");
    tokio::fs::create_dir_all(&blobs)
        .await
        .map_err(LayoutError::io(&blobs))
}

/// A new `index.json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewIndex<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: &'a [Descriptor],
}

/// Writes `index.json`: `entries` plus the existing entries they do not replace (another ref
/// name, or another untagged digest), keeping any other fields an existing index has.
async fn write_index(dir: &Path, entries: Vec<Descriptor>) -> Result<(), LayoutError> {
    let path = dir.join(super::INDEX_FILE);
    let mut index = if files::exists(&path).await? {
        let body = files::read_small(&path, MAX_INDEX_JSON).await?;
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| LayoutError::invalid(&path, "is not a JSON object"))?
    } else {
        // In the order skopeo and umoci write the fields.
        let index = NewIndex {
            schema_version: 2,
            media_type: media_types::OCI_INDEX,
            manifests: &entries,
        };
        let body =
            serde_json::to_vec(&index).map_err(|e| LayoutError::invalid(&path, e.to_string()))?;
        return files::write_small(dir, super::INDEX_FILE, &body).await;
    };
    let existing: Vec<Descriptor> = match index.get("manifests") {
        Some(list) => serde_json::from_value(list.clone())
            .map_err(|e| LayoutError::invalid(&path, format!("manifests: {e}")))?,
        None => Vec::new(),
    };
    let replaced = |old: &Descriptor| {
        entries
            .iter()
            .any(|new| match (ref_name(old), ref_name(new)) {
                (Some(a), Some(b)) => a == b,
                (None, None) => old.digest == new.digest,
                _ => false,
            })
    };
    let mut manifests: Vec<Descriptor> = existing.into_iter().filter(|e| !replaced(e)).collect();
    manifests.extend(entries);
    index["manifests"] =
        serde_json::to_value(manifests).map_err(|e| LayoutError::invalid(&path, e.to_string()))?;
    let body =
        serde_json::to_vec(&index).map_err(|e| LayoutError::invalid(&path, e.to_string()))?;
    files::write_small(dir, super::INDEX_FILE, &body).await
}
