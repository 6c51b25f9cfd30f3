//! The pull-through cache in the real binary against a hostile upstream (the proxy crate's
//! fake upstream, on 127.0.0.1): a huge chunked manifest is refused with the usual "upstream
//! unavailable" answer while the server's peak memory stays flat, and a corrupt blob sent
//! without a length never reaches a client whole.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
// The proxy crate's scriptable upstream, with its hostile behaviours, rather than a third copy.
#[path = "../../proxy/tests/fake/mod.rs"]
mod fake;
mod mirror_kit;

use std::time::Duration;

use common::oci::Reg;
use common::process::peak_rss_kib;
use fake::Fake;
use futures_util::StreamExt;
use mirror_kit::upstreams_yaml;

const MIB: u64 = 1024 * 1024;

fn mirror_of(fake: &Fake) -> Reg {
    Reg::start(&upstreams_yaml(
        &[("docker.io", &fake.url(), "timeout: 5s")],
        "  default: docker.io\n",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_chunked_manifest_is_a_502_and_costs_no_memory() {
    let fake = Fake::start().await;
    let huge = 256 * MIB;
    fake.set(|b| b.huge_manifest = Some((huge, false)));
    let reg = mirror_of(&fake);
    // Warm up the request path so the baseline includes it.
    reg.get("/v2/").await.assert_status(200);
    let before = peak_rss_kib(reg.server.child.id());
    let r = reg.get("/v2/app/manifests/1").await;
    r.assert_error(502, "UNKNOWN");
    let after = peak_rss_kib(reg.server.child.id());
    eprintln!("peak RSS {before} KiB before, {after} KiB after");
    assert!(before > 0, "VmHWM readable");
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    let produced = fake.generated();
    assert!(
        produced < 64 * MIB,
        "the upstream produced {produced} of {huge} bytes"
    );
    let logs = reg.server.logs(Duration::from_millis(100)).join("\n");
    assert!(logs.contains("exceeds its size limit"), "{logs}");
    // Nothing was cached: a fixed upstream is asked again.
    fake.set(|b| b.huge_manifest = None);
    fake.image("library/app", "1", &[b"layer"]);
    reg.get("/v2/app/manifests/1").await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_chunked_blob_never_reaches_a_client_whole() {
    let fake = Fake::start().await;
    // A whole number of the spool's 256 KiB writes, so all of it could be sent early.
    let layer: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8).collect();
    let digest = fake.blob(&layer);
    fake.set(|b| {
        b.chunked = true;
        b.corrupt = true;
        b.slow_ms = 500;
    });
    let reg = mirror_of(&fake);
    let response = reqwest::get(format!("{}/v2/x/blobs/{digest}", reg.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut got = 0;
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the response must end in an error, not cleanly");
    assert!(
        got < layer.len(),
        "the client got all {got} bytes of a corrupt blob"
    );
}
