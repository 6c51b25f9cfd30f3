//! The fixture of `s3_lifecycle.rs` and `s3_operations.rs`: one Garage shared by the tests of
//! a file (each under its own root directory), Berth on it, the bucket read directly, and the
//! client steps the tests repeat.
#![allow(dead_code, unused_imports)] // Each test file uses part of it (and of its imports).

pub(crate) use std::path::Path;
pub(crate) use std::sync::{Arc, Mutex, Weak};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use berth_oci::{Digest, RepoName};
pub(crate) use berth_storage::s3::S3Driver;
pub(crate) use berth_storage::{paths, FileInfo, StorageDriver};
pub(crate) use bytes::Bytes;
pub(crate) use futures_util::TryStreamExt;

pub(crate) use crate::common::metrics::Scrape;
pub(crate) use crate::common::oci::{
    assert_serves, descriptor, image_manifest, push_multi_arch, sha256, Api, Reg, Resp, OCI_CONFIG,
    OCI_LAYER, OCI_MANIFEST,
};
pub(crate) use crate::common::{berth, text};
pub(crate) use crate::s3_kit::{Kind, TestServer};

/// The file's Garage: shared by the tests running at the same time, stopped (by the kit's
/// drop) when the last of them ends.
static GARAGE: Mutex<Weak<TestServer>> = Mutex::new(Weak::new());

/// One test's part of the bucket: its own root directory.
pub(crate) struct Bucket {
    pub(crate) server: Arc<TestServer>,
    pub(crate) root: String,
}

impl Bucket {
    /// `None` when Garage is missing (and not under CI).
    pub(crate) fn new(root: &str) -> Option<Bucket> {
        let mut shared = GARAGE.lock().unwrap_or_else(|e| e.into_inner());
        let server = match shared.upgrade() {
            Some(server) => server,
            None => {
                let server = Arc::new(TestServer::start(Kind::Garage)?);
                *shared = Arc::downgrade(&server);
                server
            }
        };
        Some(Bucket {
            server,
            root: root.to_owned(),
        })
    }

    /// A config for this root with redirects off (blob reads go through Berth), the debug
    /// server with metrics, plus `storage_extra` YAML under `storage`.
    pub(crate) fn yaml(&self, storage_extra: &str) -> String {
        let s = &self.server;
        format!(
            "version: 0.1
log: {{level: info}}
storage:
{s3}  delete: {{enabled: true}}
  redirect: {{disable: true}}
{storage_extra}http:
  addr: 127.0.0.1:0
  debug:
    addr: 127.0.0.1:0
    prometheus: {{enabled: true, path: /metrics}}
",
            s3 = s.s3_yaml(&s.endpoint, &self.root),
        )
    }

    /// Writes [`Bucket::yaml`] to `dir/file`; returns its path.
    pub(crate) fn config(&self, dir: &Path, file: &str, storage_extra: &str) -> String {
        let path = dir.join(file);
        std::fs::write(&path, self.yaml(storage_extra)).expect("write config");
        path.display().to_string()
    }

    pub(crate) fn start(&self, storage_extra: &str) -> Reg {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = self.config(dir.path(), "config.yml", storage_extra);
        Reg::start_in(dir, config)
    }

    /// The bucket under this root, seen directly, not through Berth.
    pub(crate) fn direct(&self) -> S3Driver {
        self.server.driver(&self.root)
    }

    /// Every key under a storage directory, as storage paths.
    pub(crate) async fn keys(&self, dir: &str) -> Vec<String> {
        let driver = self.direct();
        let entries: Result<Vec<(String, FileInfo)>, _> = driver.walk(dir).try_collect().await;
        match entries {
            Ok(entries) => entries.into_iter().map(|(path, _)| path).collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => panic!("listing {dir} in Garage: {e}"),
        }
    }

    pub(crate) async fn exists(&self, path: &str) -> bool {
        match self.direct().stat(path).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => panic!("stat {path} in Garage: {e}"),
        }
    }

    pub(crate) async fn delete(&self, path: &str) {
        self.direct()
            .delete(path)
            .await
            .unwrap_or_else(|e| panic!("delete {path} in Garage: {e}"));
    }

    /// Whether the blob holding `content` is under `blobs/`.
    pub(crate) async fn has_blob(&self, content: &[u8]) -> bool {
        self.exists(&paths::blob_data(&digest_of(content))).await
    }

    /// The online collector's trash entries of the blob holding `content`.
    pub(crate) async fn trashed(&self, content: &[u8]) -> Vec<String> {
        self.keys(&paths::trash_dir(&digest_of(content))).await
    }
}

pub(crate) fn digest_of(content: &[u8]) -> Digest {
    sha256(content).parse().expect("digest")
}

pub(crate) fn repo(name: &str) -> RepoName {
    name.parse().expect("repository name")
}

/// Fails the test with `what` once `limit` has passed; otherwise waits a little.
pub(crate) struct Deadline(Instant);

impl Deadline {
    pub(crate) fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    pub(crate) async fn tick(&self, what: &str) {
        assert!(Instant::now() < self.0, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `berth ARGS`, asserts success, returns its standard output.
pub(crate) fn ok_stdout(args: &[&str]) -> String {
    let out = berth(args, &[]);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The config and layer `Api::push_image` pushes for `seed`.
pub(crate) fn image_blobs(seed: &str) -> [Vec<u8>; 2] {
    [
        format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes(),
        format!("layer of {seed}").into_bytes(),
    ]
}

/// Asserts that `reg` serves `content` as a blob of `name`.
pub(crate) async fn assert_pulls(reg: &Reg, name: &str, content: &[u8]) {
    let r = reg
        .get(&format!("/v2/{name}/blobs/{}", sha256(content)))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, content);
}

/// GET of a manifest by tag or digest, accepting OCI image manifests.
pub(crate) async fn get_manifest(reg: &Reg, name: &str, reference: &str) -> Resp {
    reg.send(
        "GET",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("accept", OCI_MANIFEST)],
        Vec::new(),
    )
    .await
}

pub(crate) async fn tags(reg: &Reg, name: &str) -> Vec<String> {
    let r = reg.get(&format!("/v2/{name}/tags/list")).await;
    r.assert_status(200);
    serde_json::from_value(r.json()["tags"].clone()).expect("tags")
}

/// Waits until `_catalog` lists `expected` (a listing is cached for a second).
pub(crate) async fn wait_catalog(reg: &Reg, expected: &[&str]) {
    let deadline = Deadline::after(Duration::from_secs(10));
    loop {
        let listed = catalog(reg).await;
        if listed == expected {
            return;
        }
        deadline
            .tick(&format!("_catalog {listed:?} to be {expected:?}"))
            .await;
    }
}

pub(crate) async fn catalog(reg: &Reg) -> Vec<String> {
    let r = reg.get("/v2/_catalog").await;
    r.assert_status(200);
    serde_json::from_value(r.json()["repositories"].clone()).expect("repositories")
}

/// The upload session id of a `Location`.
pub(crate) fn session_id(location: &str) -> String {
    let rest = location
        .split("/blobs/uploads/")
        .nth(1)
        .expect("upload URL");
    rest.split('?').next().unwrap_or(rest).to_owned()
}

/// A PATCH of `chunk` at `offset`; asserts 202.
pub(crate) async fn patch(reg: &Reg, upload: &str, offset: usize, chunk: &[u8]) -> String {
    let end = offset + chunk.len() - 1;
    let r = reg
        .send(
            "PATCH",
            upload,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &format!("{offset}-{end}")),
            ],
            chunk.to_vec(),
        )
        .await;
    r.assert_status(202);
    r.header("location").to_owned()
}
