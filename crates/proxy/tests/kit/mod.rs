//! The proxy's integration tests' fixture: a [`Proxy`] over an in-memory registry with one
//! upstream, `docker.io` (also the default), pointing at a [`Fake`] upstream.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Digest, Reference, RepoName};
use berth_proxy::{Proxy, Routing, Upstream, UpstreamSettings};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;

use crate::fake::Fake;

/// A running fake upstream and the cache in front of it.
pub struct Setup {
    pub fake: Fake,
    pub proxy: Arc<Proxy>,
    pub registry: Arc<Registry>,
    _spool: tempfile::TempDir,
}

/// The fixture, with `tweak` applied to the upstream's settings (2 s header timeout unless it
/// says otherwise).
pub async fn setup(tweak: impl FnOnce(&mut UpstreamSettings)) -> Setup {
    let fake = Fake::start().await;
    let mut settings = UpstreamSettings {
        host: "docker.io".into(),
        url: fake.url(),
        credentials: None,
        tag_ttl: Duration::ZERO,
        proxy: None,
        timeout: Duration::from_secs(2),
        allow_private_redirects: false,
    };
    tweak(&mut settings);
    let registry = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let routing = Routing::Many {
        upstreams: vec![Arc::new(Upstream::new(settings).unwrap())],
        default: Some(0),
        private: vec![],
    };
    let spool = tempfile::tempdir().unwrap();
    let proxy = Proxy::new(registry.clone(), routing, spool.path().to_path_buf());
    Setup {
        fake,
        proxy,
        registry,
        _spool: spool,
    }
}

pub fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

pub fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

/// `n` bytes of a pattern seeded by `seed`.
pub fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Waits (up to 2 s) until the download task has stored the blob in `repo`.
pub async fn stored(registry: &Registry, repo: &str, digest: &str) -> bool {
    let digest: Digest = digest.parse().unwrap();
    for _ in 0..100 {
        if registry.stat_blob(&name(repo), &digest).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
