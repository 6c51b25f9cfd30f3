//! What works on the filesystem works on S3, part 1: the storage lifecycle with the real
//! binary on Garage (started on 127.0.0.1 by `scripts/s3-test-servers.sh`, one for the whole
//! file, each test under its own `rootdirectory`): online garbage collection (trash, purge, a
//! re-push in the grace window), offline `garbage-collect` dry and real runs, `retention`,
//! upload purging, and overlapping pushes of one large blob. What is stored is checked in the
//! bucket directly. Part 2 is `s3_operations.rs`.
//! Without Garage the tests skip, except under `CI=true`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;
mod s3_lifecycle_kit;

use s3_lifecycle_kit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_gc_trashes_then_removes_orphans_and_keeps_what_is_used() {
    let Some(b) = Bucket::new("/online-gc") else {
        return;
    };
    let reg = b.start("  maintenance:\n    gc: {enabled: true, interval: 250ms, delay: 2s}\n");
    let name = "gc/app";
    let (_, kept_manifest) = reg.push_image(name, "v1", "kept").await;
    // Over S3's 5 MiB part size: stored by multipart upload, trashed and restored by copy.
    let orphan = b"a blob no manifest will use\n".repeat(230_000);
    let repushed = b"an orphan pushed again while in the trash\n".repeat(150_000);
    for blob in [&orphan, &repushed] {
        reg.push_blob(name, blob).await;
    }
    // Both unused blobs go to the trash: gone from blobs/, kept under _berth/trash/.
    let deadline = Deadline::after(Duration::from_secs(30));
    for blob in [&orphan, &repushed] {
        while b.has_blob(blob).await || b.trashed(blob).await.is_empty() {
            deadline.tick("an unused blob moved to the trash").await;
        }
    }
    // A client pushes one of them again within the grace window, then a manifest using it.
    reg.push_blob(name, &repushed).await;
    assert!(b.has_blob(&repushed).await, "a re-push puts it back");
    let config = br#"{"os":"linux","seed":"repushed"}"#;
    reg.push_blob(name, config).await;
    let body = image_manifest(
        OCI_MANIFEST,
        descriptor(OCI_CONFIG, config),
        &[descriptor(OCI_LAYER, &repushed)],
    );
    reg.push_manifest(name, "v2", OCI_MANIFEST, &body).await;
    // The orphan is deleted for good after `delay` in the trash; the re-pushed blob's trash
    // entry goes too (it is restored or dropped, the blob being under blobs/ again).
    let deadline = Deadline::after(Duration::from_secs(30));
    while b.has_blob(&orphan).await
        || !b.trashed(&orphan).await.is_empty()
        || !b.trashed(&repushed).await.is_empty()
    {
        deadline.tick("the orphan deleted from the trash").await;
    }
    // More runs, past twice the delay: everything a manifest uses is still there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let [c, l] = image_blobs("kept");
    for blob in [&c, &l, &repushed, &config.to_vec()] {
        assert!(
            b.has_blob(blob).await,
            "{} kept in the bucket",
            sha256(blob)
        );
        assert_pulls(&reg, name, blob).await;
    }
    for reference in [kept_manifest.as_str(), "v2"] {
        let r = get_manifest(&reg, name, reference).await;
        r.assert_status(200);
    }
    reg.get(&format!("/v2/{name}/blobs/{}", sha256(&orphan)))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    let scrape = Scrape::take(&reg).await;
    assert!(scrape.value("berth_gc_blobs_trashed_total", &[]) >= 2.0);
    assert!(scrape.value("berth_gc_blobs_deleted_total", &[]) >= 1.0);
    assert!(scrape.value("berth_gc_bytes_freed_total", &[]) >= orphan.len() as f64);
    assert_eq!(
        scrape.value("berth_gc_runs_total", &[("result", "failed")]),
        0.0
    );
}

