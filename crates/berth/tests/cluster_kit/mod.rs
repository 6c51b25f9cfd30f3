//! The fixture of `cluster.rs`: several `berth serve` processes on one bucket (Garage, which
//! ignores create-only writes, or moto, which honours them), each with its own config file
//! and node name, addressed one by one so that a test decides which node gets each request.
#![allow(dead_code, unused_imports)] // Each test uses part of it.

pub(crate) use std::sync::{Arc, Mutex, Weak};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use crate::common::metrics::Scrape;
pub(crate) use crate::common::oci::{sha256, Api, Reg, Resp, OCI_MANIFEST};
pub(crate) use crate::common::{berth, text};
pub(crate) use crate::s3_kit::{Kind, TestServer};

/// The file's servers, one of each kind, shared by the tests running at the same time and
/// stopped (by the kit's drop) when the last of them ends.
static GARAGE: Mutex<Weak<TestServer>> = Mutex::new(Weak::new());
static MOTO: Mutex<Weak<TestServer>> = Mutex::new(Weak::new());

fn server(kind: Kind) -> Option<Arc<TestServer>> {
    let slot = match kind {
        Kind::Garage => &GARAGE,
        Kind::Moto => &MOTO,
    };
    let mut shared = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    let server = Arc::new(TestServer::start(kind)?);
    *shared = Arc::downgrade(&server);
    Some(server)
}

/// Nodes on one bucket under one root directory.
pub(crate) struct Cluster {
    pub(crate) server: Arc<TestServer>,
    pub(crate) root: String,
    pub(crate) dir: tempfile::TempDir,
    /// `None` once a node was killed.
    pub(crate) nodes: Vec<Option<Reg>>,
}

impl Cluster {
    /// `None` when the server's binary is missing (and not under CI).
    pub(crate) fn new(kind: Kind, root: &str) -> Option<Cluster> {
        Some(Cluster {
            server: server(kind)?,
            root: root.to_owned(),
            dir: tempfile::tempdir().expect("tempdir"),
            nodes: Vec::new(),
        })
    }

    /// The config of node `name`: this bucket and root, redirects off (blob reads go through
    /// Berth), the debug server with metrics, `cluster: {node: name, <cluster>}`, then `extra`
    /// at the top level.
    pub(crate) fn yaml(
        &self,
        name: &str,
        cluster: &str,
        storage_extra: &str,
        extra: &str,
    ) -> String {
        self.yaml_with_secret(name, cluster, storage_extra, extra, None)
    }

    /// [`Cluster::yaml`] with `http.secret`.
    pub(crate) fn yaml_with_secret(
        &self,
        name: &str,
        cluster: &str,
        storage_extra: &str,
        extra: &str,
        secret: Option<&str>,
    ) -> String {
        let s = &self.server;
        let secret = secret.map_or_else(String::new, |s| format!("  secret: {s}\n"));
        format!(
            "version: 0.1
log: {{level: info}}
storage:
{s3}  delete: {{enabled: true}}
  redirect: {{disable: true}}
{storage_extra}http:
  addr: 127.0.0.1:0
{secret}  debug:
    addr: 127.0.0.1:0
    prometheus: {{enabled: true, path: /metrics}}
cluster: {{node: {name}{sep}{cluster}}}
{extra}",
            s3 = s.s3_yaml(&s.endpoint, &self.root),
            sep = if cluster.is_empty() { "" } else { ", " },
        )
    }

    /// Starts node `name`; returns its index.
    pub(crate) fn start(
        &mut self,
        name: &str,
        cluster: &str,
        storage_extra: &str,
        extra: &str,
    ) -> usize {
        let yaml = self.yaml(name, cluster, storage_extra, extra);
        self.start_yaml(name, &yaml)
    }

    /// Starts node `name` with its own `http.secret`.
    pub(crate) fn start_with_secret(&mut self, name: &str, secret: &str) -> usize {
        let yaml = self.yaml_with_secret(name, "", "", "", Some(secret));
        self.start_yaml(name, &yaml)
    }

    fn start_yaml(&mut self, name: &str, yaml: &str) -> usize {
        let path = self.dir.path().join(format!("{name}.yml"));
        std::fs::write(&path, yaml).expect("config");
        let node_dir = tempfile::tempdir().expect("tempdir");
        self.nodes
            .push(Some(Reg::start_in(node_dir, path.display().to_string())));
        self.nodes.len() - 1
    }

    /// Starts `names` with the same settings.
    pub(crate) fn start_all(
        &mut self,
        names: &[&str],
        cluster: &str,
        storage_extra: &str,
        extra: &str,
    ) {
        for name in names {
            self.start(name, cluster, storage_extra, extra);
        }
    }

    pub(crate) fn node(&self, i: usize) -> &Reg {
        self.nodes[i].as_ref().expect("node running")
    }

    /// The config file of node `name`, for `berth` commands.
    pub(crate) fn config(&self, name: &str) -> String {
        self.dir
            .path()
            .join(format!("{name}.yml"))
            .display()
            .to_string()
    }

    /// kill -9 of node `i`: no drain, no lease release.
    pub(crate) fn kill(&mut self, i: usize) {
        let mut reg = self.nodes[i].take().expect("node running");
        reg.server.signal("-KILL");
        reg.server.wait(Duration::from_secs(10)).expect("killed");
    }

    /// Every running node's index.
    pub(crate) fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }
}

/// `Location` of `r` as a path (with its query), to send to any node.
pub(crate) fn location(r: &Resp) -> String {
    let l = r.header("location");
    match l.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
        None => l.to_owned(),
    }
}

/// `url?digest=` or `url&digest=`.
pub(crate) fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// A PATCH of `chunk` at `offset`; asserts 202 and returns the next `Location`.
pub(crate) async fn patch(node: &Api, url: &str, offset: usize, chunk: &[u8]) -> String {
    let range = format!("{offset}-{}", offset + chunk.len() - 1);
    let r = node
        .send(
            "PATCH",
            url,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &range),
            ],
            chunk.to_vec(),
        )
        .await;
    r.assert_status(202);
    assert_eq!(
        r.header("range"),
        format!("0-{}", offset + chunk.len() - 1),
        "PATCH on {}",
        node.url
    );
    location(&r)
}

/// An image manifest over a config and layers already pushed.
pub(crate) fn manifest(config: &[u8], layers: &[&[u8]]) -> String {
    let desc = |media: &str, data: &[u8]| serde_json::json!({"mediaType": media, "digest": sha256(data), "size": data.len()});
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
    })
    .to_string()
}

/// PUT of a manifest; asserts 201, returns its digest.
pub(crate) async fn put_manifest(node: &Api, repo: &str, tag: &str, body: &str) -> String {
    let r = node
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("content-type", OCI_MANIFEST)],
            body.as_bytes().to_vec(),
        )
        .await;
    r.assert_status(201);
    r.header("docker-content-digest").to_owned()
}

/// GET of a manifest accepting OCI image manifests.
pub(crate) async fn get_manifest(node: &Api, repo: &str, reference: &str) -> Resp {
    node.send(
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("accept", OCI_MANIFEST)],
        Vec::new(),
    )
    .await
}

/// Polls `check` on `node` until it holds; returns how long that took. Fails after `limit`.
pub(crate) async fn within<F>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: AsyncFnMut() -> bool,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `berth_cluster_jobs_runner` on `node`.
pub(crate) async fn runs_jobs(node: &Reg) -> bool {
    Scrape::take(node)
        .await
        .value("berth_cluster_jobs_runner", &[])
        == 1.0
}
