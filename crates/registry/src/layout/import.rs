//! Import: an OCI image layout's manifests (all of `index.json`, or the entries with one ref
//! name and the referrers of what they reach) into a repository, through the registry's own
//! write paths, so everything is verified and published as a push would be.
//!
//! Order of work, so that a bad layout is refused with nothing tagged:
//! 1. every manifest is read, verified against its digest and size, and parsed, and every blob
//!    file is checked to exist with its descriptor's size, before anything is written;
//! 2. blobs are streamed into the registry with [`Registry::put_blob`], which hashes them on
//!    the way and publishes only what matches (a corrupt blob stops the import here);
//! 3. manifests are stored by digest, children before their index and subjects before their
//!    referrers;
//! 4. tags are written last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use berth_oci::{Descriptor, Digest, Digester, Manifest, ManifestKind, Reference, RepoName, Tag};
use bytes::Bytes;
use serde::Deserialize;

use super::export::MAX_INDEX_JSON;
use super::files::{self, blob_path};
use super::{ref_name, LayoutError};
use crate::{Registry, RegistryError};

/// How to import a layout.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Import only the `index.json` entries with this ref name (and the untagged referrers of
    /// what they reach); every entry when `None`.
    pub ref_name: Option<String>,
    /// Tag the imported image with this instead of its ref name; the selection must then hold
    /// exactly one image (referrers aside).
    pub tag: Option<Tag>,
}

/// What an import stored.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Tags written, with the manifest each names.
    pub tagged: Vec<(Tag, Digest)>,
    /// Every manifest stored (children and referrers included), in the order stored.
    pub manifests: Vec<Digest>,
    /// Blobs stored (configs and layers).
    pub blobs: usize,
    /// Their total size in bytes.
    pub blob_bytes: u64,
}

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<Descriptor>,
}

/// A manifest read from the layout and verified.
struct Node {
    body: Bytes,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

/// The part of the layout being imported: manifests by digest, blobs with their sizes.
#[derive(Default)]
struct Graph {
    nodes: HashMap<Digest, Node>,
    blobs: BTreeMap<Digest, u64>,
}

impl Graph {
    /// Reads `digest` and everything it reaches (children, blobs) into the graph.
    async fn load(&mut self, dir: &Path, digest: &Digest, size: u64) -> Result<(), LayoutError> {
        let mut stack = vec![(digest.clone(), size)];
        while let Some((digest, size)) = stack.pop() {
            if self.nodes.contains_key(&digest) {
                continue;
            }
            let (node, manifest) = read_manifest(dir, &digest, size).await?;
            for blob in manifest.config.iter().chain(&manifest.layers) {
                if blob.is_foreign() || self.blobs.contains_key(&blob.digest) {
                    continue;
                }
                let path = blob_path(dir, &blob.digest);
                let actual = files::file_size(&path).await?;
                if actual != blob.size {
                    return Err(LayoutError::invalid(
                        &path,
                        format!(
                            "is {actual} bytes, but manifest {digest} says {}: the layout is damaged, nothing was tagged",
                            blob.size
                        ),
                    ));
                }
                self.blobs.insert(blob.digest.clone(), blob.size);
            }
            stack.extend(
                manifest
                    .manifests
                    .iter()
                    .map(|c| (c.digest.clone(), c.size)),
            );
            self.nodes.insert(digest, node);
        }
        Ok(())
    }

