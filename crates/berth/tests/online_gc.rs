//! Online garbage collection in the real binary: `storage.maintenance.gc` set from the
//! environment with a tiny interval, pushes, mounts and deletes while it runs, `kill -9` at
//! random moments (so some kills land in the middle of a collection), restart over the same
//! data, and afterwards every image still pulls with blobs that hash to their digests.

mod common;

use std::time::{Duration, Instant};

use common::oci::{descriptor, image_manifest, sha256, Api, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use common::{write_config, Server};

const GC: (&str, &str) = (
    "REGISTRY_STORAGE_MAINTENANCE_GC",
    "{enabled: true, interval: 50ms, delay: 1s}",
);

/// An image the test pushed: repository, tag, manifest digest, blobs with their content.
struct Image {
    repo: String,
    tag: String,
    manifest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

async fn push_image(api: &Api, repo: &str, tag: &str, seed: &str, shared: &[u8]) -> Image {
    let config = format!(r#"{{"os":"linux","seed":"{seed}"}}"#).into_bytes();
    let layer = format!("layer of {seed}").repeat(64).into_bytes();
    for blob in [&config, &layer] {
        api.push_blob(repo, blob).await;
    }
    // A layer every image uses, mounted when the repository does not have it yet.
    let mount = api
        .send(
            "POST",
            &format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from=gc/base",
                sha256(shared)
            ),
            &[],
            Vec::new(),
        )
        .await;
    if mount.status != 201 {
        api.push_blob(repo, shared).await;
    }
    let body = image_manifest(
        OCI_MANIFEST,
        descriptor(OCI_CONFIG, &config),
        &[descriptor(OCI_LAYER, &layer), descriptor(OCI_LAYER, shared)],
    );
    let manifest = api.push_manifest(repo, tag, OCI_MANIFEST, &body).await;
    Image {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        manifest,
        blobs: vec![
            (sha256(&config), config),
            (sha256(&layer), layer),
            (sha256(shared), shared.to_vec()),
        ],
    }
}

/// Pulls the image by tag and every blob, checking digests; returns what went wrong.
async fn check(api: &Api, image: &Image) -> Vec<String> {
    let mut problems = Vec::new();
    let r = api
        .send(
            "GET",
            &format!("/v2/{}/manifests/{}", image.repo, image.tag),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    if r.status != 200 || sha256(&r.body) != image.manifest {
        problems.push(format!(
            "{}:{} manifest: {}",
            image.repo, image.tag, r.status
        ));
    }
    for (digest, content) in &image.blobs {
        let r = api.get(&format!("/v2/{}/blobs/{digest}", image.repo)).await;
        if r.status != 200 || &r.body != content {
            problems.push(format!("{}@{digest}: {}", image.repo, r.status));
        }
    }
    problems
}

#[tokio::test]
async fn kill_9_during_online_gc_loses_nothing_referenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let start = || Server::start(&[&config], &[GC]);
    let mut server = start();
    let mut api = Api::new(&server.url);
    let shared = b"a base layer shared by every image".repeat(100);
    api.push_blob("gc/base", &shared).await;

    let mut images: Vec<Image> = Vec::new();
    let mut kills = 0;
    let mut gc_runs_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut round = 0u32;
    while Instant::now() < deadline {
        round += 1;
        // Garbage for the collector: orphans, and images deleted again.
        for i in 0..40 {
            api.push_blob(
                &format!("gc/r{}", i % 3),
                format!("orphan {round} {i}").as_bytes(),
            )
            .await;
        }
        for i in 0..3 {
            let repo = format!("gc/r{i}");
            let image = push_image(
                &api,
                &repo,
                &format!("v{round}"),
                &format!("{round}-{i}"),
                &shared,
            )
            .await;
            if i == 0 && round.is_multiple_of(2) {
                let r = api
                    .delete(&format!("/v2/{repo}/manifests/{}", image.manifest))
                    .await;
                assert_eq!(r.status, 202, "delete");
            } else {
                images.push(image);
            }
        }
        // Kill at a random moment: collections run every 50 ms and take a while.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        tokio::time::sleep(Duration::from_millis(300 + u64::from(nanos % 900))).await;
        gc_runs_seen += server
            .logs(Duration::ZERO)
            .iter()
            .filter(|l| l.contains("online garbage collection done"))
            .count();
        server.signal("-KILL");
        assert!(
            server.wait(Duration::from_secs(10)).is_some(),
            "berth did not die"
        );
        kills += 1;
        server = start();
        api = Api::new(&server.url);
        for image in &images {
            let problems = check(&api, image).await;
            assert!(problems.is_empty(), "after kill {kills}: {problems:?}");
        }
    }
    // Let the restarted server collect a few more times, past the delay, then check again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for image in &images {
        let problems = check(&api, image).await;
        assert!(problems.is_empty(), "at the end: {problems:?}");
    }
    let logs = server.logs(Duration::from_millis(100));
    let done: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("online garbage collection done"))
        .collect();
    gc_runs_seen += done.len();
    let trash = dir.path().join("data/docker/registry/v2/_berth/trash");
    println!(
        "{kills} kills during {round} rounds; {gc_runs_seen} collections logged; {} images verified; last run: {}",
        images.len(),
        done.last().map_or("none", |l| l.as_str())
    );
    assert!(
        kills >= 5 && gc_runs_seen > kills,
        "collections ran between kills"
    );
    assert!(trash.exists(), "the collector used its trash");
}
