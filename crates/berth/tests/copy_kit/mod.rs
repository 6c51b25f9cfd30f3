//! Fixtures for the `berth copy` / `berth sync` tests: run the real binary without blocking
//! the test's runtime (so servers the test runs keep answering), with an empty docker config
//! so nobody's credentials are read, and small checks on what a registry serves.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

use crate::common::oci::{sha256, Api, OCI_INDEX, OCI_MANIFEST};
use crate::common::BERTH;

/// A docker config directory with no credentials, shared by a test's runs.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.json"), "{}").expect("config.json");
        Env { dir }
    }

    /// `berth ARGS`, waited for.
    pub async fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("run berth")
    }

    /// `berth ARGS`, not yet started.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BERTH);
        cmd.args(args)
            .env("DOCKER_CONFIG", self.dir.path())
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        cmd
    }

    /// `berth copy` between plain-http registries (the tests' are all on loopback http).
    pub async fn copy(&self, extra: &[&str], src: &str, dst: &str) -> Output {
        let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
        args.extend_from_slice(extra);
        args.extend([src, dst]);
        self.berth(&args).await
    }
}

/// Asserts success, showing the output otherwise.
pub fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "berth failed ({:?}): {stderr}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// `host:port` of a registry URL.
pub fn addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// The digest of the manifest `repo:reference` (of its bytes), if served.
pub async fn manifest_digest(api: &Api, repo: &str, reference: &str) -> Option<String> {
    let r = api
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
            Vec::new(),
        )
        .await;
    (r.status == 200).then(|| sha256(&r.body))
}

/// The digest skopeo reads for `docker://REF` (None when skopeo is not installed).
pub async fn skopeo_digest(reference: &str) -> Option<String> {
    let out = tokio::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .await
        .ok()?;
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(sha256(&out.stdout))
}

/// The files of a directory tree, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}