    /// Manifests in an order the registry accepts: each after its children and its subject.
    fn push_order(&self, first: &[Digest]) -> Vec<Digest> {
        let mut rest: Vec<&Digest> = self.nodes.keys().collect();
        rest.sort();
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for start in first.iter().chain(rest) {
            let mut stack = vec![(start.clone(), false)];
            while let Some((digest, expanded)) = stack.pop() {
                if done.contains(&digest) {
                    continue;
                }
                let Some(node) = self.nodes.get(&digest) else {
                    continue;
                };
                if expanded {
                    done.insert(digest.clone());
                    order.push(digest);
                    continue;
                }
                stack.push((digest.clone(), true));
                for dep in node.children.iter().chain(&node.subject).rev() {
                    if !done.contains(dep) {
                        stack.push((dep.clone(), false));
                    }
                }
            }
        }
        order
    }
}

/// Reads one manifest from the layout, checking its size, digest and syntax.
async fn read_manifest(
    dir: &Path,
    digest: &Digest,
    size: u64,
) -> Result<(Node, Manifest), LayoutError> {
    let path = blob_path(dir, digest);
    let body = files::read_small(&path, berth_oci::MAX_MANIFEST_SIZE as u64).await?;
    let mut digester = Digester::new(digest.algorithm());
    digester.update(&body);
    let actual = digester.finish();
    if actual != *digest {
        return Err(LayoutError::Corrupt { path, actual });
    }
    if body.len() as u64 != size {
        return Err(LayoutError::invalid(
            &path,
            format!("is {} bytes, but its descriptor says {size}", body.len()),
        ));
    }
    let manifest = Manifest::parse(&body, None).map_err(|e| {
        LayoutError::invalid(&path, format!("is not a manifest Berth can store: {e}"))
    })?;
    if manifest.kind == ManifestKind::Schema1 {
        return Err(LayoutError::invalid(
            &path,
            "is a Docker schema 1 manifest, which can no longer be pushed",
        ));
    }
    let node = Node {
        body,
        children: manifest
            .manifests
            .iter()
            .map(|c| c.digest.clone())
            .collect(),
        subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
    };
    Ok((node, manifest))
}

/// Reads `oci-layout` and `index.json`.
async fn read_index(dir: &Path) -> Result<Vec<Descriptor>, LayoutError> {
    let layout_file = dir.join(super::LAYOUT_FILE);
    if !files::exists(&layout_file).await? {
        return Err(LayoutError::invalid(
            dir,
            "is not an OCI image layout: it has no oci-layout file",
        ));
    }
    super::check_layout_file(&layout_file).await?;
    let path = dir.join(super::INDEX_FILE);
    let body = files::read_small(&path, MAX_INDEX_JSON).await?;
    let index: IndexJson = serde_json::from_slice(&body)
        .map_err(|e| LayoutError::invalid(&path, format!("is not an OCI index: {e}")))?;
    Ok(index.manifests)
}

impl Registry {
    /// Imports the OCI image layout at `dir` into `repo` (see the module documentation for
    /// the order of work and what is verified).
    pub async fn import_layout(
        &self,
        dir: &Path,
        repo: &RepoName,
        options: &ImportOptions,
    ) -> Result<ImportReport, LayoutError> {
        self.check_writable()?;
        let entries = read_index(dir).await?;
        let selected: Vec<&Descriptor> = match &options.ref_name {
            None => entries.iter().collect(),
            Some(wanted) => {
                let found: Vec<_> = entries
                    .iter()
                    .filter(|e| ref_name(e) == Some(wanted.as_str()))
                    .collect();
                if found.is_empty() {
                    let names: Vec<&str> = entries.iter().filter_map(ref_name).collect();
                    return Err(LayoutError::Selection(format!(
                        "{}: no entry is named {wanted:?} (ref names: {})",
                        dir.display(),
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    )));
                }
                found
            }
        };
        let mut graph = Graph::default();
        for e in &selected {
            graph.load(dir, &e.digest, e.size).await?;
        }
        if options.ref_name.is_some() {
            add_referrers(&mut graph, dir, &entries).await?;
        }
        let tags = choose_tags(&graph, &selected, options)?;

        let mut report = ImportReport::default();
        for (digest, size) in &graph.blobs {
            let content = files::file_stream(&blob_path(dir, digest)).await?;
            match self.put_blob(repo, digest, content).await {
                Ok(_) => {}
                Err(RegistryError::DigestMismatch { actual, .. }) => {
                    return Err(LayoutError::Corrupt {
                        path: blob_path(dir, digest),
                        actual,
                    })
                }
                Err(e) => return Err(e.into()),
            }
            report.blobs += 1;
            report.blob_bytes += size;
        }
        let first: Vec<Digest> = selected.iter().map(|e| e.digest.clone()).collect();
        for digest in graph.push_order(&first) {
            let body = graph.nodes[&digest].body.clone();
            self.put_manifest(repo, &Reference::Digest(digest.clone()), None, body)
                .await?;
            report.manifests.push(digest);
        }
        for (tag, digest) in tags {
            let body = graph.nodes[&digest].body.clone();
            self.put_manifest(repo, &Reference::Tag(tag.clone()), None, body)
                .await?;
            report.tagged.push((tag, digest));
        }
        Ok(report)
    }
}

/// Adds the untagged entries that refer (directly or through other referrers) to what the
/// graph holds: the signatures and SBOMs of a selected image.
async fn add_referrers(
    graph: &mut Graph,
    dir: &Path,
    entries: &[Descriptor],
) -> Result<(), LayoutError> {
    let mut subjects = Vec::new();
    for e in entries.iter().filter(|e| ref_name(e).is_none()) {
        if !graph.nodes.contains_key(&e.digest) {
            let (node, _) = read_manifest(dir, &e.digest, e.size).await?;
            if let Some(subject) = node.subject {
                subjects.push((e, subject));
            }
        }
    }
    loop {
        let ready: Vec<&Descriptor> = subjects
            .iter()
            .filter(|(e, s)| graph.nodes.contains_key(s) && !graph.nodes.contains_key(&e.digest))
            .map(|(e, _)| *e)
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        for e in ready {
            graph.load(dir, &e.digest, e.size).await?;
        }
    }
}

/// The tags to write: the ref names of the selected entries, or `options.tag` for the one
/// image selected. Checked before anything is written.
fn choose_tags(
    graph: &Graph,
    selected: &[&Descriptor],
    options: &ImportOptions,
) -> Result<Vec<(Tag, Digest)>, LayoutError> {
    if let Some(tag) = &options.tag {
        let mut images: Vec<&Digest> = selected
            .iter()
            .map(|e| &e.digest)
            .filter(|d| {
                let subject = graph.nodes.get(*d).and_then(|n| n.subject.as_ref());
                !subject.is_some_and(|s| graph.nodes.contains_key(s))
            })
            .collect();
        images.sort();
        images.dedup();
        return match images.as_slice() {
            [one] => Ok(vec![(tag.clone(), (*one).clone())]),
            _ => Err(LayoutError::Selection(format!(
                "a tag on the command line needs exactly one image, and the selection holds {} (ref names: {}); choose one with --ref",
                images.len(),
                selected.iter().filter_map(|e| ref_name(e)).collect::<Vec<_>>().join(", ")
            ))),
        };
    }
    let mut tags: BTreeMap<Tag, Digest> = BTreeMap::new();
    for e in selected {
        let Some(name) = ref_name(e) else {
            continue;
        };
        let tag: Tag = name.parse().map_err(|_| {
            LayoutError::Selection(format!(
                "ref name {name:?} is not a valid tag; import it with --ref {name:?} NAME:TAG"
            ))
        })?;
        if let Some(other) = tags.insert(tag.clone(), e.digest.clone()) {
            if other != e.digest {
                return Err(LayoutError::Selection(format!(
                    "ref name {name:?} names two manifests ({other} and {}); the layout is ambiguous",
                    e.digest
                )));
            }
        }
    }
    Ok(tags.into_iter().collect())
}
