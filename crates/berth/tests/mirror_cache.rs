//! The pull-through cache's size limit and expiry with a real upstream (Debian's
//! docker-registry, on 127.0.0.1) and online garbage collection with a tiny delay: the least
//! recently pulled image is evicted first, the cache's bytes end up under the limit on disk,
//! evicted content is fetched again byte-identical; registry:2's `proxy.ttl` expires content
//! nobody pulls while content in use stays servable with the upstream down.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod mirror_kit;

use std::path::Path;
use std::time::{Duration, Instant};

use common::oci::{sha256, Reg};
use mirror_kit::{data, have_registry2, push_image, Mode, Registry2, TestProxy};
use serde_json::Value;

const LIMIT: u64 = 250 * 1024;

/// A Berth config with online GC (tiny delay), the debug server with metrics, and `proxy`.
fn start(proxy: &str) -> Reg {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  maintenance:\n    gc: {{enabled: true, interval: 300ms, delay: 1s}}\nhttp:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:0\n    prometheus: {{enabled: true, path: /metrics}}\n{proxy}",
        dir.path().join("data").display()
    );
    std::fs::write(&path, yaml).unwrap();
    Reg::start_in(dir, path.display().to_string())
}

fn v2(reg: &Reg) -> std::path::PathBuf {
    reg.dir.path().join("data/docker/registry/v2")
}

/// Whether `repo` holds a revision of `digest` on disk.
fn has_revision(reg: &Reg, repo: &str, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    v2(reg)
        .join(format!(
            "repositories/{repo}/_manifests/revisions/sha256/{hex}/link"
        ))
        .exists()
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Polls `check` every 50 ms for up to `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// Pulls `repo:tag` and every blob through `reg`, checking each against `body`.
async fn pull(reg: &Reg, repo: &str, tag: &str, body: &str) {
    let r = reg
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("accept", "application/vnd.oci.image.manifest.v1+json")],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.text(), body, "{repo}:{tag} byte-identical");
    let m: Value = serde_json::from_str(body).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for digest in blobs {
        let r = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        r.assert_status(200);
        assert_eq!(sha256(&r.body), digest, "{repo}: blob verified");
    }
}

/// The value of a metric line starting with `prefix` on the debug server.
async fn metric(reg: &Reg, prefix: &str) -> Option<f64> {
    let url = format!("{}/metrics", reg.server.debug_url.as_ref().unwrap());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_pulled_image_goes_first_and_comes_back_byte_identical() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let api = up.api();
    let mut images = Vec::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let layer = data(100 * 1024, 40 + i as u64);
        let repo = format!("library/{name}");
        images.push(push_image(&api, &repo, "1", &[layer], None).await);
    }
    let reg = start(&format!(
        "proxy:\n  upstreams:\n    - {{host: docker.io, url: {}}}\n  default: docker.io\n  cache: {{maxsize: {LIMIT}, interval: 1s}}\n",
        up.url
    ));
    // a, b, a again, then c: only c makes the cache too big, and b is then the least
    // recently pulled (a's second pull is more than the 250 ms refresh after its first).
    pull(&reg, "a", "1", &images[0].0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    pull(&reg, "b", "1", &images[1].0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    pull(&reg, "a", "1", &images[0].0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    pull(&reg, "c", "1", &images[2].0).await;

    let repo = |n: &str| format!("docker.io/library/{n}");
    assert!(
        eventually(Duration::from_secs(10), || !has_revision(
            &reg,
            &repo("b"),
            &images[1].1
        ))
        .await,
        "b was not evicted"
    );
    assert!(has_revision(&reg, &repo("a"), &images[0].1), "a kept");
    assert!(has_revision(&reg, &repo("c"), &images[2].1), "c kept");

    let cached = metric(&reg, "berth_proxy_cache_bytes{upstream=\"docker.io\"}").await;
    let cached = cached.expect("berth_proxy_cache_bytes reported");
    assert!(
        cached > 200.0 * 1024.0 && cached <= LIMIT as f64,
        "{cached}"
    );
    let evictions = metric(&reg, "berth_proxy_evictions_total{upstream=\"docker.io\"}").await;
    assert_eq!(evictions, Some(1.0));
    // Online GC (delay 1 s) frees b's blobs: what is on disk fits the limit.
    let blobs = v2(&reg).join("blobs");
    let trash = v2(&reg).join("_berth/trash");
    let on_disk = || bytes_under(&blobs) + bytes_under(&trash);
    assert!(
        eventually(Duration::from_secs(20), || on_disk() <= LIMIT).await,
        "blobs and trash hold {} bytes",
        on_disk()
    );

    // The next pull of b fetches it from the upstream again, byte-identical.
    let b: Value = serde_json::from_str(&images[1].0).unwrap();
    let layer_path = format!(
        "/v2/library/b/blobs/{}",
        b["layers"][0]["digest"].as_str().unwrap()
    );
    assert_eq!(up.requests("GET", &layer_path), 1);
    let manifests_before = up.requests("GET", "/v2/library/b/manifests/1");
    pull(&reg, "b", "1", &images[1].0).await;
    assert_eq!(
        up.requests("GET", "/v2/library/b/manifests/1"),
        manifests_before + 1
    );
    assert_eq!(
        up.requests("GET", &layer_path),
        2,
        "the layer was fetched again"
    );
    assert!(has_revision(&reg, &repo("b"), &images[1].1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry2_ttl_expires_what_nobody_pulls_and_keeps_serving_what_is_used() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let (used, _) = push_image(&up.api(), "library/used", "1", &[data(20_000, 7)], None).await;
    let (idle, idle_digest) =
        push_image(&up.api(), "library/idle", "1", &[data(20_000, 8)], None).await;
    let gate = TestProxy::reverse(&up.url).await;
    let reg = start(&format!(
        "proxy:\n  remoteurl: {}\n  ttl: 2s\n  cache: {{interval: 300ms}}\n",
        gate.url()
    ));
    pull(&reg, "library/used", "1", &used).await;
    pull(&reg, "library/idle", "1", &idle).await;
    gate.set(Mode::Status(503));
    // Upstream down: the image in use is served (stale-if-error) for longer than the ttl,
    // while the idle one expires.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        pull(&reg, "library/used", "1", &used).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        eventually(Duration::from_secs(5), || !has_revision(
            &reg,
            "library/idle",
            &idle_digest
        ))
        .await,
        "idle was not evicted"
    );
    pull(&reg, "library/used", "1", &used).await;
    let r = reg.get("/v2/library/idle/manifests/1").await;
    assert_eq!(
        r.status,
        502,
        "expired and the upstream is down: {}",
        r.text()
    );
    // Upstream back: fetched again on demand.
    gate.set(Mode::Pass);
    let before = up.requests("GET", "/v2/library/idle/manifests/1");
    pull(&reg, "library/idle", "1", &idle).await;
    assert!(up.requests("GET", "/v2/library/idle/manifests/1") > before);
}