/// Two clients pushing the same blob of more than one part at once both succeed, as on the
/// filesystem. On Garage the newer of two overlapping writes of one key aborts the older
/// multipart upload, whose completion then fails (`NoSuchUpload`): the online collector
/// restoring a blob from the trash (a copy) while a client pushed it again got the client a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_pushes_of_one_large_blob_both_succeed() {
    let Some(b) = Bucket::new("/overlap") else {
        return;
    };
    let reg = b.start("");
    let name = "overlap/app";
    let blob = b"one layer pushed by two clients at once\n".repeat(160_000);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let api = Api::new(&reg.url);
    let path = format!("/v2/{name}/blobs/uploads/?digest={}", sha256(&blob));
    let first = tokio::spawn(async move {
        api.send(
            "POST",
            &path,
            &[("content-type", "application/octet-stream")],
            body,
        )
        .await
    });
    // More than one part: the first client's multipart upload is under way.
    let split = (5 << 20) + 4096;
    tx.send(Ok(Bytes::copy_from_slice(&blob[..split])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A second client pushes the whole blob meanwhile: a newer write of the same key.
    reg.push_blob(name, &blob).await;
    tx.send(Ok(Bytes::copy_from_slice(&blob[split..])))
        .await
        .unwrap();
    drop(tx);
    let r = first.await.unwrap();
    assert_eq!(
        r.status,
        201,
        "{}\n{}",
        r.text(),
        reg.server.logs(Duration::from_millis(200)).join("\n")
    );
    assert_pulls(&reg, name, &blob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_garbage_collect_dry_run_then_real_run_on_the_bucket() {
    let Some(b) = Bucket::new("/offline-gc") else {
        return;
    };
    let reg = b.start("");
    let name = "gc/offline";
    let (_, keep) = reg.push_image(name, "v1", "keep").await;
    let (gone_body, gone) = reg.push_image(name, "gone", "gone").await;
    assert_eq!(
        reg.delete(&format!("/v2/{name}/manifests/gone"))
            .await
            .status,
        202
    );
    let orphan = b"an orphan for the offline collector".to_vec();
    reg.push_blob(name, &orphan).await;
    // Offline, as with registry:2: the registry is stopped.
    let Reg {
        server,
        dir,
        config,
        ..
    } = reg;
    drop(server);

    let [gone_config, gone_layer] = image_blobs("gone");
    let freed = gone_config.len() + gone_layer.len() + gone_body.len() + orphan.len();
    let gc = |dry_run: bool| {
        let mut args = vec!["garbage-collect", "--delete-untagged"];
        if dry_run {
            args.push("--dry-run");
        }
        args.push(&config);
        ok_stdout(&args)
    };
    let dry = gc(true);
    assert_eq!(
        dry.lines().last(),
        Some(format!("3 blobs marked, 4 blobs and 1 manifests eligible for deletion, {freed} bytes would be freed").as_str()),
        "{dry}"
    );
    for line in [
        format!("{name}: marking manifest {keep}"),
        format!("{name}: would remove manifest {gone}"),
        format!("would remove blob {gone} ({} bytes)", gone_body.len()),
        format!(
            "would remove blob {} ({} bytes)",
            sha256(&orphan),
            orphan.len()
        ),
    ] {
        assert!(dry.lines().any(|l| l == line), "{line} missing: {dry}");
    }
    assert!(b.has_blob(&orphan).await, "a dry run removes nothing");

    let real = gc(false);
    assert_eq!(
        real.lines().last(),
        Some(
            format!("3 blobs marked, 4 blobs and 1 manifests deleted, {freed} bytes freed")
                .as_str()
        ),
        "{real}"
    );
    let body = |out: &str| -> Vec<String> {
        let lines: Vec<&str> = out.lines().collect();
        lines[..lines.len() - 1]
            .iter()
            .map(|l| l.replace("would remove", "removed"))
            .collect()
    };
    assert_eq!(
        body(&dry),
        body(&real),
        "the dry run names what the run removes"
    );
    assert_eq!(
        gc(true).lines().last(),
        Some(
            "3 blobs marked, 0 blobs and 0 manifests eligible for deletion, 0 bytes would be freed"
        )
    );
    for blob in [&gone_config, &gone_layer, &orphan] {
        assert!(!b.has_blob(blob).await, "{} removed", sha256(blob));
    }

    let reg = Reg::start_in(dir, config);
    for blob in image_blobs("keep") {
        assert_pulls(&reg, name, &blob).await;
    }
    get_manifest(&reg, name, "v1").await.assert_status(200);
    get_manifest(&reg, name, &gone)
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keep_last_dry_run_then_real_run() {
    let Some(b) = Bucket::new("/retention") else {
        return;
    };
    let reg = b.start("");
    let name = "team/app";
    for t in ["b1", "b2", "b3", "b4"] {
        reg.push_image(name, t, &format!("{name}:{t}")).await;
    }
    reg.push_image("other/app", "x1", "other").await;
    let retention = |dry_run: bool| {
        let mut args = vec!["retention", "--repository", "team/**", "--keep-last", "2"];
        if dry_run {
            args.push("--dry-run");
        }
        args.push(&reg.config);
        ok_stdout(&args)
    };

    let dry = retention(true);
    let deletions: Vec<&str> = dry.lines().filter(|l| l.contains("would delete")).collect();
    assert_eq!(deletions.len(), 2, "{dry}");
    for (line, t) in deletions.iter().zip(["b1", "b2"]) {
        assert!(
            line.starts_with(&format!("{name}: would delete tag {t} "))
                && line.contains("not among the newest 2"),
            "{dry}"
        );
    }
    assert_eq!(tags(&reg, name).await, ["b1", "b2", "b3", "b4"], "dry run");

    let real = retention(false);
    for t in ["b1", "b2"] {
        assert!(
            real.contains(&format!("{name}: deleted tag {t} ")),
            "{real}"
        );
    }
    assert!(
        real.contains(
            "1 repositories checked, 2 tags kept, 2 tags and 0 untagged manifests deleted"
        ),
        "{real}"
    );
    assert_eq!(tags(&reg, name).await, ["b3", "b4"]);
    assert_eq!(tags(&reg, "other/app").await, ["x1"]);
    get_manifest(&reg, name, "b1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    get_manifest(&reg, name, "b3").await.assert_status(200);
    let tag_dir = format!("{}/_manifests/tags/b1", paths::repo_dir(&repo(name)));
    assert!(
        b.keys(&tag_dir).await.is_empty(),
        "the tag is gone from the bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_purging_removes_stale_sessions_and_keeps_fresh_ones() {
    let Some(b) = Bucket::new("/purging") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let no_purge = b.config(
        dir.path(),
        "config.yml",
        "  maintenance:\n    uploadpurging: {enabled: false}\n",
    );
    let purge = b.config(
        dir.path(),
        "purge.yml",
        "  maintenance:\n    uploadpurging: {enabled: true, age: 6s, interval: 1s, dryrun: false}\n",
    );
    let reg = Reg::start_in(dir, no_purge);
    let name = "purge/app";
    let session_keys = |location: &str| {
        let dir = paths::upload_dir(&repo(name), &session_id(location));
        let b = &b;
        async move { b.keys(&dir).await }
    };
    let stale = reg.start_upload(name).await;
    let stale = patch(&reg, &stale, 0, b"a chunk nobody finishes").await;
    let keys = session_keys(&stale).await;
    assert!(
        keys.iter().any(|k| k.ends_with("/berthstate"))
            && keys.iter().any(|k| k.contains("/berthparts/")),
        "a session is a state and its parts: {keys:?}"
    );
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let fresh = reg.start_upload(name).await;
    let first = b"the first chunk of a fresh upload";
    let fresh = patch(&reg, &fresh, 0, first).await;

    let Reg { server, dir, .. } = reg;
    drop(server);
    let reg = Reg::start_in(dir, purge);
    let deadline = Deadline::after(Duration::from_secs(20));
    let done = loop {
        let logs = reg.server.logs(Duration::ZERO);
        if let Some(line) = logs.iter().find(|l| l.contains("upload purge done")) {
            break line.clone();
        }
        deadline.tick("an upload purge").await;
    };
    assert!(
        done.contains("purged=1") && done.contains("kept=1"),
        "{done}"
    );
    assert!(
        session_keys(&stale).await.is_empty(),
        "stale session removed"
    );
    assert_eq!(session_keys(&fresh).await.len(), 2, "fresh session kept");
    reg.send(
        "PATCH",
        &stale,
        &[("content-type", "application/octet-stream")],
        b"more".to_vec(),
    )
    .await
    .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    // The fresh one finishes.
    let second = b" and the rest of it";
    let fresh = patch(&reg, &fresh, first.len(), second).await;
    let blob = [&first[..], &second[..]].concat();
    let sep = if fresh.contains('?') { '&' } else { '?' };
    reg.send(
        "PUT",
        &format!("{fresh}{sep}digest={}", sha256(&blob)),
        &[],
        Vec::new(),
    )
    .await
    .assert_status(201);
    assert_pulls(&reg, name, &blob).await;
}
