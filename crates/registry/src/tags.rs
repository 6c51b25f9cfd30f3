//! Tags: `_manifests/tags/<tag>/current/link` names the digest a tag points at.

use berth_oci::{Digest, RepoName, Tag};
use berth_storage::paths;

use crate::{links, Registry, RegistryError};

/// One page of a sorted listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries of this page.
    pub items: Vec<String>,
    /// Whether entries remain after this page (then a `Link` header points at them).
    pub more: bool,
}

/// Takes the page after `last` of at most `n` entries from a sorted list.
pub fn paginate(sorted: Vec<String>, n: Option<usize>, last: Option<&str>) -> Page {
    let mut rest: Vec<String> = match last {
        Some(last) => sorted.into_iter().filter(|t| t.as_str() > last).collect(),
        None => sorted,
    };
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            Page {
                items: rest,
                more: true,
            }
        }
        _ => Page {
            items: rest,
            more: false,
        },
    }
}

impl Registry {
    /// All tag names of a repository, sorted; `NameUnknown` when it has no tags directory.
    pub async fn all_tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        let mut tags = match self.driver().list(&paths::tags_dir(repo)).await {
            Ok(tags) => tags,
            Err(e) if e.is_not_found() => {
                // A repository whose last tag was deleted still exists, with an empty list.
                return match self
                    .driver()
                    .stat(&format!("{}/_manifests", paths::repo_dir(repo)))
                    .await
                {
                    Ok(_) => Ok(Vec::new()),
                    Err(e) if e.is_not_found() => Err(RegistryError::NameUnknown(repo.to_string())),
                    Err(e) => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        tags.retain(|t| t.parse::<Tag>().is_ok());
        tags.sort();
        Ok(tags)
    }

    /// One page of the tag list.
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, RegistryError> {
        Ok(paginate(self.all_tags(repo).await?, n, last))
    }

    /// When `tag` was last pushed (or moved): its current link's modification time, `None`
    /// when the tag does not exist. One `stat`, so a page of tags can show push dates.
    pub async fn tag_pushed_at(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<std::time::SystemTime>, RegistryError> {
        match self
            .driver()
            .stat(&paths::tag_current_link(repo, tag))
            .await
        {
            Ok(info) => Ok(Some(info.modified)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Tags whose current link points at `digest` (the tags a delete by digest removes).
    pub async fn tags_pointing_at(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Tag>, RegistryError> {
        let mut found = Vec::new();
        let all = match self.all_tags(repo).await {
            Ok(all) => all,
            Err(RegistryError::NameUnknown(_)) => return Ok(found),
            Err(e) => return Err(e),
        };
        for name in all {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            if links::read(self.driver(), &paths::tag_current_link(repo, &tag))
                .await?
                .as_ref()
                == Some(digest)
            {
                found.push(tag);
            }
        }
        Ok(found)
    }

    /// Removes a tag: its whole `_manifests/tags/<tag>` directory, as registry:2's tag delete
    /// does (used by the API's DELETE and by retention). The manifest revision stays.
    ///
    /// The index links go first and the current link last, so a crash in between leaves
    /// either a tag that still resolves or an empty leftover directory (which retention
    /// removes), never a tag pointing at something half deleted.
    pub(crate) async fn remove_tag(&self, repo: &RepoName, tag: &Tag) -> Result<(), RegistryError> {
        let d = self.driver();
        links::remove(d, &paths::tag_index_dir(repo, tag)).await?;
        let current = paths::tag_current_link(repo, tag);
        links::remove(d, current.trim_end_matches("/link")).await?;
        links::remove(d, &paths::tag_dir(repo, tag)).await?;
        self.resolve_cache.forget(repo);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages() {
        let all = v(&["a", "b", "c", "d"]);
        assert_eq!(
            paginate(all.clone(), Some(2), None),
            Page {
                items: v(&["a", "b"]),
                more: true
            }
        );
        assert_eq!(
            paginate(all.clone(), Some(2), Some("b")),
            Page {
                items: v(&["c", "d"]),
                more: false
            }
        );
        assert_eq!(
            paginate(all.clone(), None, Some("a")),
            Page {
                items: v(&["b", "c", "d"]),
                more: false
            }
        );
        assert_eq!(
            paginate(all.clone(), Some(0), None),
            Page {
                items: vec![],
                more: true
            }
        );
        assert_eq!(
            paginate(all, Some(10), Some("d")),
            Page {
                items: vec![],
                more: false
            }
        );
    }
}
