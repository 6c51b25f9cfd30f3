//! Per-repository ordering of manifest deletes against manifest and tag writes, within one
//! process.
//!
//! A delete by digest finds the tags pointing at the manifest, removes them, then removes the
//! revision. A PUT of the same manifest under a tag in between would leave that tag pointing
//! at a revision that no longer exists (listed, but every pull of it fails), and a PUT of
//! another manifest under one of those tags could lose its tag to a delete that looked before
//! it. So writes of revision and tag links take a repository's lock shared (they do not
//! disturb each other: the last tag write wins, as in registry:2), and deletes of tags or
//! revisions take it exclusively, together with the reads that decided what to delete.
//!
//! Storage shared by several processes is not covered (registry:2 has no lock either); there
//! each storage delete is atomic (the filesystem driver renames a tree aside before removing
//! it), so a race ends with the delete ordered before or after the write, never a failure.

use std::hash::{DefaultHasher, Hash, Hasher};

use berth_oci::RepoName;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Repositories share a fixed number of locks: no map to grow or clean up, and two
/// repositories meet on one lock only when a delete in one holds up writes in the other.
const STRIPES: usize = 64;

/// The locks, one per stripe of repository names.
pub(crate) struct RepoLocks(Vec<RwLock<()>>);

impl Default for RepoLocks {
    fn default() -> Self {
        RepoLocks((0..STRIPES).map(|_| RwLock::new(())).collect())
    }
}

impl RepoLocks {
    fn stripe(&self, repo: &RepoName) -> &RwLock<()> {
        let mut hasher = DefaultHasher::new();
        repo.as_str().hash(&mut hasher);
        &self.0[(hasher.finish() % STRIPES as u64) as usize]
    }

    /// Held while a manifest's revision and tag links are written.
    pub(crate) async fn write_links(&self, repo: &RepoName) -> RwLockReadGuard<'_, ()> {
        self.stripe(repo).read().await
    }

    /// Held while tags or revisions are chosen and deleted.
    pub(crate) async fn delete_links(&self, repo: &RepoName) -> RwLockWriteGuard<'_, ()> {
        self.stripe(repo).write().await
    }
}
