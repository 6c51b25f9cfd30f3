//! The fixture of `s3_faults.rs`: Garage with the proxy in front, Berth on it, the bucket read
//! directly, and the client steps the tests repeat.

use std::time::Duration;

use berth_oci::{Digest, RepoName, Tag};
use berth_storage::s3::S3Driver;
use berth_storage::{paths, StorageDriver, StorageError};
use futures_util::TryStreamExt;

use super::{FaultProxy, MARK};
use crate::common::oci::{sha256, Reg, Resp};
use crate::s3_kit::{Kind, TestServer};

/// Garage, the proxy in front of it, and the root directory of one test.
pub struct Bench {
    pub server: TestServer,
    pub proxy: FaultProxy,
    pub root: &'static str,
}

impl Bench {
    /// `None` when Garage is missing (and not under CI).
    pub async fn new(root: &'static str) -> Option<Bench> {
        let server = TestServer::start(Kind::Garage)?;
        let proxy = FaultProxy::start(&server.endpoint).await;
        Some(Bench {
            server,
            proxy,
            root,
        })
    }

    /// `berth serve` on the bucket through the proxy, redirects off so blob reads go through
    /// Berth too. The node's own background request (the cluster-wide read-only flag, read
    /// every 2 s by default) is made hourly, so that a fault set for the next request hits the
    /// test's request and request counts are the test's own.
    pub fn berth(&self) -> Reg {
        self.berth_with("cluster: {pollinterval: 1h}\n")
    }

    /// [`Bench::berth`] with `extra` YAML at the top level instead of the hourly poll.
    pub fn berth_with(&self, extra: &str) -> Reg {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yml");
        let yaml = format!(
            "version: 0.1
log: {{level: info}}
storage:
{s3}  delete: {{enabled: true}}
  redirect: {{disable: true}}
http:
  addr: 127.0.0.1:0
{extra}",
            s3 = self.server.s3_yaml(&self.proxy.url(), self.root),
        );
        std::fs::write(&path, yaml).expect("write config");
        Reg::start_in(dir, path.display().to_string())
    }

    /// The bucket seen directly, not through the proxy nor Berth.
    pub fn direct(&self) -> S3Driver {
        self.server.driver(self.root)
    }

    /// What Garage holds at a storage path.
    pub async fn stored(&self, path: &str) -> Option<Vec<u8>> {
        match self.direct().get_content(path).await {
            Ok(bytes) => Some(bytes.to_vec()),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => panic!("reading {path} from Garage: {e}"),
        }
    }

    /// Every key under a storage directory, as storage paths.
    pub async fn keys_under(&self, dir: &str) -> Vec<String> {
        let driver = self.direct();
        let entries: Vec<(String, berth_storage::FileInfo)> =
            driver.walk(dir).try_collect().await.expect("walk");
        entries.into_iter().map(|(path, _)| path).collect()
    }

    /// The storage paths of the blobs Garage holds.
    pub async fn blobs(&self) -> Vec<String> {
        self.keys_under(&paths::blobs_root()).await
    }

    /// Asserts that no answer text names the store, its endpoint, bucket or answer.
    #[track_caller]
    pub fn assert_no_leak(&self, what: &str, body: &str) {
        for secret in [
            MARK,
            "SlowDown",
            "InternalError",
            "127.0.0.1",
            "http://",
            self.server.bucket.as_str(),
            self.root.trim_start_matches('/'),
        ] {
            assert!(!body.contains(secret), "{what} names {secret:?}: {body}");
        }
    }
}

pub fn digest(s: &str) -> Digest {
    s.parse().expect("digest")
}

pub fn repo(s: &str) -> RepoName {
    s.parse().expect("repository name")
}

pub fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

/// `len` bytes that differ for each `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The path of an absolute `Location`.
pub fn path_of(location: &str) -> String {
    let rest = location.strip_prefix("http://").unwrap_or(location);
    rest.find('/')
        .map_or("/".to_owned(), |i| rest[i..].to_owned())
}

/// A `POST ?digest=` whose body did not arrive whole, or that failed: a status or a broken
/// connection, never a success.
pub async fn post_blob(reg: &Reg, name: &str, blob: &[u8]) -> Result<Resp, reqwest::Error> {
    let url = reg.abs(&format!(
        "/v2/{name}/blobs/uploads/?digest={}",
        sha256(blob)
    ));
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await?.to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A PATCH of `chunk` at `offset`.
pub async fn send_chunk(reg: &Reg, upload: &str, offset: usize, chunk: &[u8]) -> Resp {
    let end = offset + chunk.len() - 1;
    reg.send(
        "PATCH",
        upload,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", &format!("{offset}-{end}")),
        ],
        chunk.to_vec(),
    )
    .await
}

/// A PATCH of `chunk` at `offset`; asserts 202 and the new `Range`.
pub async fn patch(reg: &Reg, upload: &str, offset: usize, chunk: &[u8]) {
    let r = send_chunk(reg, upload, offset, chunk).await;
    r.assert_status(202);
    assert_eq!(r.header("range"), format!("0-{}", offset + chunk.len() - 1));
}

/// Kills the server with SIGKILL and starts a new one on the same configuration.
pub fn kill_and_restart(reg: Reg) -> Reg {
    let Reg {
        mut server,
        dir,
        config,
        ..
    } = reg;
    server.signal("-KILL");
    assert!(server.wait(Duration::from_secs(10)).is_some(), "berth died");
    drop(server);
    Reg::start_in(dir, config)
}
