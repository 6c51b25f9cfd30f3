//! A bounded cache of manifest bodies by digest. Content addressed data never changes, so a hit
//! is always right; whether the digest belongs to a repository is still checked in storage on
//! every request.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_oci::Digest;
use bytes::Bytes;

/// A cached manifest: its bytes and the media type they are served with.
#[derive(Clone)]
pub struct CachedManifest {
    /// The stored bytes.
    pub body: Bytes,
    /// The media type derived from them.
    pub media_type: String,
}

/// Manifest bodies by digest, up to a byte budget; when full it is cleared (cheap, and hot
/// manifests come back at once).
pub struct ManifestCache {
    budget: usize,
    inner: Mutex<(usize, HashMap<Digest, CachedManifest>)>,
}

impl ManifestCache {
    /// A cache holding up to `budget` bytes of manifests.
    pub fn new(budget: usize) -> Self {
        ManifestCache {
            budget,
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    /// The cached manifest for `digest`, if any.
    pub fn get(&self, digest: &Digest) -> Option<CachedManifest> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.1.get(digest).cloned()
    }

    /// Remembers a manifest.
    pub fn put(&self, digest: Digest, manifest: CachedManifest) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let size = manifest.body.len();
        if inner.0 + size > self.budget {
            inner.1.clear();
            inner.0 = 0;
        }
        if inner.1.insert(digest, manifest).is_none() {
            inner.0 += size;
        }
    }
}
