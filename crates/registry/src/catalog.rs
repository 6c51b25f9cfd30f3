//! The catalog: repositories are directories under `repositories/` that hold `_manifests`.
//! Names come out in registry:2's walk order (component by component).
//!
//! A full listing walks the whole tree (one level at a time, the directories of a level listed
//! concurrently), and the sorted result is cached so that paging through it with `n`/`last`
//! costs one walk, not one per page as in registry:2. The cache is dropped when this process
//! creates a repository, and trusted only briefly otherwise, since other processes sharing the
//! storage may create repositories too.
//!
//! On object stores the listing comes from the repository index instead of a walk (see
//! [`crate::catalog_index`]).

use std::cmp::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_oci::RepoName;
use berth_storage::paths;
use futures_util::StreamExt;

use crate::tags::Page;
use crate::{Registry, RegistryError};

/// A first page always reflects storage at most this old.
const FRESH_FOR_FIRST_PAGE: Duration = Duration::from_secs(1);
/// Later pages reuse the listing the first page saw for this long, so paging is consistent.
const FRESH_FOR_NEXT_PAGES: Duration = Duration::from_secs(30);
/// Directories listed at once during a walk.
const WALK_CONCURRENCY: usize = 32;

/// Compares repository paths component by component, the order a directory walk produces
/// (`a/b` sorts before `a-b`, unlike plain string order).
pub fn cmp_path(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The last full listing and when it was taken.
#[derive(Default)]
pub(crate) struct CatalogCache(Mutex<Option<(Instant, Arc<Vec<String>>)>>);

impl CatalogCache {
    fn get(&self, max_age: Duration) -> Option<Arc<Vec<String>>> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, list)| list.clone())
    }

    fn put(&self, list: Arc<Vec<String>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), list));
    }

    /// Drops the listing if it does not contain `repo` (a repository was just created).
    pub(crate) fn note(&self, repo: &RepoName) {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let known = guard.as_ref().is_some_and(|(_, list)| {
            list.binary_search_by(|r| cmp_path(r, repo.as_str()))
                .is_ok()
        });
        if !known {
            *guard = None;
        }
    }
}

impl Registry {
    /// One page of at most `n` repository names after `last`.
    pub async fn catalog(&self, n: usize, last: Option<&str>) -> Result<Page, RegistryError> {
        let max_age = if last.is_none() {
            FRESH_FOR_FIRST_PAGE
        } else {
            FRESH_FOR_NEXT_PAGES
        };
        let all = match self.catalog_cache.get(max_age) {
            Some(list) => list,
            None => {
                let list = match self.indexed_repositories().await? {
                    Some(indexed) => indexed,
                    None => self.walk_repositories().await?,
                };
                let list = Arc::new(list);
                self.catalog_cache.put(list.clone());
                list
            }
        };
        let start = match last {
            Some(last) => all.partition_point(|r| cmp_path(r, last) != Ordering::Greater),
            None => 0,
        };
        let rest = &all[start..];
        let items: Vec<String> = rest.iter().take(n).cloned().collect();
        Ok(Page {
            more: rest.len() > items.len(),
            items,
        })
    }

    /// Every repository, in walk order.
    pub(crate) async fn walk_repositories(&self) -> Result<Vec<String>, RegistryError> {
        let mut repos: Vec<String> = self
            .walk_repository_tree()
            .await?
            .into_iter()
            .filter(|(_, children)| children.iter().any(|c| c == "_manifests"))
            .map(|(rel, _)| rel)
            .collect();
        repos.sort_by(|a, b| cmp_path(a, b));
        Ok(repos)
    }

    /// Every directory under `repositories/` that can hold a repository (not `_`-prefixed),
    /// as (path relative to `repositories/`, child names), in no particular order.
    pub(crate) async fn walk_repository_tree(
        &self,
    ) -> Result<Vec<(String, Vec<String>)>, RegistryError> {
        let root = paths::repositories_root();
        let mut visited = Vec::new();
        let mut level = vec![String::new()];
        while !level.is_empty() {
            let listings: Vec<_> = futures_util::stream::iter(level)
                .map(|rel| {
                    let dir = if rel.is_empty() {
                        root.clone()
                    } else {
                        format!("{root}/{rel}")
                    };
                    async move { (rel, self.driver().list(&dir).await) }
                })
                .buffer_unordered(WALK_CONCURRENCY)
                .collect()
                .await;
            let mut next = Vec::new();
            for (rel, listing) in listings {
                let children = match listing {
                    Ok(c) => c,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                };
                let subdirs = children
                    .iter()
                    .filter(|c| !c.starts_with('_') && !c.starts_with('.'));
                next.extend(subdirs.map(|c| {
                    if rel.is_empty() {
                        c.clone()
                    } else {
                        format!("{rel}/{c}")
                    }
                }));
                if !rel.is_empty() {
                    visited.push((rel, children));
                }
            }
            level = next;
        }
        Ok(visited)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_oci::{Digest, Reference, RepoName};
    use berth_storage::InMemoryDriver;
    use bytes::Bytes;

    use super::*;
    use crate::RegistryOptions;

    #[test]
    fn walk_order() {
        assert_eq!(cmp_path("a/b", "a-b"), Ordering::Less);
        assert_eq!(cmp_path("a", "a/b"), Ordering::Less);
        assert_eq!(cmp_path("b", "a/z"), Ordering::Greater);
    }

    #[tokio::test]
    async fn pages_in_walk_order() {
        let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        let config = Bytes::from_static(b"{}");
        let cd = Digest::sha256_of(&config);
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[]}}"#
        );
        let names = ["a-b", "a/b", "a", "a/b/c", "z", "m/n/o"];
        for name in names {
            let repo: RepoName = name.parse().expect("name");
            let stream = Box::pin(futures_util::stream::iter([Ok(config.clone())]));
            reg.put_blob(&repo, &cd, stream).await.expect("blob");
            let tag: Reference = "t".parse().expect("tag");
            reg.put_manifest(&repo, &tag, None, Bytes::from(body.clone()))
                .await
                .expect("manifest");
        }
        let all = reg.catalog(100, None).await.expect("catalog");
        assert_eq!(all.items, ["a", "a/b", "a/b/c", "a-b", "m/n/o", "z"]);
        let mut seen = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = reg.catalog(2, last.as_deref()).await.expect("page");
            seen.extend(page.items.clone());
            last = page.items.last().cloned();
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, all.items);
    }
}
