//! What works on the filesystem works on S3: the storage lifecycle with the real binary on
//! Garage (started on 127.0.0.1 by `scripts/s3-test-servers.sh`, one for the whole file, each
//! test under its own `rootdirectory`): online garbage collection (trash, purge, a re-push in
//! the grace window), offline `garbage-collect` dry and real runs, `retention`, upload purging,
//! read-only mode switched by `SIGHUP`, `berth du` and `/v2/_berth/usage`, `export`/`import`
//! through an OCI layout, `registry_storage_action_seconds{driver="s3"}`, `_catalog` from the
//! repository index with its rebuilds, and overlapping pushes of one large blob. What is stored
//! is checked in the bucket directly.
//! Without Garage the tests skip, except under `CI=true`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use berth_oci::{Digest, RepoName};
use berth_storage::s3::S3Driver;
use berth_storage::{paths, FileInfo, StorageDriver};
use bytes::Bytes;
use futures_util::TryStreamExt;

use common::metrics::Scrape;
use common::oci::{
    assert_serves, descriptor, image_manifest, push_multi_arch, sha256, Api, Reg, Resp, OCI_CONFIG,
    OCI_LAYER, OCI_MANIFEST,
};
use common::{berth, text};
use s3_kit::{Kind, TestServer};

/// The file's Garage: shared by the tests running at the same time, stopped (by the kit's
/// drop) when the last of them ends.
static GARAGE: Mutex<Weak<TestServer>> = Mutex::new(Weak::new());

/// One test's part of the bucket: its own root directory.
struct Bucket {
    server: Arc<TestServer>,
    root: String,
}

impl Bucket {
    /// `None` when Garage is missing (and not under CI).
    fn new(root: &str) -> Option<Bucket> {
        let mut shared = GARAGE.lock().unwrap_or_else(|e| e.into_inner());
        let server = match shared.upgrade() {
            Some(server) => server,
            None => {
                let server = Arc::new(TestServer::start(Kind::Garage)?);
                *shared = Arc::downgrade(&server);
                server
            }
        };
        Some(Bucket {
            server,
            root: root.to_owned(),
        })
    }

    /// A config for this root with redirects off (blob reads go through Berth), the debug
    /// server with metrics, plus `storage_extra` YAML under `storage`.
    fn yaml(&self, storage_extra: &str) -> String {
        let s = &self.server;
        format!(
            "version: 0.1
log: {{level: info}}
storage:
{s3}  delete: {{enabled: true}}
  redirect: {{disable: true}}
{storage_extra}http:
  addr: 127.0.0.1:0
  debug:
    addr: 127.0.0.1:0
    prometheus: {{enabled: true, path: /metrics}}
",
            s3 = s.s3_yaml(&s.endpoint, &self.root),
        )
    }

    /// Writes [`Bucket::yaml`] to `dir/file`; returns its path.
    fn config(&self, dir: &Path, file: &str, storage_extra: &str) -> String {
        let path = dir.join(file);
        std::fs::write(&path, self.yaml(storage_extra)).expect("write config");
        path.display().to_string()
    }

    fn start(&self, storage_extra: &str) -> Reg {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = self.config(dir.path(), "config.yml", storage_extra);
        Reg::start_in(dir, config)
    }

    /// The bucket under this root, seen directly, not through Berth.
    fn direct(&self) -> S3Driver {
        self.server.driver(&self.root)
    }

    /// Every key under a storage directory, as storage paths.
    async fn keys(&self, dir: &str) -> Vec<String> {
        let driver = self.direct();
        let entries: Result<Vec<(String, FileInfo)>, _> = driver.walk(dir).try_collect().await;
        match entries {
            Ok(entries) => entries.into_iter().map(|(path, _)| path).collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => panic!("listing {dir} in Garage: {e}"),
        }
    }

    async fn exists(&self, path: &str) -> bool {
        match self.direct().stat(path).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => panic!("stat {path} in Garage: {e}"),
        }
    }

    async fn delete(&self, path: &str) {
        self.direct()
            .delete(path)
            .await
            .unwrap_or_else(|e| panic!("delete {path} in Garage: {e}"));
    }

    /// Whether the blob holding `content` is under `blobs/`.
    async fn has_blob(&self, content: &[u8]) -> bool {
        self.exists(&paths::blob_data(&digest_of(content))).await
    }

    /// The online collector's trash entries of the blob holding `content`.
    async fn trashed(&self, content: &[u8]) -> Vec<String> {
        self.keys(&paths::trash_dir(&digest_of(content))).await
    }
}

fn digest_of(content: &[u8]) -> Digest {
    sha256(content).parse().expect("digest")
}

fn repo(name: &str) -> RepoName {
    name.parse().expect("repository name")
}

/// Fails the test with `what` once `limit` has passed; otherwise waits a little.
struct Deadline(Instant);

impl Deadline {
    fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    async fn tick(&self, what: &str) {
        assert!(Instant::now() < self.0, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `berth ARGS`, asserts success, returns its standard output.
fn ok_stdout(args: &[&str]) -> String {
    let out = berth(args, &[]);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The config and layer `Api::push_image` pushes for `seed`.
fn image_blobs(seed: &str) -> [Vec<u8>; 2] {
    [
        format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes(),
        format!("layer of {seed}").into_bytes(),
    ]
}

/// Asserts that `reg` serves `content` as a blob of `name`.
async fn assert_pulls(reg: &Reg, name: &str, content: &[u8]) {
    let r = reg
        .get(&format!("/v2/{name}/blobs/{}", sha256(content)))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, content);
}

/// GET of a manifest by tag or digest, accepting OCI image manifests.
async fn get_manifest(reg: &Reg, name: &str, reference: &str) -> Resp {
    reg.send(
        "GET",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("accept", OCI_MANIFEST)],
        Vec::new(),
    )
    .await
}

async fn tags(reg: &Reg, name: &str) -> Vec<String> {
    let r = reg.get(&format!("/v2/{name}/tags/list")).await;
    r.assert_status(200);
    serde_json::from_value(r.json()["tags"].clone()).expect("tags")
}

/// Waits until `_catalog` lists `expected` (a listing is cached for a second).
async fn wait_catalog(reg: &Reg, expected: &[&str]) {
    let deadline = Deadline::after(Duration::from_secs(10));
    loop {
        let listed = catalog(reg).await;
        if listed == expected {
            return;
        }
        deadline
            .tick(&format!("_catalog {listed:?} to be {expected:?}"))
            .await;
    }
}

async fn catalog(reg: &Reg) -> Vec<String> {
    let r = reg.get("/v2/_catalog").await;
    r.assert_status(200);
    serde_json::from_value(r.json()["repositories"].clone()).expect("repositories")
}

/// The upload session id of a `Location`.
fn session_id(location: &str) -> String {
    let rest = location
        .split("/blobs/uploads/")
        .nth(1)
        .expect("upload URL");
    rest.split('?').next().unwrap_or(rest).to_owned()
}

/// A PATCH of `chunk` at `offset`; asserts 202.
async fn patch(reg: &Reg, upload: &str, offset: usize, chunk: &[u8]) -> String {
    let end = offset + chunk.len() - 1;
    let r = reg
        .send(
            "PATCH",
            upload,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &format!("{offset}-{end}")),
            ],
            chunk.to_vec(),
        )
        .await;
    r.assert_status(202);
    r.header("location").to_owned()
}

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
