//! The storage side of the pull-through cache's expiry and eviction (the policy lives in
//! `berth-proxy`): last-pull records, the cached images of a set of repositories with the
//! bytes they use, and the eviction of one image.
//!
//! **Last-pull records.** `_berth/pulled/<repository>/_revisions/<alg>/<hex>` holds the unix
//! time (ms) a manifest of a cached repository was last served. The proxy writes it at most
//! once per refresh period per manifest (it remembers what it wrote), so a hot image costs one
//! small write every few minutes, not one per pull. The file is outside registry:2's walks and
//! shared storage gives every node the same view; nodes write "now", so the newest write wins.
//!
//! **Images.** In each repository, a manifest revision that no index revision of the same
//! repository lists is an image; its members are itself and, recursively, the children its
//! index lists that are revisions too. Its tags are those pointing at a member; its bytes are
//! the stored blobs its members use (manifests, configs, layers). An image was last pulled
//! when the newest record of any member says.
//!
//! **Eviction** removes links only, as retention and a manifest DELETE do: the tags pointing
//! at the image, then the revision links of members no other image of the repository uses,
//! then their pull records. Garbage collection frees the blobs afterwards (the online
//! collector after its `delay`). Tags go first, so a crash leaves at most an untagged image,
//! which the next pass evicts. An image pulled again since the pass looked at it is kept.
//! Layer links stay: a client in the middle of pulling the image still gets its blobs until
//! they are collected, and a pull after that fetches them again.

use std::collections::{HashMap, HashSet};

use berth_oci::{Digest, Manifest, RepoName, Tag};
use berth_storage::paths;
use bytes::Bytes;

use crate::{links, Registry, RegistryError};

/// One cached image: a manifest revision no index of its repository lists, with its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// The repository.
    pub repository: RepoName,
    /// The image's manifest (an image manifest or an index).
    pub root: Digest,
    /// The root and every child manifest stored as a revision of the repository.
    pub members: Vec<Digest>,
    /// Tags pointing at a member.
    pub tags: Vec<Tag>,
    /// Stored blobs the members use, manifests included, each once.
    pub blobs: Vec<Digest>,
    /// When a member was last pulled (unix ms), `None` without any record.
    pub last_pull: Option<u64>,
}

/// The images of some repositories and the sizes of the blobs they use.
#[derive(Debug, Clone, Default)]
pub struct ImageInventory {
    /// Every image, repository by repository.
    pub images: Vec<CachedImage>,
    /// Size of every blob an image uses.
    pub sizes: HashMap<Digest, u64>,
    /// Repositories left out, and why (a manifest that does not parse).
    pub skipped: Vec<String>,
}

