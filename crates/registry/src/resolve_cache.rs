//! Short-lived per-repository caches for object stores: what tags and digests resolve to
//! (resolving a manifest reference reads two links, the tag's current link and the revision
//! link: two round trips to S3 on every manifest GET and HEAD, what a pull asks most), and the
//! size of a blob a repository may serve (a link read and a HEAD on every blob HEAD and GET).
//!
//! Only successful resolutions are kept, each for at most the configured lifetime (1 s on S3,
//! off on a filesystem, where a link read is a page-cache hit), and every manifest or tag
//! change this process makes in a repository drops that repository's entries at once. So a
//! process always sees its own writes, and a change made by another process sharing the
//! storage is seen within the lifetime. Nothing negative is cached: a tag pushed through one
//! node is found by every other node at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_oci::{Digest, RepoName};

/// Repositories with entries at most; past this everything is dropped (entries are cheap to
/// rebuild: one or two link reads).
const MAX_REPOSITORIES: usize = 10_000;
/// Entries per repository at most.
const MAX_PER_REPOSITORY: usize = 1_000;

type Entries<V> = HashMap<String, (Instant, V)>;

/// Key → value per repository, with a lifetime.
pub(crate) struct RepoCache<V> {
    /// Lifetime in milliseconds; 0 (the filesystem) makes `get` return at once, without a lock.
    ttl_ms: AtomicU64,
    repos: Mutex<HashMap<String, Entries<V>>>,
}

impl<V> Default for RepoCache<V> {
    fn default() -> Self {
        RepoCache {
            ttl_ms: AtomicU64::new(0),
            repos: Mutex::new(HashMap::new()),
        }
    }
}

/// Tag or digest → the digest it resolves to.
pub(crate) type ResolveCache = RepoCache<Digest>;

/// Blob digest → its size, for blobs the repository may serve.
pub(crate) type BlobSizeCache = RepoCache<u64>;

impl<V: Clone> RepoCache<V> {
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.ttl_ms.store(ms, Ordering::Relaxed);
        lock(&self.repos).clear();
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// The cached value of `key` in `repo`, if still fresh.
    pub(crate) fn get(&self, repo: &RepoName, key: &impl ToString) -> Option<V> {
        let ttl = self.ttl();
        if ttl.is_zero() {
            return None;
        }
        let repos = lock(&self.repos);
        let (at, value) = repos.get(repo.as_str())?.get(&key.to_string())?;
        (at.elapsed() < ttl).then(|| value.clone())
    }

    /// Remembers `value` for `key`, read from storage at `read_at` (taken before the read: an
    /// entry never outlives the lifetime counted from what it saw).
    pub(crate) fn put(&self, repo: &RepoName, key: &impl ToString, value: &V, read_at: Instant) {
        if self.ttl().is_zero() {
            return;
        }
        let mut repos = lock(&self.repos);
        if repos.len() >= MAX_REPOSITORIES && !repos.contains_key(repo.as_str()) {
            repos.clear();
        }
        let entries = repos.entry(repo.as_str().to_owned()).or_default();
        if entries.len() >= MAX_PER_REPOSITORY {
            entries.clear();
        }
        entries.insert(key.to_string(), (read_at, value.clone()));
    }

    /// Drops every entry of `repo`: this process changed a manifest, tag or blob link there.
    pub(crate) fn forget(&self, repo: &RepoName) {
        lock(&self.repos).remove(repo.as_str());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use berth_oci::{Digest, Reference, RepoName};

    use super::ResolveCache;

    #[test]
    fn entries_expire_and_are_forgotten() {
        let cache = ResolveCache::default();
        let repo: RepoName = "a/b".parse().expect("name");
        let tag: Reference = "t".parse().expect("tag");
        let d = Digest::sha256_of(b"x");
        cache.put(&repo, &tag, &d, Instant::now());
        assert_eq!(cache.get(&repo, &tag), None, "off by default");
        cache.set_ttl(Duration::from_secs(60));
        cache.put(&repo, &tag, &d, Instant::now());
        assert_eq!(cache.get(&repo, &tag), Some(d.clone()));
        cache.forget(&repo);
        assert_eq!(cache.get(&repo, &tag), None);
        let long_ago = Instant::now() - Duration::from_secs(120);
        cache.put(&repo, &tag, &d, long_ago);
        assert_eq!(cache.get(&repo, &tag), None, "expired");
    }
}
