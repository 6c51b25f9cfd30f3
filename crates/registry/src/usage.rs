//! How storage is used. [`Registry::storage_summary`] (for metrics) counts blobs, bytes,
//! repositories and open uploads; [`Registry::usage`] (`berth du`, `/v2/_berth/usage`) splits
//! the bytes per repository into what only that repository uses and what it shares, and names
//! what no manifest uses. Both walk the store (a `list` per directory level, a `stat` per blob,
//! `usage` also reads every manifest), so callers run them on demand or on an interval, never
//! per request.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use berth_oci::{Digest, RepoName};
use serde::Serialize;

use crate::{Registry, RegistryError};

/// What the store holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StorageSummary {
    /// Blobs under `blobs/` (layers, configs and manifests).
    pub blobs: u64,
    /// Their total size in bytes (each blob once, however many repositories use it).
    pub bytes: u64,
    /// Repositories (directories with `_manifests`).
    pub repositories: u64,
    /// Upload sessions not yet finished or purged.
    pub uploads: u64,
}

impl Registry {
    /// Walks the store once and sums it up.
    pub async fn storage_summary(&self) -> Result<StorageSummary, RegistryError> {
        let mut summary = StorageSummary::default();
        for (_, info) in self.all_blobs().await? {
            summary.blobs += 1;
            summary.bytes += info.size;
        }
        summary.repositories = self.walk_repositories().await?.len() as u64;
        // A dry run that would purge nothing younger than forever counts every open session.
        summary.uploads = self.purge_uploads(Duration::MAX, true).await?.kept as u64;
        Ok(summary)
    }
}

/// How much storage one repository uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoUsage {
    /// The repository.
    pub name: String,
    /// Manifest revisions it holds.
    pub manifests: u64,
    /// Its tags.
    pub tags: u64,
    /// Distinct blobs its manifests use (manifests, configs, layers).
    pub blobs: u64,
    /// Bytes of blobs no other repository uses: what deleting the repository (then running
    /// garbage collection) frees.
    pub unique_bytes: u64,
    /// Bytes of blobs other repositories use too.
    pub shared_bytes: u64,
    /// When a tag was last set in it (its newest tag link), as RFC 3339; none without tags.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339")]
    pub last_pushed: Option<std::time::SystemTime>,
}

fn rfc3339<S: serde::Serializer>(
    time: &Option<std::time::SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => serializer.collect_str(&humantime::format_rfc3339_seconds(*t)),
        None => serializer.serialize_none(),
    }
}

/// Tag links read at once for the push dates.
const TAG_STATS_IN_FLIGHT: usize = 16;

/// Storage use per repository, and what no manifest uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// Every repository, largest (unique + shared) first.
    pub repositories: Vec<RepoUsage>,
    /// Blobs in storage.
    pub blobs: u64,
    /// Their bytes, each blob once.
    pub bytes: u64,
    /// Blobs no manifest uses (garbage collection removes them).
    pub unreferenced_blobs: u64,
    /// Their bytes.
    pub unreferenced_bytes: u64,
}

/// How long a usage report served over HTTP is reused: the walk reads every manifest, so
/// callers asking again and again (a dashboard, or an attacker) share one walk.
pub const USAGE_REUSE: Duration = Duration::from_secs(30);

/// The last usage report and when it was made.
#[derive(Default)]
pub(crate) struct UsageCache(
    tokio::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<UsageReport>)>>,
);

