//! Operations: Prometheus metrics and registry:2 health checks on the debug server, tested
//! against the real binary. Counters are compared before and after a scripted session, so
//! each assertion names exactly how much a metric must move. Also the storage use report
//! (`berth du`, `/v2/_berth/usage`).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::metrics::Scrape;
use common::oci::{sha256, Reg};

/// A config with the debug server on an ephemeral port and metrics on, plus `extra` YAML.
fn config(dir: &std::path::Path, extra: &str) -> String {
    let path = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:0\n    prometheus: {{enabled: true, path: /metrics}}\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

fn start(extra: &str) -> Reg {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), extra);
    Reg::start_in(dir, config)
}

#[tokio::test]
async fn metrics_count_a_scripted_push_pull_delete_session() {
    let reg = start("");
    let before = Scrape::take(&reg).await;

    reg.get("/v2/").await.assert_status(200);
    let (manifest, digest) = reg.push_image("ops/app", "v1", "metrics").await;
    let config = r#"{"architecture":"amd64","os":"linux","seed":"metrics"}"#;
    let layer = b"layer of metrics";
    for _ in 0..3 {
        reg.get("/v2/ops/app/manifests/v1").await.assert_status(200);
    }
    let layer_digest = sha256(layer);
    for _ in 0..2 {
        reg.head(&format!("/v2/ops/app/blobs/{layer_digest}"))
            .await
            .assert_status(200);
    }
    reg.get(&format!("/v2/ops/app/blobs/{layer_digest}"))
        .await
        .assert_status(200);
    reg.get("/v2/ops/app/manifests/missing")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    reg.delete(&format!("/v2/ops/app/manifests/{digest}"))
        .await
        .assert_status(202);
    // Web UI pages are measured too, under the handler `ui`.
    reg.get("/ui/").await.assert_status(200);
    reg.get("/ui/r/nothing/here").await.assert_status(404);

    let after = Scrape::take(&reg).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let requests = "registry_http_requests_total";
    let cases: [(&[(&str, &str)], f64); 7] = [
        (
            &[("handler", "base"), ("code", "200"), ("method", "get")],
            1.0,
        ),
        // push_image: config and layer by monolithic POST, then the manifest PUT.
        (
            &[
                ("handler", "blob_upload"),
                ("code", "201"),
                ("method", "post"),
            ],
            2.0,
        ),
        (
            &[("handler", "manifest"), ("code", "201"), ("method", "put")],
            1.0,
        ),
        (
            &[("handler", "manifest"), ("code", "200"), ("method", "get")],
            3.0,
        ),
        (
            &[("handler", "manifest"), ("code", "404"), ("method", "get")],
            1.0,
        ),
        (
            &[("handler", "blob"), ("code", "200"), ("method", "head")],
            2.0,
        ),
        (
            &[
                ("handler", "manifest"),
                ("code", "202"),
                ("method", "delete"),
            ],
            1.0,
        ),
    ];
    for (labels, want) in cases {
        assert_eq!(moved(requests, labels), want, "{requests} {labels:?}");
    }
    for code in ["200", "404"] {
        let labels = [("handler", "ui"), ("code", code), ("method", "get")];
        assert_eq!(moved(requests, &labels), 1.0, "{requests} {labels:?}");
    }
    assert_eq!(
        moved(
            requests,
            &[("handler", "blob"), ("code", "200"), ("method", "get")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "registry_http_request_duration_seconds_count",
            &[("handler", "manifest"), ("method", "get")]
        ),
        4.0,
        "three hits and one miss"
    );
    assert_eq!(
        after.value(
            "registry_http_in_flight_requests",
            &[("handler", "manifest")]
        ),
        0.0
    );
    assert_eq!(
        moved(
            "registry_http_request_size_bytes_sum",
            &[("handler", "manifest")]
        ),
        manifest.len() as f64,
        "only the PUT had a body"
    );
    // The storage gauges walk the store: config, layer and manifest blobs are still there
    // (a manifest delete unlinks, GC frees).
    let stored = (config.len() + layer.len() + manifest.len()) as f64;
    assert_eq!(after.value("berth_storage_bytes", &[]), stored);
    assert_eq!(after.value("berth_storage_blobs", &[]), 3.0);
    assert_eq!(after.value("berth_repositories", &[]), 1.0);
    assert_eq!(after.value("berth_uploads_in_progress", &[]), 0.0);
    // Storage actions: the two blobs were pushed with their digest up front, so each was
    // streamed straight to its final path (Writer), never moved; the manifest is small
    // content (PutContent).
    let action = |action: &str| {
        moved(
            "registry_storage_action_seconds_count",
            &[("driver", "filesystem"), ("action", action)],
        )
    };
    assert_eq!(action("Writer"), 2.0, "Writer");
    assert_eq!(action("Move"), 0.0, "Move");
    assert!(after.value("berth_disk_free_bytes", &[]) > 0.0);
    assert!(after.value("berth_disk_size_bytes", &[]) >= after.value("berth_disk_free_bytes", &[]));
}

/// Polls `/debug/health` until `done(status, body)` holds, or fails after `limit`; returns the
/// body.
async fn poll_health(reg: &Reg, limit: Duration, done: impl Fn(u16, &str) -> bool) -> String {
    let url = format!(
        "{}/debug/health",
        reg.server.debug_url.as_ref().expect("debug server")
    );
    let deadline = Instant::now() + limit;
    loop {
        let r = reqwest::get(&url).await.expect("debug health");
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/debug/health never became as wanted: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/debug/health` until it answers `status`.
async fn wait_health(reg: &Reg, status: u16, limit: Duration) -> String {
    poll_health(reg, limit, |got, _| got == status).await
}

#[tokio::test]
async fn a_broken_storage_fails_health_past_the_threshold_and_recovers() {
    let reg = start("health:\n  storagedriver: {enabled: true, interval: 100ms, threshold: 3}\n");
    reg.push_image("ops/health", "v1", "health").await;
    assert_eq!(wait_health(&reg, 200, Duration::from_secs(5)).await, "{}");

    // Replace the registry root with a file: listing it fails (the test runs as root, so
    // permissions cannot make it unreadable).
    let v2 = reg.dir.path().join("data/docker/registry/v2");
    let aside = reg.dir.path().join("data/docker/registry/v2.aside");
    std::fs::rename(&v2, &aside).expect("move storage aside");
    std::fs::write(&v2, b"not a directory").expect("plant a file");

    let broken_at = Instant::now();
    let body = wait_health(&reg, 503, Duration::from_secs(10)).await;
    let failures: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        failures["storagedriver_filesystem"].is_string(),
        "the failing check is named as in registry:2: {body}"
    );
    assert!(
        broken_at.elapsed() >= Duration::from_millis(200),
        "three failed polls 100 ms apart cannot complete at once"
    );
    reg.get("/v2/").await.assert_error(503, "UNAVAILABLE");
    reg.get("/v2/ops/health/manifests/v1")
        .await
        .assert_error(503, "UNAVAILABLE");
    let (status, _) = reg.server.get("/readyz");
    assert_eq!(status, 503, "readiness follows the health checks");
    let (status, _) = reg.server.get("/healthz");
    assert_eq!(
        status, 200,
        "liveness does not: a restart would not fix the disk"
    );

    std::fs::remove_file(&v2).expect("remove the file");
    std::fs::rename(&aside, &v2).expect("put storage back");
    assert_eq!(wait_health(&reg, 200, Duration::from_secs(5)).await, "{}");
    reg.get("/v2/ops/health/manifests/v1")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn file_and_tcp_checks_follow_registry2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = dir.path().join("maintenance");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let reg = start(&format!(
        "health:\n  file:\n    - {{file: {}, interval: 100ms}}\n  tcp:\n    - {{addr: \"{closed_addr}\", timeout: 1s, interval: 100ms, threshold: 1}}\n",
        down.display()
    ));
    let body = wait_health(&reg, 503, Duration::from_secs(5)).await;
    let failures: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        failures[closed_addr.to_string()],
        format!("connection to {closed_addr} failed")
    );
    assert!(
        failures.get(down.display().to_string()).is_none(),
        "the file does not exist yet: {body}"
    );
    std::fs::write(&down, b"").expect("create the file");
    let listener = tokio::net::TcpListener::bind(closed_addr)
        .await
        .expect("rebind the address");
    let body = wait_for(&reg, |b| {
        b.contains("file exists") && !b.contains("connection to")
    })
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("json")[down.display().to_string()],
        "file exists"
    );
    std::fs::remove_file(&down).expect("remove the file");
    assert_eq!(wait_health(&reg, 200, Duration::from_secs(5)).await, "{}");
    drop(listener);
}

/// Polls `/debug/health` until its body satisfies `done`.
async fn wait_for(reg: &Reg, done: impl Fn(&str) -> bool) -> String {
    poll_health(reg, Duration::from_secs(5), |_, body| done(body)).await
}

#[tokio::test]
async fn proxy_metrics_count_hits_misses_and_bytes() {
    let mut upstream = Reg::start("");
    let (manifest, _) = upstream.push_image("ops/cached", "v1", "proxied").await;
    let layer = b"layer of proxied";
    let layer_digest = sha256(layer);
    let mirror = start(&format!(
        "proxy: {{remoteurl: \"{}\"}}\n",
        upstream.server.url
    ));
    let before = Scrape::take(&mirror).await;

    let accept = [("accept", "application/vnd.oci.image.manifest.v1+json")];
    for _ in 0..2 {
        let r = mirror
            .send("GET", "/v2/ops/cached/manifests/v1", &accept, Vec::new())
            .await;
        r.assert_status(200);
        assert_eq!(r.text(), manifest);
    }
    for _ in 0..2 {
        let r = mirror
            .get(&format!("/v2/ops/cached/blobs/{layer_digest}"))
            .await;
        r.assert_status(200);
        assert_eq!(r.text().as_bytes(), layer);
    }
    // The upstream goes away: an uncached tag is an upstream error.
    upstream.server.child.kill().expect("stop the upstream");
    let _ = upstream.server.child.wait();
    let r = mirror
        .send("GET", "/v2/ops/cached/manifests/v2", &accept, Vec::new())
        .await;
    assert!(r.status >= 500, "nothing cached for v2: {}", r.status);

    let after = Scrape::take(&mirror).await;
    let moved = |name: &str, kind: &str| {
        after.value(name, &[("type", kind)]) - before.value(name, &[("type", kind)])
    };
    let (m, l) = (manifest.len() as f64, layer.len() as f64);
    assert_eq!(moved("registry_proxy_requests_total", "manifest"), 3.0);
    assert_eq!(moved("registry_proxy_misses_total", "manifest"), 1.0);
    assert_eq!(moved("registry_proxy_hits_total", "manifest"), 1.0);
    assert_eq!(moved("registry_proxy_pulled_bytes_total", "manifest"), m);
    assert_eq!(
        moved("registry_proxy_pushed_bytes_total", "manifest"),
        2.0 * m
    );
    assert_eq!(moved("registry_proxy_requests_total", "blob"), 2.0);
    assert_eq!(moved("registry_proxy_misses_total", "blob"), 1.0);
    assert_eq!(moved("registry_proxy_hits_total", "blob"), 1.0);
    assert_eq!(moved("registry_proxy_pulled_bytes_total", "blob"), l);
    assert_eq!(moved("registry_proxy_pushed_bytes_total", "blob"), 2.0 * l);
    assert!(
        after.value("berth_proxy_upstream_errors_total", &[]) >= 1.0,
        "the failed fetch of v2 is counted"
    );
}

#[tokio::test]
async fn usage_report_splits_unique_and_shared_bytes_in_cli_and_api() {
    let reg = start("");
    // The same seed gives the same config and layer: the two repositories share both.
    let (m1, _) = reg.push_image("team/one", "v1", "shared").await;
    let (m2, _) = reg.push_image("team/two", "v1", "shared").await;
    assert_eq!(m1, m2);
    let (m3, _) = reg.push_image("team/two", "v2", "own").await;
    let config_len = r#"{"architecture":"amd64","os":"linux","seed":"shared"}"#.len() as u64;
    let layer_len = "layer of shared".len() as u64;
    let own_len = (r#"{"architecture":"amd64","os":"linux","seed":"own"}"#.len()
        + "layer of own".len()
        + m3.len()) as u64;

    let r = reg.get("/v2/_berth/usage").await;
    r.assert_status(200);
    let api = r.json();
    let repo = |name: &str| {
        api["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let shared = config_len + layer_len + m1.len() as u64;
    assert_eq!(repo("team/one")["unique_bytes"], 0);
    assert_eq!(repo("team/one")["shared_bytes"], shared);
    assert_eq!(repo("team/two")["unique_bytes"], own_len);
    assert_eq!(repo("team/two")["shared_bytes"], shared);
    assert_eq!(repo("team/two")["tags"], 2);
    assert_eq!(api["unreferenced_blobs"], 0);
    assert_eq!(api["bytes"], shared + own_len);

    let out = common::berth(&["du", &reg.config], &[]);
    assert!(out.status.success());
    let text = common::text(&out.stdout);
    assert!(text.starts_with("REPOSITORY"), "{text}");
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("team/two")),
        "largest first: {text}"
    );
    let out = common::berth(&["du", "--json", &reg.config], &[]);
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, api, "the CLI and the API report the same");
}

#[tokio::test]
async fn online_gc_runs_and_freed_bytes_are_counted() {
    // `storage` is already in the base config: the GC settings come from the environment.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "");
    let server = common::Server::start(
        &[&config],
        &[(
            "REGISTRY_STORAGE_MAINTENANCE_GC",
            "{enabled: true, interval: 200ms, delay: 1ms}",
        )],
    );
    let reg = Reg {
        api: common::oci::Api::new(&server.url),
        server,
        dir,
        config,
    };
    let orphan = b"a blob no manifest will ever use";
    reg.push_blob("ops/gc", orphan).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = Scrape::take(&reg).await;
        let freed = scrape.value("berth_gc_bytes_freed_total", &[]);
        if freed >= orphan.len() as f64 {
            assert!(scrape.value("berth_gc_runs_total", &[("result", "ok")]) >= 2.0);
            assert!(scrape.value("berth_gc_blobs_trashed_total", &[]) >= 1.0);
            assert!(scrape.value("berth_gc_blobs_deleted_total", &[]) >= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "the orphan was never collected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
