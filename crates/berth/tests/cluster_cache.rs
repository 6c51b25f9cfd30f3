//! Pull-through cache nodes on one bucket (Garage) in front of one upstream (docker-registry
//! behind a proxy that counts requests and can slow bodies down).
//!
//! Berth does not coordinate fetches across nodes: each node has its own single flight (one
//! download per blob however many of its clients wait, `crates/proxy/src/blob.rs`), and a node
//! that finds the blob already stored by another serves it from the bucket. So a cold blob
//! requested on three nodes at once is fetched at most once per node, three times at most,
//! and every copy each node writes is verified before it is published, so the concurrent
//! writes of one key all carry the same bytes. A node killed mid-fetch leaves no object at the
//! blob's data path (its S3 write is a multipart upload, invisible until completed), no link,
//! and another node then fetches and serves the blob. Servers are started on 127.0.0.1 by
//! `scripts/s3-test-servers.sh`; without them or docker-registry the tests skip, except under
//! `CI=true`.
#![allow(missing_docs, clippy::unwrap_used)]

mod cluster_cache_kit;
mod cluster_kit;
mod common;
mod mirror_kit;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;

use cluster_cache_kit::*;
use cluster_kit::*;
use futures_util::StreamExt;
use mirror_kit::{have_registry2, Mode};

