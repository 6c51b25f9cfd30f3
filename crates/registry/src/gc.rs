//! Garbage collection: mark and sweep over registry:2's layout.
//!
//! Mark: in every repository, the live manifests are all revisions, or with `delete_untagged`
//! only what the tags reach: tagged manifests, the children of live indexes (registry:2's
//! `--delete-untagged` deletes those, a known bug this fixes), and referrers (manifests with a
//! `subject`) whose subject is live. Every blob a live manifest references is marked, and so is
//! the manifest's own blob. Sweep: every blob under `blobs/` that is not marked is removed, and
//! with `delete_untagged` the revision links of dead manifests are removed.
//!
//! This is the offline collector, like `registry garbage-collect`: a push in progress (blobs
//! uploaded, manifest not yet put) is not visible to the mark phase, so run it with the
//! registry stopped or in read-only mode. `dry_run` reports without changing anything.

use std::collections::{HashMap, HashSet};

use berth_oci::{Digest, Manifest, RepoName};
use berth_storage::paths;

use crate::{links, Registry, RegistryError};

/// What to collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Also remove manifests no tag reaches (registry:2's `--delete-untagged`).
    pub delete_untagged: bool,
    /// Report only; change nothing (registry:2's `--dry-run`).
    pub dry_run: bool,
}

/// What a collection found (and, unless it was a dry run, removed).
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Manifests kept, per repository, for the report.
    pub manifests_marked: Vec<(String, Digest)>,
    /// Manifest revisions removed (`repository`, digest).
    pub manifests_removed: Vec<(String, Digest)>,
    /// Blobs removed, with their sizes.
    pub blobs_removed: Vec<(Digest, u64)>,
    /// Blobs kept.
    pub blobs_kept: usize,
}

impl GcReport {
    /// Bytes the removed blobs held.
    pub fn bytes_freed(&self) -> u64 {
        self.blobs_removed.iter().map(|(_, size)| size).sum()
    }
}

impl Registry {
    /// Runs one mark-and-sweep collection.
    pub async fn garbage_collect(&self, options: GcOptions) -> Result<GcReport, RegistryError> {
        if !options.dry_run {
            self.check_writable()?;
        }
        let mut report = GcReport::default();
        let mut marked: HashSet<Digest> = HashSet::new();
        for name in self.walk_repositories().await? {
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            let (manifests, unparsed) = self.repository_manifests(&repo).await?;
            // A stored manifest that does not parse has unknown references: nothing it might
            // use can be proven dead, so stop before sweeping anything.
            if !unparsed.is_empty() {
                return Err(RegistryError::WouldLoseData(format!(
                    "{name}: manifest {} cannot be parsed; garbage collection would not know which blobs it uses",
                    unparsed[0]
                )));
            }
            let live = if options.delete_untagged {
                self.live_manifests(&repo, &manifests).await?
            } else {
                manifests.keys().cloned().collect()
            };
            for (digest, manifest) in &manifests {
                if !live.contains(digest) {
                    report
                        .manifests_removed
                        .push((name.clone(), digest.clone()));
                    if !options.dry_run {
                        self.remove_revision(&repo, digest, manifest).await?;
                    }
                    continue;
                }
                report.manifests_marked.push((name.clone(), digest.clone()));
                marked.insert(digest.clone());
                marked.extend(manifest.blob_references().into_iter().cloned());
            }
        }
        for (digest, size) in self.all_blobs().await? {
            if marked.contains(&digest) {
                report.blobs_kept += 1;
                continue;
            }
            if !options.dry_run {
                links::remove(self.driver(), &paths::blob_dir(&digest)).await?;
            }
            report.blobs_removed.push((digest, size));
        }
        Ok(report)
    }

