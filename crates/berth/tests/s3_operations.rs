//! What works on the filesystem works on S3, part 2 (part 1 is `s3_lifecycle.rs`), with the
//! real binary on Garage: read-only mode switched by `SIGHUP`, `berth du` and
//! `/v2/_berth/usage`, `export`/`import` through an OCI layout,
//! `registry_storage_action_seconds{driver="s3"}`, and `_catalog` from the repository index
//! with its rebuilds. Without Garage the tests skip, except under `CI=true`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;
mod s3_lifecycle_kit;

use s3_lifecycle_kit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_by_sighup_refuses_writes_and_serves_pulls() {
    let Some(b) = Bucket::new("/read-only") else {
        return;
    };
    let reg = b.start("");
    let name = "ro/app";
    let (manifest, digest) = reg.push_image(name, "v1", "read only").await;
    let session = reg.start_upload(name).await;
    let uploads = format!("/v2/{name}/blobs/uploads/");
    let refused_upload = || reg.send("POST", &uploads, &[], Vec::new());

    std::fs::write(
        &reg.config,
        b.yaml("  maintenance: {readonly: {enabled: true}}\n"),
    )
    .expect("write config");
    reg.server.signal("-HUP");
    let deadline = Deadline::after(Duration::from_secs(10));
    while refused_upload().await.status != 405 {
        deadline.tick("read-only mode after SIGHUP").await;
    }
    let r = refused_upload().await;
    r.assert_error(405, "UNSUPPORTED");
    assert!(r.text().contains("read-only"), "{}", r.text());
    let blob = b"pushed while read-only";
    reg.send(
        "POST",
        &format!("/v2/{name}/blobs/uploads/?digest={}", sha256(blob)),
        &[("content-type", "application/octet-stream")],
        blob.to_vec(),
    )
    .await
    .assert_error(405, "UNSUPPORTED");
    reg.send(
        "PATCH",
        &session,
        &[("content-type", "application/octet-stream")],
        blob.to_vec(),
    )
    .await
    .assert_error(405, "UNSUPPORTED");
    reg.put_manifest(name, "v2", OCI_MANIFEST, &manifest)
        .await
        .assert_error(405, "UNSUPPORTED");
    reg.delete(&format!("/v2/{name}/manifests/{digest}"))
        .await
        .assert_error(405, "UNSUPPORTED");
    assert!(!b.has_blob(blob).await, "nothing written");
    // Pulls go on.
    let r = get_manifest(&reg, name, "v1").await;
    r.assert_status(200);
    assert_eq!(r.text(), manifest);
    for blob in image_blobs("read only") {
        assert_pulls(&reg, name, &blob).await;
    }
    assert_eq!(tags(&reg, name).await, ["v1"]);
    assert_eq!(catalog(&reg).await, [name]);

    std::fs::write(&reg.config, b.yaml("")).expect("write config");
    reg.server.signal("-HUP");
    let deadline = Deadline::after(Duration::from_secs(10));
    while refused_upload().await.status != 202 {
        deadline.tick("writable again after SIGHUP").await;
    }
    reg.push_image(name, "v2", "after read-only").await;
    assert_eq!(tags(&reg, name).await, ["v1", "v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_report_totals_match_what_was_pushed() {
    let Some(b) = Bucket::new("/usage") else {
        return;
    };
    let reg = b.start("");
    // The same seed gives the same config and layer: the two repositories share both.
    let (m1, _) = reg.push_image("team/one", "v1", "shared").await;
    let (m2, _) = reg.push_image("team/two", "v1", "shared").await;
    assert_eq!(m1, m2);
    let (m3, _) = reg.push_image("team/two", "v2", "own").await;
    let orphan = b"pushed, never used".to_vec();
    reg.push_blob("team/one", &orphan).await;
    let len = |blobs: [Vec<u8>; 2]| (blobs[0].len() + blobs[1].len()) as u64;
    let shared = len(image_blobs("shared")) + m1.len() as u64;
    let own = len(image_blobs("own")) + m3.len() as u64;

    let r = reg.get("/v2/_berth/usage").await;
    r.assert_status(200);
    let api = r.json();
    let repo = |name: &str| {
        api["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {api}"))
            .clone()
    };
    assert_eq!(repo("team/one")["unique_bytes"], 0);
    assert_eq!(repo("team/one")["shared_bytes"], shared);
    assert_eq!(repo("team/two")["unique_bytes"], own);
    assert_eq!(repo("team/two")["shared_bytes"], shared);
    assert_eq!(repo("team/two")["manifests"], 2);
    assert_eq!(repo("team/two")["tags"], 2);
    assert_eq!(repo("team/two")["blobs"], 6);
    assert_eq!(api["blobs"], 7);
    assert_eq!(api["bytes"], shared + own + orphan.len() as u64);
    assert_eq!(api["unreferenced_blobs"], 1);
    assert_eq!(api["unreferenced_bytes"], orphan.len());

    let cli: serde_json::Value =
        serde_json::from_str(&ok_stdout(&["du", "--json", &reg.config])).expect("JSON");
    assert_eq!(cli, api, "the CLI and the API report the same");
    let table = ok_stdout(&["du", &reg.config]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("team/two")),
        "largest first: {table}"
    );
    assert!(table.contains("in 1 blobs no manifest uses"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trip_through_an_oci_layout() {
    let (Some(from), Some(to)) = (Bucket::new("/export"), Bucket::new("/import")) else {
        return;
    };
    let a = from.start("");
    let pushed = push_multi_arch(&a, "exp/app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout").display().to_string();
    // While the source registry serves.
    let out = ok_stdout(&["export", "-c", &a.config, "exp/app:v1", &layout]);
    assert!(
        out.contains(&format!("exported exp/app:v1 ({})", pushed.index))
            && out.contains(&format!("exported referrer {}", pushed.sig))
            && out.contains("4 manifests and 6 blobs"),
        "{out}"
    );
    for (digest, content) in &pushed.blobs {
        let file = Path::new(&layout).join("blobs/sha256").join(&digest[7..]);
        assert_eq!(&std::fs::read(&file).expect("layout blob"), content);
    }

    // Into an empty root, while that registry serves too.
    let b = to.start("");
    let out = ok_stdout(&["import", "-c", &b.config, &layout, "imp/app"]);
    assert!(
        out.contains(&format!("tagged imp/app:v1 ({})", pushed.index))
            && out.contains("imp/app: 4 manifests and 6 blobs"),
        "{out}"
    );
    assert_serves(&b, "imp/app", &pushed).await;
    for (_, content) in &pushed.blobs {
        assert!(to.has_blob(content).await, "blob stored in the bucket");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_action_metrics_are_labelled_s3() {
    let Some(b) = Bucket::new("/metrics") else {
        return;
    };
    let reg = b.start("");
    let name = "metrics/app";
    reg.push_image(name, "v1", "metrics").await;
    get_manifest(&reg, name, "v1").await.assert_status(200);
    let [_, layer] = image_blobs("metrics");
    assert_pulls(&reg, name, &layer).await;
    reg.head(&format!("/v2/{name}/blobs/{}", sha256(&layer)))
        .await
        .assert_status(200);
    let scrape = Scrape::take(&reg).await;
    let count =
        |labels: &[(&str, &str)]| scrape.value("registry_storage_action_seconds_count", labels);
    for action in [
        "Writer",
        "PutContent",
        "GetContent",
        "Stat",
        "Reader",
        "List",
    ] {
        assert!(
            count(&[("driver", "s3"), ("action", action)]) > 0.0,
            "no {action} timed for the s3 driver:\n{}",
            scrape.0
        );
    }
    assert_eq!(count(&[("driver", "filesystem")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_from_the_repository_index_and_its_rebuilds() {
    let Some(b) = Bucket::new("/catalog") else {
        return;
    };
    let reg = b.start("");
    let names = ["cat/a", "cat/b/c", "cat/d"];
    for name in names {
        reg.push_image(name, "v1", name).await;
    }
    // The first start on this root built the index (in the background).
    let complete = paths::catalog_index_complete();
    let deadline = Deadline::after(Duration::from_secs(20));
    while !b.exists(&complete).await {
        deadline.tick("the index marked complete").await;
    }
    for name in names {
        assert!(
            b.exists(&paths::catalog_index_entry(&repo(name))).await,
            "{name} indexed"
        );
    }
    assert_eq!(catalog(&reg).await, names);

    // Once complete, `_catalog` answers from the index alone: an entry removed behind
    // Berth's back (as when registry:2 creates a repository in the bucket) is not listed
    // until `berth catalog-index`, which is safe while serving.
    let d = paths::catalog_index_entry(&repo("cat/d"));
    b.delete(&d).await;
    wait_catalog(&reg, &["cat/a", "cat/b/c"]).await;
    let out = ok_stdout(&["catalog-index", &reg.config]);
    assert_eq!(out.trim(), "repository index rebuilt: 3 repositories");
    assert!(b.exists(&d).await);
    wait_catalog(&reg, &names).await;

    // Without the completion marker, the next start rebuilds the index.
    let Reg {
        server,
        dir,
        config,
        ..
    } = reg;
    drop(server);
    b.delete(&complete).await;
    b.delete(&d).await;
    let reg = Reg::start_in(dir, config);
    let deadline = Deadline::after(Duration::from_secs(20));
    while !(b.exists(&complete).await && b.exists(&d).await) {
        deadline.tick("the startup rebuild of the index").await;
    }
    assert_eq!(catalog(&reg).await, names);
}
