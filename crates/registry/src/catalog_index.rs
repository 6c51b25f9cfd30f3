//! The repository index: one small object per repository under `_berth/catalog/`, so that
//! `_catalog` on an object store is one flat paginated listing (two requests for 2,000
//! repositories) instead of a listing per directory level of every repository's tree
//! (registry:2 on S3: 70 s for 2,000 repositories).
//!
//! Entries are written when a manifest is stored, once per repository per process. The index
//! is trusted only once `_berth/catalog-complete` exists, written by
//! [`Registry::rebuild_catalog_index`] after a full walk (at the first start on a bucket, or
//! by `berth catalog-index` for a bucket registry:2 wrote to meanwhile); until then the
//! catalog walks the tree as before. Entries are only ever added by writes, so an index
//! shared by several nodes is never missing a repository one of them created.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use berth_oci::RepoName;
use berth_storage::paths;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::catalog::cmp_path;
use crate::{Registry, RegistryError};

/// Repositories remembered as indexed; past this the memory is dropped and entries are
/// written again (idempotent), so memory stays bounded whatever the number of repositories.
const MAX_REMEMBERED: usize = 100_000;

/// Entry writes in flight during a rebuild.
const REBUILD_CONCURRENCY: usize = 32;

/// Suffix of every entry's path.
const ENTRY_SUFFIX: &str = "/_repository";

/// Whether the index is in use, and which repositories this process knows are in it.
#[derive(Default)]
pub(crate) struct CatalogIndex {
    enabled: AtomicBool,
    /// Set once the completion marker was seen: it is never removed.
    complete: AtomicBool,
    known: Mutex<HashSet<String>>,
}

impl Registry {
    /// Keeps the repository index and answers `_catalog` from it once complete (object
    /// stores, where a walk costs a request per directory).
    pub fn set_catalog_index(&self, on: bool) {
        self.catalog_index.enabled.store(on, Ordering::Relaxed);
    }

    /// Records `repo` in the index (once per process) when the index is in use.
    pub(crate) async fn index_repository(&self, repo: &RepoName) -> Result<(), RegistryError> {
        let index = &self.catalog_index;
        if !index.enabled.load(Ordering::Relaxed) {
            return Ok(());
        }
        if lock(&index.known).contains(repo.as_str()) {
            return Ok(());
        }
        self.driver()
            .put_content(&paths::catalog_index_entry(repo), Bytes::new())
            .await?;
        let mut known = lock(&index.known);
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        known.insert(repo.as_str().to_owned());
        Ok(())
    }

    /// Every repository from the index, in walk order; `None` while the index is not in use
    /// or not complete.
    pub(crate) async fn indexed_repositories(&self) -> Result<Option<Vec<String>>, RegistryError> {
        let index = &self.catalog_index;
        if !index.enabled.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if !index.complete.load(Ordering::Relaxed) {
            match self.driver().stat(&paths::catalog_index_complete()).await {
                Ok(_) => index.complete.store(true, Ordering::Relaxed),
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let mut repos = self.index_entries().await?;
        repos.sort_by(|a, b| cmp_path(a, b));
        Ok(Some(repos))
    }

    /// The repository names the index holds, in no particular order. Entries that are not a
    /// valid name (written by hand into the bucket) are skipped.
    async fn index_entries(&self) -> Result<Vec<String>, RegistryError> {
        let root = paths::catalog_index_root();
        let prefix = format!("{root}/");
        self.driver()
            .walk(&root)
            .try_filter_map(|(path, _)| {
                let name = path
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(ENTRY_SUFFIX))
                    .filter(|name| name.parse::<RepoName>().is_ok())
                    .map(str::to_owned);
                futures_util::future::ready(Ok(name))
            })
            .try_collect()
            .await
            .map_err(RegistryError::from)
    }

    /// Builds the index from a full walk of the repository tree: adds an entry for every
    /// repository, removes entries of repositories that are gone, then marks the index
    /// complete. Returns how many repositories it holds. Safe to run while clients push: a
    /// repository created meanwhile writes its own entry.
    pub async fn rebuild_catalog_index(&self) -> Result<usize, RegistryError> {
        let repos = self.walk_repositories().await?;
        let present: HashSet<&str> = repos.iter().map(String::as_str).collect();
        let stale: Vec<String> = self
            .index_entries()
            .await?
            .into_iter()
            .filter(|name| !present.contains(name.as_str()))
            .collect();
        let entries: Vec<String> = repos
            .iter()
            .filter_map(|r| r.parse::<RepoName>().ok())
            .map(|repo| paths::catalog_index_entry(&repo))
            .collect();
        futures_util::stream::iter(entries)
            .map(|entry| async move { self.driver().put_content(&entry, Bytes::new()).await })
            .buffer_unordered(REBUILD_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        for name in stale {
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            match self
                .driver()
                .delete(&paths::catalog_index_entry(&repo))
                .await
            {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        self.driver()
            .put_content(&paths::catalog_index_complete(), Bytes::new())
            .await?;
        self.catalog_index.complete.store(true, Ordering::Relaxed);
        Ok(repos.len())
    }

    /// Whether the index is in use but not yet complete (the server then rebuilds it once).
    pub async fn catalog_index_needs_rebuild(&self) -> Result<bool, RegistryError> {
        if !self.catalog_index.enabled.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.driver().stat(&paths::catalog_index_complete()).await {
            Ok(_) => Ok(false),
            Err(e) if e.is_not_found() => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}

fn lock(known: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    known.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_oci::{Digest, Reference, RepoName};
    use berth_storage::{paths, InMemoryDriver, StorageDriver};
    use bytes::Bytes;

    use crate::{Registry, RegistryOptions};

    async fn push(reg: &Registry, name: &str) {
        let config = Bytes::from_static(b"{}");
        let cd = Digest::sha256_of(&config);
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[]}}"#
        );
        let repo: RepoName = name.parse().expect("name");
        let stream = Box::pin(futures_util::stream::iter([Ok(config.clone())]));
        reg.put_blob(&repo, &cd, stream).await.expect("blob");
        let tag: Reference = "t".parse().expect("tag");
        reg.put_manifest(&repo, &tag, None, Bytes::from(body))
            .await
            .expect("manifest");
    }

    #[tokio::test]
    async fn index_answers_the_catalog_once_complete() {
        let driver = Arc::new(InMemoryDriver::new());
        // Written before the index existed (registry:2, or Berth on a filesystem).
        let before = Registry::new(driver.clone(), RegistryOptions::default());
        push(&before, "old/one").await;
        let reg = Registry::new(driver.clone(), RegistryOptions::default());
        reg.set_catalog_index(true);
        push(&reg, "new/repository").await;
        assert!(reg.catalog_index_needs_rebuild().await.expect("check"));
        // Not complete yet: the walk answers, and sees both.
        assert_eq!(reg.indexed_repositories().await.expect("index"), None);
        assert_eq!(reg.rebuild_catalog_index().await.expect("rebuild"), 2);
        // A stray entry for a repository that is gone is removed by the next rebuild; until
        // then the index is what answers.
        driver
            .put_content(
                &paths::catalog_index_entry(&"gone/repo".parse().expect("name")),
                Bytes::new(),
            )
            .await
            .expect("stray");
        push(&reg, "a").await;
        let listed = reg.indexed_repositories().await.expect("index");
        assert_eq!(
            listed.expect("complete"),
            ["a", "gone/repo", "new/repository", "old/one"]
        );
        reg.rebuild_catalog_index().await.expect("rebuild");
        let page = reg.catalog(10, None).await.expect("catalog");
        assert_eq!(page.items, ["a", "new/repository", "old/one"]);
    }
}
