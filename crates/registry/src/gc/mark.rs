//! The mark phase shared by the offline and the online collector, and the storage walks both
//! sweeps use.

use std::collections::{HashMap, HashSet};

use berth_oci::{Digest, Manifest, RepoName};
use berth_storage::{paths, FileInfo};
use futures_util::{StreamExt, TryStreamExt};

use crate::{links, Registry, RegistryError};

/// Repositories marked at the same time. Each also loads its manifests concurrently, so the
/// walk is bound by storage latency (a syscall or an S3 round trip), never by one at a time.
const REPO_CONCURRENCY: usize = 8;
/// Manifests of one repository, or directories of `blobs/`, read at the same time.
const READ_CONCURRENCY: usize = 32;

/// What the mark phase found.
#[derive(Debug, Default)]
pub(crate) struct Marking {
    /// Every blob a kept manifest uses, and the kept manifests' own blobs.
    pub marked: HashSet<Digest>,
    /// Manifests kept, per repository, for the report.
    pub manifests_marked: Vec<(String, Digest)>,
    /// Manifest revisions that no tag reaches (only with `delete_untagged`).
    pub dead: Vec<(RepoName, Digest, Manifest)>,
}

impl Registry {
    /// Marks from every repository: all revisions, or with `delete_untagged` only what the
    /// tags reach. Changes nothing. A stored manifest that does not parse is an error: its
    /// references are unknown, so nothing it might use can be proven unused.
    pub(crate) async fn mark(&self, delete_untagged: bool) -> Result<Marking, RegistryError> {
        let mut marking = Marking::default();
        // Repositories are read concurrently but consumed in walk order, one at a time, so at
        // most REPO_CONCURRENCY repositories' parsed manifests are in memory: what grows with
        // the registry is only the set of marked digests.
        let mut repositories = futures_util::stream::iter(self.walk_repositories().await?)
            .map(|name| async move {
                let Ok(repo) = name.parse::<RepoName>() else {
                    return Ok(None);
                };
                let (manifests, unparsed) = self.repository_manifests(&repo).await?;
                if let Some(first) = unparsed.first() {
                    return Err(RegistryError::WouldLoseData(format!(
                        "{name}: manifest {first} cannot be parsed; garbage collection would not know which blobs it uses"
                    )));
                }
                let live = if delete_untagged {
                    Some(self.live_manifests(&repo, &manifests).await?)
                } else {
                    None
                };
                Ok(Some((name, repo, manifests, live)))
            })
            .buffered(REPO_CONCURRENCY);
        while let Some(next) = repositories.next().await {
            let Some((name, repo, manifests, live)) = next? else {
                continue;
            };
            for (digest, manifest) in manifests {
                if live.as_ref().is_some_and(|live| !live.contains(&digest)) {
                    marking.dead.push((repo.clone(), digest, manifest));
                    continue;
                }
                marking
                    .manifests_marked
                    .push((name.clone(), digest.clone()));
                marking
                    .marked
                    .extend(manifest.blob_references().into_iter().cloned());
                marking.marked.insert(digest);
            }
        }
        Ok(marking)
    }

