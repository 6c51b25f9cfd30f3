//! Test S3 servers (Garage, moto) for the S3 driver's tests: started on 127.0.0.1 by
//! `scripts/s3-test-servers.sh` (the same script the shell suites use) and stopped by PID when
//! the [`TestServer`] is dropped, even when a test panics.
#![allow(dead_code)] // each test binary uses part of the kit

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use berth_storage::s3::{S3Driver, S3Options};

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Single-node Garage: ignores conditional writes, inlines objects under 3 KiB.
    Garage,
    /// moto_server: enforces the 5 MiB minimum part and conditional writes, checks no signature.
    Moto,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Garage => "garage",
            Kind::Moto => "moto",
        }
    }
}

/// A running server with one bucket and a key allowed to use it.
pub struct TestServer {
    pub kind: Kind,
    pub endpoint: String,
    pub region: String,
    pub key_id: String,
    pub secret_key: String,
    pub bucket: String,
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-test-servers.sh")
}

impl TestServer {
    /// The `storage.s3` block of a Berth or registry:2 config for this server's bucket, with
    /// the store reached at `endpoint` (the server itself, or a proxy in front of it) and keys
    /// under `root`; indented to sit under `storage:`.
    #[allow(dead_code)] // Used by the binary tests that include this kit, not by all.
    pub fn s3_yaml(&self, endpoint: &str, root: &str) -> String {
        format!(
            "  s3:\n    bucket: {}\n    region: {}\n    regionendpoint: {endpoint}\n    accesskey: {}\n    secretkey: {}\n    rootdirectory: {root}\n",
            self.bucket, self.region, self.key_id, self.secret_key
        )
    }

    /// Starts a server; `None` (with the reason printed) when its binary is missing, except
    /// under `CI=true`, where that fails the test.
    pub fn start(kind: Kind) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("bash")
            .arg(script())
            .arg(format!("{}-start", kind.name()))
            .arg(dir.path())
            .output()
            .expect("run s3-test-servers.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(3) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must have {} (scripts/install-test-deps.sh installs it): {stderr}",
                kind.name()
            );
            eprintln!("skipping the {} S3 tests: {stderr}", kind.name());
            return None;
        }
        let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let prefix = format!("BERTH_TEST_{}_", kind.name().to_ascii_uppercase());
        let var = |name: &str| vars.get(&format!("{prefix}{name}")).cloned();
        let server = Self {
            kind,
            endpoint: var("ENDPOINT").unwrap_or_default(),
            region: var("REGION").unwrap_or_default(),
            key_id: var("KEY_ID").unwrap_or_default(),
            secret_key: var("SECRET_KEY").unwrap_or_default(),
            bucket: var("BUCKET").unwrap_or_default(),
            dir,
        };
        // Checked after `server` exists, so a half-started server is stopped by its drop.
        assert!(
            out.status.success() && !server.endpoint.is_empty(),
            "{} did not start: {stderr}",
            kind.name()
        );
        Some(server)
    }

    /// Options for this server's bucket under `root` (registry:2's `rootdirectory`).
    pub fn options(&self, root: &str) -> S3Options {
        let mut o = S3Options::new(&self.bucket);
        o.region = Some(self.region.clone());
        o.endpoint = Some(self.endpoint.clone());
        o.access_key = Some(self.key_id.clone());
        o.secret_key = Some(self.secret_key.clone());
        o.root_directory = root.to_owned();
        o
    }

    /// A driver for this server's bucket under `root`.
    pub fn driver(&self, root: &str) -> S3Driver {
        S3Driver::new(&self.options(root)).expect("driver")
    }

    /// Stops the server (by PID); its data stays for [`TestServer::resume`].
    pub fn stop(&self) {
        let status = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status()
            .expect("run s3-test-servers.sh stop");
        assert!(status.success(), "stop failed");
    }

    /// Starts a stopped Garage again on the same port with the same data.
    pub fn resume(&self) {
        assert_eq!(self.kind, Kind::Garage, "only Garage keeps its data");
        let out = Command::new("bash")
            .arg(script())
            .arg("garage-resume")
            .arg(self.dir.path())
            .output()
            .expect("run s3-test-servers.sh garage-resume");
        assert!(
            out.status.success(),
            "resume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        let name = format!("{}.log", self.kind.name());
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