    /// Every manifest revision of a repository, parsed. Revisions whose content is missing or
    /// unreadable are skipped (they cannot be served anyway).
    async fn repository_manifests(
        &self,
        repo: &RepoName,
    ) -> Result<(HashMap<Digest, Manifest>, Vec<Digest>), RegistryError> {
        let mut manifests = HashMap::new();
        let mut unparsed = Vec::new();
        for digest in self.list_digests(&paths::revisions_dir(repo)).await? {
            let cached = match self.load_manifest(&digest).await {
                Ok(c) => c,
                Err(RegistryError::ManifestUnknown(_) | RegistryError::DigestMismatch { .. }) => {
                    continue
                }
                Err(e) => return Err(e),
            };
            match Manifest::parse(&cached.body, Some(&cached.media_type)) {
                Ok(m) => {
                    manifests.insert(digest, m);
                }
                Err(_) => unparsed.push(digest),
            }
        }
        Ok((manifests, unparsed))
    }

    /// Manifests reachable from the tags: tagged ones, children of live indexes, and referrers
    /// of live manifests, to a fixed point.
    async fn live_manifests(
        &self,
        repo: &RepoName,
        manifests: &HashMap<Digest, Manifest>,
    ) -> Result<HashSet<Digest>, RegistryError> {
        let mut queue = Vec::new();
        let tags = match self.all_tags(repo).await {
            Ok(tags) => tags,
            Err(RegistryError::NameUnknown(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        for tag in tags {
            let Ok(tag) = tag.parse() else { continue };
            if let Some(d) =
                links::read(self.driver(), &paths::tag_current_link(repo, &tag)).await?
            {
                queue.push(d);
            }
        }
        let mut live = HashSet::new();
        loop {
            while let Some(d) = queue.pop() {
                let Some(m) = manifests.get(&d) else { continue };
                if live.insert(d) {
                    queue.extend(m.manifests.iter().map(|c| c.digest.clone()));
                }
            }
            let referrers = manifests.iter().filter(|(d, m)| {
                !live.contains(*d) && m.subject.as_ref().is_some_and(|s| live.contains(&s.digest))
            });
            queue.extend(referrers.map(|(d, _)| d.clone()));
            if queue.is_empty() {
                return Ok(live);
            }
        }
    }

    /// Removes a manifest revision from a repository (and its referrers-index entry).
    async fn remove_revision(
        &self,
        repo: &RepoName,
        digest: &Digest,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        if let Some(subject) = &manifest.subject {
            let link = paths::referrer_link(repo, &subject.digest, digest);
            links::remove(self.driver(), link.trim_end_matches("/link")).await?;
        }
        let link = paths::revision_link(repo, digest);
        links::remove(self.driver(), link.trim_end_matches("/link")).await?;
        Ok(())
    }

    /// Digests under a `<alg>/<hex>/` directory (revisions, layers).
    pub(crate) async fn list_digests(&self, dir: &str) -> Result<Vec<Digest>, RegistryError> {
        let mut found = Vec::new();
        for algorithm in self.list_or_empty(dir).await? {
            for hex in self.list_or_empty(&format!("{dir}/{algorithm}")).await? {
                if let Ok(d) = format!("{algorithm}:{hex}").parse() {
                    found.push(d);
                }
            }
        }
        Ok(found)
    }

    /// Every stored blob with its size: `blobs/<alg>/<2 hex>/<hex>/data`.
    async fn all_blobs(&self) -> Result<Vec<(Digest, u64)>, RegistryError> {
        let root = paths::blobs_root();
        let mut found = Vec::new();
        for algorithm in self.list_or_empty(&root).await? {
            for prefix in self.list_or_empty(&format!("{root}/{algorithm}")).await? {
                for hex in self
                    .list_or_empty(&format!("{root}/{algorithm}/{prefix}"))
                    .await?
                {
                    let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                        continue;
                    };
                    if let Some(size) = self.blob_size(&digest).await? {
                        found.push((digest, size));
                    }
                }
            }
        }
        Ok(found)
    }

    pub(crate) async fn list_or_empty(&self, dir: &str) -> Result<Vec<String>, RegistryError> {
        match self.driver().list(dir).await {
            Ok(names) => Ok(names),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