    /// Every manifest revision of a repository, parsed. Revisions whose content is missing or
    /// unreadable are skipped (they cannot be served anyway).
    pub(crate) async fn repository_manifests(
        &self,
        repo: &RepoName,
    ) -> Result<(HashMap<Digest, Manifest>, Vec<Digest>), RegistryError> {
        let mut manifests = HashMap::new();
        let mut unparsed = Vec::new();
        let revisions = self.list_digests(&paths::revisions_dir(repo)).await?;
        let mut loads = futures_util::stream::iter(revisions)
            .map(|digest| async move {
                let loaded = self.load_manifest(&digest).await;
                (digest, loaded)
            })
            .buffer_unordered(READ_CONCURRENCY);
        while let Some((digest, loaded)) = loads.next().await {
            let cached = match loaded {
                Ok(c) => c,
                Err(RegistryError::ManifestUnknown(_) | RegistryError::Corrupt(_)) => continue,
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
        Ok(reachable(queue, manifests))
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

    /// Every stored blob: `blobs/<alg>/<2 hex>/<hex>/data`, listed (no `stat`: collectors stat
    /// only the blobs they might remove). The 256 prefix directories are listed concurrently.
    pub(crate) async fn all_blob_digests(&self) -> Result<Vec<Digest>, RegistryError> {
        let root = paths::blobs_root();
        let mut prefixes = Vec::new();
        for algorithm in self.list_or_empty(&root).await? {
            for prefix in self.list_or_empty(&format!("{root}/{algorithm}")).await? {
                prefixes.push((algorithm.clone(), prefix));
            }
        }
        let listed: Vec<Vec<Digest>> = futures_util::stream::iter(prefixes)
            .map(|(algorithm, prefix)| {
                let dir = format!("{root}/{algorithm}/{prefix}");
                async move {
                    let names = self.list_or_empty(&dir).await?;
                    Ok::<_, RegistryError>(
                        names
                            .into_iter()
                            .filter_map(|hex| format!("{algorithm}:{hex}").parse().ok())
                            .collect(),
                    )
                }
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(listed.into_iter().flatten().collect())
    }

    /// Every stored blob, with its size and modification time when the listing gave them: on
    /// object stores one flat walk of `blobs/` (a request per 1,000 blobs, sizes included);
    /// elsewhere the directory listing of [`Registry::all_blob_digests`], without them.
    pub(crate) async fn blob_listing(
        &self,
    ) -> Result<Vec<(Digest, Option<FileInfo>)>, RegistryError> {
        if !self.driver().walk_is_flat() {
            let digests = self.all_blob_digests().await?;
            return Ok(digests.into_iter().map(|d| (d, None)).collect());
        }
        // A listing is paginated, one page after the other: the 256 prefix directories of
        // each algorithm are walked concurrently instead (~200 blobs each, one page).
        let root = paths::blobs_root();
        let mut dirs = Vec::new();
        for algorithm in self.list_or_empty(&root).await? {
            for prefix in self.list_or_empty(&format!("{root}/{algorithm}")).await? {
                dirs.push(format!("{root}/{algorithm}/{prefix}"));
            }
        }
        let prefix = format!("{root}/");
        let walks: Vec<Vec<(Digest, Option<FileInfo>)>> = futures_util::stream::iter(dirs)
            .map(|dir| {
                let prefix = &prefix;
                async move {
                    self.driver()
                        .walk(&dir)
                        .try_filter_map(|(path, info)| {
                            futures_util::future::ready(Ok(
                                blob_of(prefix, &path).map(|d| (d, Some(info)))
                            ))
                        })
                        .try_collect::<Vec<_>>()
                        .await
                }
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(walks.into_iter().flatten().collect())
    }

    /// Every stored blob with its size and modification time (from a flat walk on object
    /// stores, else a `stat` each, concurrently).
    pub(crate) async fn all_blobs(&self) -> Result<Vec<(Digest, FileInfo)>, RegistryError> {
        if self.driver().walk_is_flat() {
            let listed = self.blob_listing().await?;
            return Ok(listed
                .into_iter()
                .filter_map(|(d, info)| info.map(|i| (d, i)))
                .collect());
        }
        let infos: Vec<Option<(Digest, FileInfo)>> =
            futures_util::stream::iter(self.all_blob_digests().await?)
                .map(|digest| async move {
                    Ok::<_, RegistryError>(self.blob_info(&digest).await?.map(|i| (digest, i)))
                })
                .buffer_unordered(READ_CONCURRENCY)
                .try_collect()
                .await?;
        Ok(infos.into_iter().flatten().collect())
    }

    /// The names in a directory, or none when it does not exist.
    pub(crate) async fn list_or_empty(&self, dir: &str) -> Result<Vec<String>, RegistryError> {
        match self.driver().list(dir).await {
            Ok(names) => Ok(names),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The digest of a blob's content path `<prefix><alg>/<2 hex>/<hex>/data`; `None` for anything
/// else under `blobs/`.
fn blob_of(prefix: &str, path: &str) -> Option<Digest> {
    let parts: Vec<&str> = path.strip_prefix(prefix)?.split('/').collect();
    match parts.as_slice() {
        [alg, _, hex, "data"] => format!("{alg}:{hex}").parse().ok(),
        _ => None,
    }
}

/// The manifests reachable from `roots` (shared by GC's mark and retention): the roots,
/// children of reachable indexes, and referrers (manifests with a `subject`) of reachable
/// manifests, to a fixed point. Digests not in `manifests` are ignored.
pub(crate) fn reachable(
    mut queue: Vec<Digest>,
    manifests: &HashMap<Digest, Manifest>,
) -> HashSet<Digest> {
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
            return live;
        }
    }
}
