//! What each registry operation costs in S3 requests, counted at a proxy between Berth and
//! Garage (every HTTP request the store receives): the figures docs/scale-out.md gives for
//! pushes, pulls and the background traffic of a node. The bounds are what Berth does today
//! plus nothing: a change that adds requests to a push or a pull fails here and has to update
//! the documented figures on purpose.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
#[allow(dead_code)] // The fault switches are for s3_faults.rs; this file only counts.
mod s3_fault_kit;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;

use std::time::Duration;

use common::oci::{descriptor, image_manifest, sha256, Reg, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use s3_fault_kit::bench::{data, path_of, Bench};

/// The requests `step` makes, not counting the node's own background ones (the read-only
/// flag poll and the jobs lease, under `_berth/cluster/`).
async fn counted<F: AsyncFnOnce()>(b: &Bench, step: F) -> Vec<String> {
    let before = b.proxy.seen().len();
    step().await;
    b.proxy.seen()[before..]
        .iter()
        .filter(|r| !r.contains("_berth/cluster"))
        .cloned()
        .collect()
}

/// Waits until the node's startup rebuild of the repository index has written its completion
/// marker: that one-off write is startup work, not part of the first push it may overlap.
async fn wait_for_startup_index(b: &Bench) {
    for _ in 0..200 {
        if b.proxy
            .seen()
            .iter()
            .any(|r| r.starts_with("PUT ") && r.ends_with("/_berth/catalog-complete"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node did not finish indexing repositories within 10 s");
}

/// `GET` of tag `v1` of `name`, which must answer 200.
async fn get_manifest(reg: &Reg, name: &str) {
    let m = reg
        .send(
            "GET",
            &format!("/v2/{name}/manifests/v1"),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    m.assert_status(200);
}

fn show(what: &str, requests: &[String]) -> usize {
    eprintln!("{what}: {} requests", requests.len());
    for r in requests {
        eprintln!("    {r}");
    }
    requests.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_requests_per_push_and_pull() {
    let Some(b) = Bench::new("/costs").await else {
        return;
    };
    // The default poll interval: the idle traffic measured below is what a real node makes.
    let reg: Reg = b.berth_with("");
    wait_for_startup_index(&b).await;
    let name = "costs/app";
    let small = data(100 * 1024, 1);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let mut table = Vec::new();

    let r = counted(&b, async || {
        reg.push_blob(name, &small).await;
    })
    .await;
    table.push((
        "blob push, monolithic (POST ?digest=)",
        show("monolithic", &r),
        2,
    ));

    let chunked = data(3 * 1024, 2);
    let r = counted(&b, async || {
        let start = reg
            .send(
                "POST",
                &format!("/v2/{name}/blobs/uploads/"),
                &[],
                Vec::new(),
            )
            .await;
        start.assert_status(202);
        let mut url = path_of(start.header("location"));
        for (i, part) in chunked.chunks(1024).enumerate() {
            let range = format!("{}-{}", i * 1024, i * 1024 + part.len() - 1);
            let p = reg
                .send(
                    "PATCH",
                    &url,
                    &[
                        ("content-type", "application/octet-stream"),
                        ("content-range", &range),
                    ],
                    part.to_vec(),
                )
                .await;
            p.assert_status(202);
            url = path_of(p.header("location"));
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = reg
            .send(
                "PUT",
                &format!("{url}{sep}digest={}", sha256(&chunked)),
                &[],
                Vec::new(),
            )
            .await;
        put.assert_status(201);
    })
    .await;
    table.push(("blob push, POST + 3 PATCH + PUT", show("chunked", &r), 21));

    reg.push_blob(name, &config).await;
    let body = image_manifest(
        OCI_MANIFEST,
        descriptor(OCI_CONFIG, &config),
        &[
            descriptor(OCI_LAYER, &small),
            descriptor(OCI_LAYER, &chunked),
        ],
    );
    let r = counted(&b, async || {
        reg.push_manifest(name, "v1", OCI_MANIFEST, &body).await;
    })
    .await;
    table.push((
        "manifest PUT with a tag (2 layers + config)",
        show("manifest put", &r),
        13,
    ));

    let r = counted(&b, async || {
        let h = reg
            .head(&format!("/v2/{name}/blobs/{}", sha256(&small)))
            .await;
        h.assert_status(200);
    })
    .await;
    table.push((
        "blob HEAD (Docker's \"already exists?\")",
        show("blob head", &r),
        2,
    ));

    // Past the 1 s resolve cache: what a pull costs when nothing is cached.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let r = counted(&b, async || {
        get_manifest(&reg, name).await;
    })
    .await;
    table.push((
        "manifest GET by tag, cold",
        show("manifest get cold", &r),
        2,
    ));
    let r = counted(&b, async || {
        get_manifest(&reg, name).await;
    })
    .await;
    table.push((
        "manifest GET by tag, within 1 s",
        show("manifest get warm", &r),
        0,
    ));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let r = counted(&b, async || {
        let g = reg
            .get(&format!("/v2/{name}/blobs/{}", sha256(&small)))
            .await;
        g.assert_status(200);
    })
    .await;
    table.push(("blob GET through Berth, cold", show("blob get", &r), 3));

    // A node of a cluster (a `cluster` section) caches no resolution: every read sees what
    // any node wrote.
    let node = b.berth_with("cluster: {node: costs-2}\n");
    for round in ["first", "again within 1 s"] {
        let r = counted(&b, async || {
            get_manifest(&node, name).await;
        })
        .await;
        let label = if round == "first" {
            "cluster node: manifest GET by tag"
        } else {
            "cluster node: manifest GET by tag, again within 1 s"
        };
        // The first read on this node also fetches the manifest's bytes (kept by digest).
        let bound = if round == "first" { 3 } else { 2 };
        table.push((label, show(label, &r), bound));
    }
    let r = counted(&b, async || {
        let h = node
            .head(&format!("/v2/{name}/blobs/{}", sha256(&small)))
            .await;
        h.assert_status(200);
    })
    .await;
    table.push(("cluster node: blob HEAD", show("cluster blob head", &r), 2));
    drop(node);

    // A node's own traffic while idle: the read-only flag poll (every 2 s by default).
    let before = b.proxy.seen().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = b.proxy.seen()[before..].to_vec();
    eprintln!("idle 10 s: {} requests: {idle:?}", idle.len());
    assert!(
        idle.len() <= 7,
        "an idle node polls about every 2 s: {idle:?}"
    );

    eprintln!("| operation | S3 requests |");
    eprintln!("|---|---:|");
    for (what, n, _) in &table {
        eprintln!("| {what} | {n} |");
    }
    for (what, n, bound) in &table {
        assert!(
            n <= bound,
            "{what}: {n} requests, more than the documented {bound}"
        );
    }
}
