//! `storage.s3` end to end with the real binary on Garage and moto (started on 127.0.0.1 by
//! `scripts/s3-test-servers.sh`): startup refuses a bucket that does not answer, naming the key
//! to fix; pushes and pulls work, with blob downloads redirected to presigned URLs unless
//! `storage.redirect.disable`; `health.storagedriver` follows the bucket going away and back.
//! Without the servers the tests skip, except under `CI=true`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;

use std::time::{Duration, Instant};

use common::oci::Reg;
use common::{berth, text};
use s3_kit::{Kind, TestServer};

/// A config for `server`'s bucket under `root`, with the debug server and a fast
/// `health.storagedriver`, plus `extra` YAML under `storage`.
fn config(dir: &std::path::Path, server: &TestServer, root: &str, storage_extra: &str) -> String {
    let path = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1
log: {{level: info}}
storage:
{s3}  delete: {{enabled: true}}
{storage_extra}http:
  addr: 127.0.0.1:0
  debug: {{addr: 127.0.0.1:0}}
health:
  storagedriver: {{enabled: true, interval: 100ms, threshold: 2}}
",
        s3 = server.s3_yaml(&server.endpoint, root),
    );
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

fn start(server: &TestServer, root: &str, storage_extra: &str) -> Reg {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), server, root, storage_extra);
    Reg::start_in(dir, config)
}

/// `berth serve` must exit at startup with an error naming `key`.
fn refused(config: &str, key: &str) {
    let out = berth(&["serve", config], &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "berth started: {stderr}");
    assert!(stderr.contains(key), "{key} not named: {stderr}");
}

async fn pushes_and_pulls(server: &TestServer) {
    let reg = start(server, "/pushpull", "");
    let (manifest, _) = reg.push_image("s3/app", "v1", "s3 seed").await;
    let got = reg.get("/v2/s3/app/manifests/v1").await;
    got.assert_status(200);
    assert_eq!(got.text(), manifest);
    let layer = b"layer of s3 seed";
    let digest = common::oci::sha256(layer);
    // Redirects are registry:2's default: a 307 to a presigned URL of the object.
    let r = reg.get(&format!("/v2/s3/app/blobs/{digest}")).await;
    r.assert_status(307);
    let location = r.header("location").to_owned();
    assert!(location.starts_with(&server.endpoint), "{location}");
    let fetched = reqwest::get(&location).await.expect("presigned GET");
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.expect("body").as_ref(), layer);
    // Keys are registry:2's, under the root directory.
    let bucket = server.driver("");
    let key = format!(
        "/pushpull/docker/registry/v2/blobs/sha256/{}/{}/data",
        &digest[7..9],
        &digest[7..]
    );
    assert_eq!(
        berth_storage::StorageDriver::get_content(&bucket, &key)
            .await
            .expect("blob under rootdirectory")
            .as_ref(),
        layer
    );
    drop(reg);

    let reg = start(server, "/pushpull", "  redirect: {disable: true}\n");
    let r = reg.get(&format!("/v2/s3/app/blobs/{digest}")).await;
    r.assert_status(200);
    assert_eq!(r.body, layer);
    let r = reg
        .send(
            "GET",
            &format!("/v2/s3/app/blobs/{digest}"),
            &[("range", "bytes=3-7")],
            Vec::new(),
        )
        .await;
    r.assert_status(206);
    assert_eq!(r.body, &layer[3..8]);
}

async fn startup_checks(server: &TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = config(dir.path(), server, "/", "");
    let missing = good.replace("config.yml", "missing.yml");
    let yaml = std::fs::read_to_string(&good).expect("read");
    std::fs::write(
        &missing,
        yaml.replace(
            &format!("bucket: {}", server.bucket),
            "bucket: no-such-bucket",
        ),
    )
    .expect("write");
    refused(&missing, "storage.s3.bucket");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let down = good.replace("config.yml", "down.yml");
    std::fs::write(
        &down,
        yaml.replace(&server.endpoint, &format!("http://127.0.0.1:{port}")),
    )
    .expect("write");
    refused(&down, "storage.s3.regionendpoint");

    if server.kind == Kind::Garage {
        let wrong = good.replace("config.yml", "wrong.yml");
        std::fs::write(&wrong, yaml.replace(&server.secret_key, &"0".repeat(64))).expect("write");
        refused(&wrong, "storage.s3.accesskey");
    }
}

async fn health(reg: &Reg) -> (u16, String) {
    let url = format!(
        "{}/debug/health",
        reg.server.debug_url.as_ref().expect("debug server")
    );
    let r = reqwest::get(&url).await.expect("debug health");
    (r.status().as_u16(), r.text().await.expect("body"))
}

async fn wait_health(reg: &Reg, status: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (got, body) = health(reg).await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "health stayed {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage() {
    let Some(server) = TestServer::start(Kind::Garage) else {
        return;
    };
    startup_checks(&server).await;
    pushes_and_pulls(&server).await;

    // An empty bucket (nothing under the root yet) is healthy; a stopped store is not, and
    // health comes back with it.
    let reg = start(&server, "/health", "");
    assert_eq!(wait_health(&reg, 200, Duration::from_secs(10)).await, "{}");
    server.stop();
    let body = wait_health(&reg, 503, Duration::from_secs(60)).await;
    assert!(body.contains("storagedriver_s3aws"), "{body}");
    reg.get("/v2/").await.assert_error(503, "UNAVAILABLE");
    server.resume();
    assert_eq!(wait_health(&reg, 200, Duration::from_secs(60)).await, "{}");
    reg.push_image("s3/after", "v1", "after the outage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto() {
    let Some(server) = TestServer::start(Kind::Moto) else {
        return;
    };
    startup_checks(&server).await;
    pushes_and_pulls(&server).await;
}
