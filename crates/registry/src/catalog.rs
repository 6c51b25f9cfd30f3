//! The catalog: repositories are directories under `repositories/` that hold `_manifests`.
//! Names come out in registry:2's walk order (component by component), and a page walks only
//! the part of the tree after `last`, so listing a large registry page by page stays linear.

use std::cmp::Ordering;

use berth_storage::paths;

use crate::tags::Page;
use crate::{Registry, RegistryError};

/// Compares repository paths component by component, the order a directory walk produces
/// (`a/b` sorts before `a-b`, unlike plain string order).
pub fn cmp_path(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

impl Registry {
    /// One page of at most `n` repository names after `last`.
    pub async fn catalog(&self, n: usize, last: Option<&str>) -> Result<Page, RegistryError> {
        let mut items = Vec::new();
        // Depth-first, children in order; a stack of directories still to visit (reversed).
        let mut stack = vec![String::new()];
        let root = paths::repositories_root();
        while let Some(rel) = stack.pop() {
            let dir = if rel.is_empty() {
                root.clone()
            } else {
                format!("{root}/{rel}")
            };
            let mut children = match self.driver().list(&dir).await {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if !rel.is_empty()
                && children.iter().any(|c| c == "_manifests")
                && last.is_none_or(|l| cmp_path(&rel, l) == Ordering::Greater)
            {
                if items.len() == n {
                    return Ok(Page { items, more: true });
                }
                items.push(rel.clone());
            }
            children.retain(|c| !c.starts_with('_') && !c.starts_with('.'));
            children.sort();
            for child in children.into_iter().rev() {
                let path = if rel.is_empty() {
                    child
                } else {
                    format!("{rel}/{child}")
                };
                // Skip subtrees that lie wholly before `last`.
                if let Some(last) = last {
                    let before = cmp_path(&path, last) == Ordering::Less;
                    let is_ancestor = last.starts_with(&format!("{path}/"));
                    if before && !is_ancestor {
                        continue;
                    }
                }
                stack.push(path);
            }
        }
        Ok(Page { items, more: false })
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
