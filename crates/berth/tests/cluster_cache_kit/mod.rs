//! The fixture of `cluster_cache.rs`: pull-through cache nodes on one bucket (the cluster kit's
//! nodes with the mirror kit's proxy YAML) in front of one docker-registry upstream reached
//! through the mirror kit's fault proxy, which records every request (so blob GETs are
//! counted) and can slow bodies down; checks of the bucket's objects by path.
#![allow(dead_code)] // Each test uses part of it.

use std::sync::Arc;

use berth_oci::{Digest, RepoName};
use berth_storage::{paths, StorageDriver};
use futures_util::StreamExt;

use crate::cluster_kit::Cluster;
use crate::mirror_kit::{data, push_image, upstreams_yaml, Registry2, TestProxy};
use crate::s3_kit::TestServer;

/// The upstream's repository and the name it is cached under (plain names go to the default
/// upstream `docker.io`; Docker Hub's one-segment names get `library/`).
pub const UPSTREAM_REPO: &str = "library/big";
pub const CLIENT_REPO: &str = "big";
pub const CACHED_REPO: &str = "docker.io/library/big";

/// An upstream with one image whose only layer is `size` bytes, behind a fault proxy.
pub struct Upstream {
    pub registry: Registry2,
    pub proxy: TestProxy,
    pub layer: Arc<Vec<u8>>,
    pub digest: String,
}

impl Upstream {
    pub async fn start(size: usize, seed: u64) -> Upstream {
        let registry = Registry2::start("");
        let layer = data(size, seed);
        let (body, _) = push_image(
            &registry.api(),
            UPSTREAM_REPO,
            "1",
            std::slice::from_ref(&layer),
            None,
        )
        .await;
        let manifest: serde_json::Value = serde_json::from_str(&body).expect("manifest");
        let digest = manifest["layers"][0]["digest"]
            .as_str()
            .expect("layer digest")
            .to_owned();
        let proxy = TestProxy::reverse(&registry.url).await;
        Upstream {
            registry,
            proxy,
            layer: Arc::new(layer),
            digest,
        }
    }

    /// GETs of the layer that reached the upstream (through the fault proxy).
    pub fn blob_gets(&self) -> usize {
        let wanted = format!("GET /v2/{UPSTREAM_REPO}/blobs/{}", self.digest);
        self.proxy
            .seen()
            .iter()
            .filter(|r| r.starts_with(&wanted))
            .count()
    }

    /// The proxy YAML of a cache node: this upstream as `docker.io`, the default.
    pub fn proxy_yaml(&self) -> String {
        upstreams_yaml(
            &[("docker.io", &self.proxy.url(), "")],
            "  default: docker.io\n",
        )
    }
}

/// Starts `names` as pull-through cache nodes of `upstream`.
pub fn start_cache_nodes(c: &mut Cluster, upstream: &Upstream, names: &[&str]) {
    let yaml = upstream.proxy_yaml();
    c.start_all(names, "", "", &yaml);
}

/// Whether the bucket has an object at `path` (a storage path, under the cluster's root).
pub async fn object_exists(server: &TestServer, root: &str, path: &str) -> bool {
    match server.driver(root).stat(path).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("stat {path}: {e}"),
    }
}

/// The storage paths of the layer's data and of its link in the cached repository.
pub fn layer_paths(digest: &str) -> (String, String) {
    let d: Digest = digest.parse().expect("digest");
    let repo: RepoName = CACHED_REPO.parse().expect("repo");
    (paths::blob_data(&d), paths::layer_link(&repo, &d))
}

/// A streamed GET of `url` whose bytes are compared with `want` as they arrive; returns the
/// number of bytes received, or a description of what was wrong.
pub async fn pull_and_compare(url: String, want: Arc<Vec<u8>>) -> Result<usize, String> {
    let response = reqwest::get(&url)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: status {}", response.status()));
    }
    if response.content_length() != Some(want.len() as u64) {
        return Err(format!(
            "{url}: Content-Length {:?}, want {}",
            response.content_length(),
            want.len()
        ));
    }
    let mut stream = response.bytes_stream();
    let mut pos = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("{url}: body cut at byte {pos}: {e}"))?;
        let end = pos + chunk.len();
        if end > want.len() || chunk[..] != want[pos..end] {
            return Err(format!("{url}: bytes differ at {pos}..{end}"));
        }
        pos = end;
    }
    if pos != want.len() {
        return Err(format!("{url}: {pos} of {} bytes", want.len()));
    }
    Ok(pos)
}