/// Clients per node pulling the cold blob at once.
const CLIENTS_PER_NODE: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_blob_pulled_on_three_nodes_at_once_is_fetched_at_most_once_per_node() {
    if !have_registry2() {
        return;
    }
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-cache-cold") else {
        return;
    };
    let up = Upstream::start(12 << 20, 3).await;
    start_cache_nodes(&mut c, &up, &["a", "b", "c"]);
    for i in 0..3 {
        let m = c
            .node(i)
            .get(&format!("/v2/{CLIENT_REPO}/manifests/1"))
            .await;
        m.assert_status(200);
    }
    let (data_path, link_path) = layer_paths(&up.digest);
    assert!(!object_exists(&c.server, &c.root, &data_path).await, "cold");

    // About 1.5 s per download, so that every node's clients arrive while it runs.
    up.proxy.set(Mode::Slow(8192));
    let mut pulls = Vec::new();
    for round in 0..CLIENTS_PER_NODE {
        for i in 0..3 {
            let url = format!("{}/v2/{CLIENT_REPO}/blobs/{}", c.node(i).url, up.digest);
            let want = up.layer.clone();
            pulls.push(tokio::spawn(async move {
                // Spread over the first 150 ms, interleaving the nodes.
                tokio::time::sleep(Duration::from_millis((round * 3 + i) as u64 * 12)).await;
                (i, pull_and_compare(url, want).await)
            }));
        }
    }
    let mut failures = Vec::new();
    for p in pulls {
        let (node, result) = p.await.unwrap();
        if let Err(e) = result {
            failures.push(format!("node {node}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "incomplete or wrong responses: {failures:#?}"
    );
    let gets = up.blob_gets();
    eprintln!(
        "{} concurrent pulls of a cold {} MiB blob on 3 nodes: {gets} upstream GET(s) of the blob",
        CLIENTS_PER_NODE * 3,
        up.layer.len() >> 20
    );
    assert!(
        (1..=3).contains(&gets),
        "at most one upstream GET per node, got {gets}: {:#?}",
        up.proxy.seen()
    );
    let registry_gets = up
        .registry
        .requests("GET", &format!("/v2/{UPSTREAM_REPO}/blobs/{}", up.digest));
    assert_eq!(registry_gets, gets, "the upstream's own access log agrees");

    // What each node did with its copy: on Garage the newest of overlapping writes of one key
    // wins and the others' completions fail; a node whose write lost serves its clients anyway.
    for i in 0..3 {
        let outcome: Vec<String> = c
            .node(i)
            .server
            .logs(Duration::from_millis(50))
            .into_iter()
            .filter(|l| {
                l.contains("blob cached") || l.contains("not cached") || l.contains("fetching blob")
            })
            .collect();
        eprintln!("node {i}: {outcome:#?}");
    }

    // Stored once, verified: every node now serves it from the bucket, upstream down.
    assert!(object_exists(&c.server, &c.root, &data_path).await);
    assert!(object_exists(&c.server, &c.root, &link_path).await);
    up.proxy.set(Mode::Status(500));
    for i in 0..3 {
        let url = format!("{}/v2/{CLIENT_REPO}/blobs/{}", c.node(i).url, up.digest);
        pull_and_compare(url, up.layer.clone())
            .await
            .unwrap_or_else(|e| panic!("node {i} after the fetch: {e}"));
    }
    assert_eq!(up.blob_gets(), gets, "no further upstream GET");
}

/// kill -9 of the node fetching a large blob from a slow upstream: nothing at the blob's data
/// path or its link, then another node fetches it and serves it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_fetch_leaves_nothing_partial_and_another_node_serves_the_blob() {
    if !have_registry2() {
        return;
    }
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-cache-kill") else {
        return;
    };
    // Larger than a few S3 parts, so the killed node's write is a multipart upload under way.
    let up = Upstream::start(32 << 20, 9).await;
    start_cache_nodes(&mut c, &up, &["a", "b", "c"]);
    c.node(0)
        .get(&format!("/v2/{CLIENT_REPO}/manifests/1"))
        .await
        .assert_status(200);
    let (data_path, link_path) = layer_paths(&up.digest);

    up.proxy.set(Mode::Slow(2048));
    let url = format!("{}/v2/{CLIENT_REPO}/blobs/{}", c.node(0).url, up.digest);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut got = 0usize;
    // 12 MiB in: past the first S3 parts (5 MiB minimum), about 6 s at 2 MiB/s.
    while got < 12 << 20 {
        let chunk = stream.next().await.unwrap().unwrap();
        assert!(
            chunk[..] == up.layer[got..got + chunk.len()],
            "bytes before the kill"
        );
        got += chunk.len();
    }
    c.kill(0);
    let rest = async {
        while let Some(chunk) = stream.next().await {
            chunk?;
        }
        Ok::<(), reqwest::Error>(())
    };
    assert!(
        rest.await.is_err(),
        "the response of the killed node cannot end complete"
    );
    assert_eq!(up.blob_gets(), 1);

    // Nothing partial in the bucket.
    for path in [&data_path, &link_path] {
        assert!(
            !object_exists(&c.server, &c.root, path).await,
            "{path} exists after the node fetching it was killed"
        );
    }
    // The other nodes do not serve what the dead node never finished...
    let head = c
        .node(1)
        .head(&format!("/v2/{CLIENT_REPO}/blobs/{}", up.digest))
        .await;
    assert_eq!(head.status, 200, "a HEAD asks the upstream for the size");
    assert_eq!(up.blob_gets(), 1, "a HEAD downloads nothing");

    // ...and fetch it whole themselves.
    up.proxy.set(Mode::Pass);
    let url = format!("{}/v2/{CLIENT_REPO}/blobs/{}", c.node(1).url, up.digest);
    pull_and_compare(url, up.layer.clone())
        .await
        .unwrap_or_else(|e| panic!("node b after the kill: {e}"));
    assert_eq!(up.blob_gets(), 2, "the second node fetched it again");
    assert!(object_exists(&c.server, &c.root, &data_path).await);
    assert!(object_exists(&c.server, &c.root, &link_path).await);
    let url = format!("{}/v2/{CLIENT_REPO}/blobs/{}", c.node(2).url, up.digest);
    pull_and_compare(url, up.layer.clone())
        .await
        .unwrap_or_else(|e| panic!("node c from the bucket: {e}"));
    assert_eq!(
        up.blob_gets(),
        2,
        "the third node served it from the bucket"
    );
}