impl Registry {
    /// Every repository in storage (directories with `_manifests`), sorted.
    pub async fn repository_names(&self) -> Result<Vec<RepoName>, RegistryError> {
        let names = self.walk_repositories().await?;
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    /// Records that `digest` of `repo` was pulled at `at_ms` (unix ms).
    pub async fn record_pull(
        &self,
        repo: &RepoName,
        digest: &Digest,
        at_ms: u64,
    ) -> Result<(), RegistryError> {
        self.check_writable()?;
        self.driver()
            .put_content(
                &paths::pull_record(repo, digest),
                Bytes::from(at_ms.to_string()),
            )
            .await?;
        Ok(())
    }

    /// When `digest` of `repo` was last pulled (unix ms); `None` without a readable record.
    pub async fn last_pull(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        Ok(links::read_time(self.driver(), &paths::pull_record(repo, digest)).await?)
    }

    /// The images of `repos` (see the module documentation). Reads only, except that pull
    /// records of manifests that are no longer revisions are removed.
    pub async fn cached_images(&self, repos: &[RepoName]) -> Result<ImageInventory, RegistryError> {
        let mut inventory = ImageInventory::default();
        for repo in repos {
            let (manifests, unparsed) = self.repository_manifests(repo).await?;
            if let Some(bad) = unparsed.first() {
                inventory.skipped.push(format!(
                    "{repo}: manifest {bad} cannot be parsed, so the blobs it uses are unknown"
                ));
                continue;
            }
            let tags = self.tag_targets(repo).await?;
            for mut image in images_of(repo, &manifests) {
                let mut blobs = HashSet::new();
                for member in &image.members {
                    blobs.insert(member.clone());
                    if let Some(m) = manifests.get(member) {
                        blobs.extend(m.blob_references().into_iter().cloned());
                    }
                    if let Some(at) = self.last_pull(repo, member).await? {
                        image.last_pull = Some(image.last_pull.map_or(at, |t| t.max(at)));
                    }
                }
                for blob in blobs {
                    if !inventory.sizes.contains_key(&blob) {
                        match self.blob_size(&blob).await? {
                            Some(size) => inventory.sizes.insert(blob.clone(), size),
                            // Not fetched yet (or collected): it takes no space.
                            None => continue,
                        };
                    }
                    image.blobs.push(blob);
                }
                image.blobs.sort();
                image.tags = tags
                    .iter()
                    .filter(|(_, d)| image.members.contains(d))
                    .map(|(t, _)| t.clone())
                    .collect();
                inventory.images.push(image);
            }
            self.forget_pulls_except(repo, &manifests).await?;
        }
        Ok(inventory)
    }

    /// Evicts `image` (see the module documentation), keeping the revisions in `shared` (used
    /// by other images of the repository). Returns `false`, changing nothing, when the image
    /// was pulled after `image.last_pull`. Refused in read-only mode; `storage.delete.enabled`
    /// does not apply (callers evict only repositories the cache owns).
    pub async fn evict_image(
        &self,
        image: &CachedImage,
        shared: &HashSet<Digest>,
    ) -> Result<bool, RegistryError> {
        self.check_writable()?;
        let repo = &image.repository;
        // A pull-through store of a member meanwhile waits, and is not undone half-way.
        let _links = self.repo_locks.delete_links(repo).await;
        for member in &image.members {
            if self.last_pull(repo, member).await? > image.last_pull {
                return Ok(false);
            }
        }
        let removed: Vec<&Digest> = image
            .members
            .iter()
            .filter(|d| !shared.contains(*d))
            .collect();
        for (tag, target) in self.tag_targets(repo).await? {
            if removed.contains(&&target) {
                self.remove_tag(repo, &tag).await?;
            }
        }
        for digest in removed {
            match self.load_manifest(digest).await {
                Ok(cached) => {
                    let manifest = Manifest::parse(&cached.body, Some(&cached.media_type))?;
                    self.remove_revision(repo, digest, &manifest).await?;
                }
                Err(RegistryError::ManifestUnknown(_)) => {
                    let link = paths::revision_link(repo, digest);
                    links::remove(self.driver(), link.trim_end_matches("/link")).await?;
                    self.resolve_cache.forget(repo);
                }
                Err(e) => return Err(e),
            }
            links::remove(self.driver(), &paths::pull_record(repo, digest)).await?;
        }
        Ok(true)
    }

    /// Every tag of `repo` with the digest its current link names.
    async fn tag_targets(&self, repo: &RepoName) -> Result<Vec<(Tag, Digest)>, RegistryError> {
        let names = match self.all_tags(repo).await {
            Ok(names) => names,
            Err(RegistryError::NameUnknown(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for name in names {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            if let Some(d) =
                links::read(self.driver(), &paths::tag_current_link(repo, &tag)).await?
            {
                out.push((tag, d));
            }
        }
        Ok(out)
    }

    /// Removes pull records of `repo` whose manifest is no longer a revision (deleted by
    /// other means than eviction).
    async fn forget_pulls_except(
        &self,
        repo: &RepoName,
        manifests: &HashMap<Digest, Manifest>,
    ) -> Result<(), RegistryError> {
        let dir = format!("{}/{repo}/_revisions", paths::pulled_root());
        for digest in self.list_digests(&dir).await? {
            if !manifests.contains_key(&digest) {
                links::remove(self.driver(), &paths::pull_record(repo, &digest)).await?;
            }
        }
        Ok(())
    }
}

/// Groups the revisions of `repo` into images, in digest order (blobs, tags and pull times are
/// filled in by the caller).
fn images_of(repo: &RepoName, manifests: &HashMap<Digest, Manifest>) -> Vec<CachedImage> {
    let children: HashSet<&Digest> = manifests
        .values()
        .flat_map(|m| m.manifests.iter().map(|c| &c.digest))
        .filter(|d| manifests.contains_key(*d))
        .collect();
    let mut roots: Vec<&Digest> = manifests.keys().filter(|d| !children.contains(d)).collect();
    roots.sort();
    roots
        .into_iter()
        .map(|root| {
            let mut members = vec![root.clone()];
            let mut i = 0;
            while i < members.len() {
                if let Some(m) = manifests.get(&members[i]) {
                    for child in &m.manifests {
                        if manifests.contains_key(&child.digest) && !members.contains(&child.digest)
                        {
                            members.push(child.digest.clone());
                        }
                    }
                }
                i += 1;
            }
            CachedImage {
                repository: repo.clone(),
                root: root.clone(),
                members,
                tags: Vec::new(),
                blobs: Vec::new(),
                last_pull: None,
            }
        })
        .collect()
}