impl Registry {
    /// [`Registry::usage`], reused for [`USAGE_REUSE`]: concurrent callers wait for one walk
    /// instead of each starting their own.
    pub async fn usage_shared(&self) -> Result<std::sync::Arc<UsageReport>, RegistryError> {
        let mut last = self.usage_cache.0.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < USAGE_REUSE {
                return Ok(report.clone());
            }
        }
        let report = std::sync::Arc::new(self.usage().await?);
        *last = Some((std::time::Instant::now(), report.clone()));
        Ok(report)
    }

    /// Walks every repository's manifests and every blob: the `berth du` report.
    pub async fn usage(&self) -> Result<UsageReport, RegistryError> {
        let sizes: HashMap<Digest, u64> = self
            .all_blobs()
            .await?
            .into_iter()
            .map(|(d, info)| (d, info.size))
            .collect();
        let mut users: HashMap<&Digest, u32> = HashMap::new();
        let mut per_repo = Vec::new();
        for name in self.walk_repositories().await? {
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            let (manifests, unparsed) = self.repository_manifests(&repo).await?;
            let mut used: HashSet<Digest> = unparsed.into_iter().collect();
            let count = manifests.len() + used.len();
            for (digest, manifest) in manifests {
                used.extend(manifest.blob_references().into_iter().cloned());
                used.insert(digest);
            }
            let tags = match self.all_tags(&repo).await {
                Ok(tags) => tags,
                Err(RegistryError::NameUnknown(_)) => Vec::new(),
                Err(e) => return Err(e),
            };
            let last_pushed = self.newest_tag_time(&repo, &tags).await;
            per_repo.push((name, count as u64, tags.len() as u64, used, last_pushed));
        }
        for (_, _, _, used, _) in &per_repo {
            for digest in used {
                if let Some((d, _)) = sizes.get_key_value(digest) {
                    *users.entry(d).or_default() += 1;
                }
            }
        }
        let mut report = UsageReport {
            blobs: sizes.len() as u64,
            bytes: sizes.values().sum(),
            ..UsageReport::default()
        };
        for (digest, size) in &sizes {
            if !users.contains_key(digest) {
                report.unreferenced_blobs += 1;
                report.unreferenced_bytes += size;
            }
        }
        for (name, manifests, tags, used, last_pushed) in per_repo {
            let mut usage = RepoUsage {
                name,
                manifests,
                tags,
                blobs: 0,
                unique_bytes: 0,
                shared_bytes: 0,
                last_pushed,
            };
            for digest in &used {
                // A manifest may name a blob that was never pushed (or was collected).
                let Some(size) = sizes.get(digest) else {
                    continue;
                };
                usage.blobs += 1;
                if users.get(digest).copied().unwrap_or(0) > 1 {
                    usage.shared_bytes += size;
                } else {
                    usage.unique_bytes += size;
                }
            }
            report.repositories.push(usage);
        }
        report.repositories.sort_by(|a, b| {
            (b.unique_bytes + b.shared_bytes)
                .cmp(&(a.unique_bytes + a.shared_bytes))
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(report)
    }

    /// When a tag of `repo` was last set: the newest of its tag links (a tag that cannot be
    /// read is skipped; it has no date to give).
    async fn newest_tag_time(
        &self,
        repo: &RepoName,
        tags: &[String],
    ) -> Option<std::time::SystemTime> {
        use futures_util::StreamExt;
        let parsed: Vec<berth_oci::Tag> = tags.iter().filter_map(|t| t.parse().ok()).collect();
        let mut times = futures_util::stream::iter(parsed)
            .map(|tag| self.tag_time(repo, tag))
            .buffer_unordered(TAG_STATS_IN_FLIGHT);
        let mut newest = None;
        while let Some(time) = times.next().await {
            newest = newest.max(time);
        }
        newest
    }

    async fn tag_time(
        &self,
        repo: &RepoName,
        tag: berth_oci::Tag,
    ) -> Option<std::time::SystemTime> {
        self.tag_pushed_at(repo, &tag).await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_oci::RepoName;
    use berth_storage::InMemoryDriver;
    use bytes::Bytes;

    use crate::{Registry, RegistryOptions};

    #[tokio::test]
    async fn counts_blobs_bytes_repositories_and_open_uploads() {
        let registry = Registry::new(
            Arc::new(InMemoryDriver::new()),
            RegistryOptions {
                delete_enabled: true,
                read_only: false,
            },
        );
        let empty = registry.storage_summary().await.expect("summary");
        assert_eq!(empty, super::StorageSummary::default());

        let repo: RepoName = "team/app".parse().expect("name");
        let other: RepoName = "other".parse().expect("name");
        for (r, content) in [(&repo, "layer one"), (&other, "layer two!")] {
            let digest = berth_oci::Digest::sha256_of(content.as_bytes());
            let body =
                futures_util::stream::once(
                    async move { Ok::<_, std::io::Error>(Bytes::from(content)) },
                );
            registry
                .put_blob(r, &digest, Box::pin(body))
                .await
                .expect("put blob");
        }
        registry.start_upload(&repo).await.expect("open upload");
        let summary = registry.storage_summary().await.expect("summary");
        assert_eq!(summary.blobs, 2);
        assert_eq!(summary.bytes, 9 + 10);
        assert_eq!(summary.uploads, 1);
        assert_eq!(summary.repositories, 0, "a repository needs a manifest");
    }

    async fn put(registry: &Registry, repo: &RepoName, content: &str) -> berth_oci::Digest {
        let digest = berth_oci::Digest::sha256_of(content.as_bytes());
        let body = Bytes::from(content.to_owned());
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        registry
            .put_blob(repo, &digest, Box::pin(stream))
            .await
            .expect("put blob");
        digest
    }

    #[tokio::test]
    async fn splits_unique_and_shared_bytes_and_names_garbage() {
        let registry = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        let (a, b): (RepoName, RepoName) = ("a".parse().expect("a"), "b".parse().expect("b"));
        let config = put(&registry, &a, "{}").await;
        let shared = put(&registry, &a, "shared layer bytes").await;
        put(&registry, &b, "{}").await;
        put(&registry, &b, "shared layer bytes").await;
        let only_b = put(&registry, &b, "only b").await;
        put(&registry, &b, "garbage nobody references").await;
        let image = |layer: &berth_oci::Digest| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":1}}]}}"#
            )
        };
        let (ma, mb) = (image(&shared), image(&only_b));
        for (repo, body) in [(&a, &ma), (&b, &mb)] {
            registry
                .put_manifest(
                    repo,
                    &"v1".parse().expect("tag"),
                    None,
                    Bytes::from(body.clone()),
                )
                .await
                .expect("put manifest");
        }
        let report = registry.usage().await.expect("usage");
        let get = |name: &str| {
            report
                .repositories
                .iter()
                .find(|r| r.name == name)
                .expect("repository listed")
                .clone()
        };
        let (ra, rb) = (get("a"), get("b"));
        assert_eq!((ra.manifests, ra.tags, ra.blobs), (1, 1, 3));
        // Both images use the config; `b` holds a copy of `a`'s layer link but no manifest of
        // `b` uses it, so the layer is `a`'s alone.
        assert_eq!(ra.unique_bytes, (ma.len() + 18) as u64);
        assert_eq!(ra.shared_bytes, 2);
        assert_eq!(rb.unique_bytes, (mb.len() + 6) as u64);
        assert_eq!(rb.shared_bytes, 2);
        assert_eq!(report.unreferenced_blobs, 1);
        assert_eq!(report.unreferenced_bytes, 25);
        assert_eq!(report.blobs, 6);
        assert_eq!(report.bytes, (2 + 18 + 6 + 25 + ma.len() + mb.len()) as u64);
    }
}
