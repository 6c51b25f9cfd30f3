//! The pull-through cache when things go wrong, with Debian's docker-registry as the upstream
//! behind a fault-injecting proxy run by the test: 429/403/500/hang answered with stale
//! content within the timeout; 20 clients pulling one cold 100 MiB blob cause one upstream
//! GET and get the right bytes with flat memory; SIGKILL in the middle of a cold pull leaves
//! nothing partial visible and the next pull succeeds.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod mirror_kit;

use std::time::{Duration, Instant};

use common::oci::{sha256, Reg};
use common::process::peak_rss_kib;
use futures_util::StreamExt;
use mirror_kit::{
    data, files_containing, have_registry2, push_image, upstreams_yaml, Mode, Registry2, TestProxy,
};
use serde_json::Value;

fn layers_of(manifest: &str) -> Vec<String> {
    let m: Value = serde_json::from_str(manifest).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_serve_stale_content_within_the_timeout() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let (body, digest) = push_image(&up.api(), "library/app", "1", &[data(100_000, 1)], None).await;
    let faults = TestProxy::reverse(&up.url).await;
    let mut reg = Reg::start(&upstreams_yaml(
        &[("docker.io", &faults.url(), "ttl: 0s, timeout: 1500ms")],
        "  default: docker.io\n",
    ));
    let warm = reg.get("/v2/app/manifests/1").await;
    warm.assert_status(200);
    let layer = layers_of(&body).pop().unwrap();
    reg.get(&format!("/v2/app/blobs/{layer}"))
        .await
        .assert_status(200);

    for mode in [
        Mode::Status(429),
        Mode::Status(403),
        Mode::Status(500),
        Mode::Status(401),
        Mode::Hang,
    ] {
        // A restart forgets that the upstream failed before, so each fault is really met.
        reg = reg.restart();
        faults.set(mode);
        let before = faults.seen().len();
        let started = Instant::now();
        let r = reg.get("/v2/app/manifests/1").await;
        let took = started.elapsed();
        r.assert_status(200);
        assert_eq!(r.text(), body, "{mode:?}");
        assert_eq!(r.header("docker-content-digest"), digest);
        assert!(
            took < Duration::from_millis(3000),
            "{mode:?}: stale answer took {took:?}"
        );
        assert!(
            faults.seen().len() > before,
            "{mode:?}: the upstream was asked"
        );
        let r = reg.get(&format!("/v2/app/manifests/{digest}")).await;
        r.assert_status(200);
        let r = reg.get(&format!("/v2/app/blobs/{layer}")).await;
        r.assert_status(200);
        assert_eq!(sha256(&r.body), layer);
        // The next pulls skip the failing upstream for a while: no timeout paid twice.
        let started = Instant::now();
        reg.get("/v2/app/manifests/1").await.assert_status(200);
        assert!(started.elapsed() < Duration::from_millis(500), "{mode:?}");
        let logs = reg.server.logs(Duration::from_millis(50)).join("\n");
        assert!(logs.contains("stale-if-error"), "{mode:?}: {logs}");
    }
    // Never-cached content fails with the upstream's meaning, within bounded time.
    reg = reg.restart();
    for (mode, status, code) in [
        (Mode::Status(429), 429, "TOOMANYREQUESTS"),
        (Mode::Status(500), 502, "UNKNOWN"),
        (Mode::Status(404), 404, "MANIFEST_UNKNOWN"),
    ] {
        faults.set(mode);
        let started = Instant::now();
        let r = reg.get("/v2/app/manifests/never").await;
        r.assert_error(status, code);
        assert!(started.elapsed() < Duration::from_secs(8), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_pulling_one_cold_100mib_blob_cause_one_upstream_get() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let big = data(100 << 20, 42);
    let (body, _) = push_image(
        &up.api(),
        "library/big",
        "1",
        std::slice::from_ref(&big),
        None,
    )
    .await;
    let layer = layers_of(&body).pop().unwrap();
    let reg = Reg::start(&upstreams_yaml(
        &[("docker.io", &up.url, "")],
        "  default: docker.io\n",
    ));
    reg.get("/v2/big/manifests/1").await.assert_status(200);

    let big = std::sync::Arc::new(big);
    let url = format!("{}/v2/big/blobs/{layer}", reg.url);
    let mut clients = Vec::new();
    for i in 0..20u64 {
        let (url, big) = (url.clone(), big.clone());
        clients.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 20)).await;
            let response = reqwest::get(&url).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.content_length(), Some(big.len() as u64));
            let mut stream = response.bytes_stream();
            let mut pos = 0usize;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap();
                assert!(
                    chunk[..] == big[pos..pos + chunk.len()],
                    "client {i}: bytes differ at {pos}"
                );
                pos += chunk.len();
            }
            assert_eq!(pos, big.len(), "client {i}");
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        up.requests("GET", &format!("/v2/library/big/blobs/{layer}")),
        1,
        "one upstream GET for 20 clients"
    );
    // Cached and verified: the next pull comes from storage.
    let r = reg.get(&format!("/v2/big/blobs/{layer}")).await;
    assert_eq!(sha256(&r.body), layer);
    assert_eq!(
        up.requests("GET", &format!("/v2/library/big/blobs/{layer}")),
        1
    );
    let peak = peak_rss_kib(reg.server.child.id());
    assert!(
        peak < 200 * 1024,
        "memory must stay flat: peak RSS {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_cold_pull_leaves_nothing_partial() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let big = data(24 << 20, 7);
    let (body, _) = push_image(
        &up.api(),
        "library/big",
        "1",
        std::slice::from_ref(&big),
        None,
    )
    .await;
    let layer = layers_of(&body).pop().unwrap();
    let faults = TestProxy::reverse(&up.url).await;
    let reg = Reg::start(&upstreams_yaml(
        &[("docker.io", &faults.url(), "")],
        "  default: docker.io\n",
    ));
    reg.get("/v2/big/manifests/1").await.assert_status(200);

    faults.set(Mode::Slow(2048));
    let response = reqwest::get(format!("{}/v2/big/blobs/{layer}", reg.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut got = 0;
    while got < 2 << 20 {
        got += stream.next().await.unwrap().unwrap().len();
    }
    reg.server.signal("-KILL");
    drop(stream);
    std::thread::sleep(Duration::from_millis(200));

    // Nothing of the blob is visible: no blob data, no layer link.
    let hex = layer.trim_start_matches("sha256:");
    let visible: Vec<_> = files_containing(reg.dir.path(), hex)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/_uploads/"))
        .collect();
    assert!(visible.is_empty(), "partial blob visible: {visible:?}");

    faults.set(Mode::Pass);
    let reg = reg.restart();
    reg.head(&format!("/v2/big/blobs/{layer}"))
        .await
        .assert_status(200);
    let r = reg.get(&format!("/v2/big/blobs/{layer}")).await;
    r.assert_status(200);
    assert!(r.body == big, "the next pull gets the whole blob");
    // Now it is cached: served without the upstream.
    faults.set(Mode::Status(500));
    let r = reg.get(&format!("/v2/big/blobs/{layer}")).await;
    assert_eq!(sha256(&r.body), layer);
}
