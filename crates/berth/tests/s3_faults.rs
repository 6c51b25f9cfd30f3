//! `storage.s3` when the store misbehaves, with the real binary on Garage behind a
//! fault-injecting proxy (`s3_fault_kit`): an unreachable, throttling (503 SlowDown) or failing
//! (500) store gives clients a prompt 503 UNAVAILABLE that names nothing internal, and service
//! comes back with the store, without a restart; a connection reset in the middle of a blob
//! upload leaves nothing visible; a chunked push survives `kill -9` of Berth between and during
//! chunks; a slow store is only slow; a download whose store answer breaks never ends as a
//! clean short body. What is stored is checked in Garage directly, not through
//! Berth. Without Garage the tests skip, except under `CI=true`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod s3_fault_kit;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;

use std::time::{Duration, Instant};

use berth_storage::paths;
use common::oci::{descriptor, image_manifest, sha256, Api, Reg, Resp};
use common::oci::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use s3_fault_kit::bench::{
    data, digest, kill_and_restart, patch, path_of, post_blob, repo, send_chunk, tag, Bench,
};
use s3_fault_kit::Fault;
use tokio::io::AsyncWriteExt;

/// On S3 Berth reuses a tag or digest resolution for 1 s (docs/storage.md, "Caches"): a
/// manifest GET that must reach the store waits this long after the previous one.
const RESOLVE_CACHE: Duration = Duration::from_millis(1_100);

/// S3's minimum part size: larger bodies are multipart uploads.
const MIN_PART: usize = 5 << 20;

/// How long a client may wait for the answer to a request while the store fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(90);

/// One request of the outage checks, and the status it gets from a working store.
struct Call {
    label: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    ok: u16,
}

impl Call {
    async fn send(&self, api: &Api) -> (Resp, Duration) {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = Instant::now();
        let r = api
            .send(self.method, &self.path, &headers, self.body.clone())
            .await;
        (r, started.elapsed())
    }
}

/// What Berth's log must show of each fault: the store's answer, or the failed connection.
fn log_evidence(fault: Fault) -> &'static [&'static str] {
    match fault {
        Fault::SlowDown => &["S3 request failed", "503", "SlowDown"],
        Fault::InternalError => &["S3 request failed", "500", "InternalError"],
        _ => &["S3 request failed", "error sending request"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_answers_503_then_recovers_without_restart() {
    let Some(b) = Bench::new("/outage").await else {
        return;
    };
    let reg = b.berth();
    let name = "faults/app";
    let seed = "outage seed";
    let (manifest, _) = reg.push_image(name, "v1", seed).await;
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer of {seed}").into_bytes();
    let layer_digest = sha256(&layer);

    for (round, fault) in [Fault::Down, Fault::SlowDown, Fault::InternalError]
        .into_iter()
        .enumerate()
    {
        let upload = path_of(&reg.start_upload(name).await);
        let blob = format!("blob pushed through {fault:?}").into_bytes();
        let chunk = format!("chunk sent through {fault:?}").into_bytes();
        let new_tag = format!("round{round}");
        let new_manifest = image_manifest(
            OCI_MANIFEST,
            descriptor(OCI_CONFIG, config.as_bytes()),
            &[descriptor(OCI_LAYER, &blob)],
        );
        let calls = [
            Call {
                label: "blob GET",
                method: "GET",
                path: format!("/v2/{name}/blobs/{layer_digest}"),
                headers: vec![],
                body: vec![],
                ok: 200,
            },
            Call {
                label: "manifest GET",
                method: "GET",
                path: format!("/v2/{name}/manifests/v1"),
                headers: vec![("accept", OCI_MANIFEST.to_owned())],
                body: vec![],
                ok: 200,
            },
            Call {
                label: "blob PUT (POST ?digest=)",
                method: "POST",
                path: format!("/v2/{name}/blobs/uploads/?digest={}", sha256(&blob)),
                headers: vec![("content-type", "application/octet-stream".to_owned())],
                body: blob.clone(),
                ok: 201,
            },
            Call {
                label: "PATCH",
                method: "PATCH",
                path: upload.clone(),
                headers: vec![
                    ("content-type", "application/octet-stream".to_owned()),
                    ("content-range", format!("0-{}", chunk.len() - 1)),
                ],
                body: chunk.clone(),
                ok: 202,
            },
            Call {
                label: "blob HEAD",
                method: "HEAD",
                path: format!("/v2/{name}/blobs/{layer_digest}"),
                headers: vec![],
                body: vec![],
                ok: 200,
            },
            Call {
                label: "manifest HEAD",
                method: "HEAD",
                path: format!("/v2/{name}/manifests/v1"),
                headers: vec![("accept", OCI_MANIFEST.to_owned())],
                body: vec![],
                ok: 200,
            },
            Call {
                label: "tags list",
                method: "GET",
                path: format!("/v2/{name}/tags/list"),
                headers: vec![],
                body: vec![],
                ok: 200,
            },
            Call {
                label: "catalog",
                method: "GET",
                path: "/v2/_catalog".to_owned(),
                headers: vec![],
                body: vec![],
                ok: 200,
            },
            Call {
                label: "upload status",
                method: "GET",
                path: upload.clone(),
                headers: vec![],
                body: vec![],
                ok: 204,
            },
            Call {
                label: "upload start",
                method: "POST",
                path: format!("/v2/{name}/blobs/uploads/"),
                headers: vec![],
                body: vec![],
                ok: 202,
            },
            Call {
                label: "manifest PUT",
                method: "PUT",
                path: format!("/v2/{name}/manifests/{new_tag}"),
                headers: vec![("content-type", OCI_MANIFEST.to_owned())],
                body: new_manifest.clone().into_bytes(),
                ok: 201,
            },
        ];

        reg.server.logs(Duration::ZERO);
        let faulted = b.proxy.faulted();
        b.proxy.set(fault);
        for call in &calls {
            let (r, took) = call.send(&reg).await;
            eprintln!(
                "measured: {fault:?} {}: {} in {took:.2?}",
                call.label, r.status
            );
            if call.method == "HEAD" {
                r.assert_status(503);
            } else {
                r.assert_error(503, "UNAVAILABLE");
            }
            assert!(took < ANSWER_LIMIT, "{fault:?} {}: {took:?}", call.label);
            b.assert_no_leak(call.label, &r.text());
        }
        if fault != Fault::Down {
            assert!(b.proxy.faulted() > faulted, "the store was asked");
        }
        let logs = reg.server.logs(Duration::from_millis(300)).join("\n");
        for evidence in log_evidence(fault) {
            assert!(
                logs.contains(evidence),
                "{fault:?}: no {evidence:?} in the log:\n{logs}"
            );
        }

        if let Some(line) = logs.lines().find(|l| l.contains("S3 request failed")) {
            eprintln!("measured: {fault:?} logged: {line}");
        }

        // The store is back: the same requests succeed, on the same process.
        b.proxy.set(Fault::Pass);
        for call in &calls {
            let (r, took) = call.send(&reg).await;
            eprintln!(
                "measured: after {fault:?} {}: {} in {took:.2?}",
                call.label, r.status
            );
            r.assert_status(call.ok);
            match call.label {
                "blob GET" => assert_eq!(r.body, layer),
                "manifest GET" => assert_eq!(r.text(), manifest),
                "PATCH" => assert_eq!(r.header("range"), format!("0-{}", chunk.len() - 1)),
                _ => {}
            }
        }
        assert_eq!(
            b.stored(&paths::blob_data(&digest(&sha256(&blob)))).await,
            Some(blob.clone())
        );
        let link = b
            .stored(&paths::tag_current_link(&repo(name), &tag(&new_tag)))
            .await
            .expect("tag link in Garage");
        assert_eq!(
            String::from_utf8_lossy(&link),
            sha256(new_manifest.as_bytes())
        );
    }

    // Faults shorter than the retries are absorbed: the client sees only success, for a read
    // and for a write.
    for (fault, requests) in [(Fault::SlowDown, 2), (Fault::InternalError, 1)] {
        let faulted = b.proxy.faulted();
        // Past the resolve cache's lifetime, so the manifest GET reaches the store.
        tokio::time::sleep(RESOLVE_CACHE).await;
        b.proxy.set_for(fault, requests);
        let started = Instant::now();
        let r = reg.get(&format!("/v2/{name}/manifests/v1")).await;
        r.assert_status(200);
        assert_eq!(r.text(), manifest);
        eprintln!(
            "measured: {requests} x {fault:?} absorbed, manifest GET 200 in {:.2?}",
            started.elapsed()
        );
        b.proxy.set_for(fault, requests);
        let blob = format!("pushed after {requests} x {fault:?}").into_bytes();
        let started = Instant::now();
        reg.push_blob(name, &blob).await;
        eprintln!(
            "measured: {requests} x {fault:?} absorbed, blob push 201 in {:.2?}",
            started.elapsed()
        );
        assert_eq!(b.proxy.faulted() - faulted, 2 * requests);
        assert_eq!(
            b.stored(&paths::blob_data(&digest(&sha256(&blob)))).await,
            Some(blob)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_upload_leaves_nothing_visible() {
    let Some(b) = Bench::new("/reset").await else {
        return;
    };
    let reg = b.berth();
    let name = "faults/reset";
    let config = br#"{"architecture":"amd64","os":"linux","seed":"reset"}"#;
    reg.push_blob(name, config).await;
    // One PUT at commit, and a multipart upload of 5 MiB parts.
    let small = data(256 << 10, 1);
    let large = data(12 << 20, 2);
    let manifest = image_manifest(
        OCI_MANIFEST,
        descriptor(OCI_CONFIG, config),
        &[descriptor(OCI_LAYER, &small), descriptor(OCI_LAYER, &large)],
    );

    b.proxy.set(Fault::ResetAfter(64 << 10));
    for layer in [&small, &large] {
        let resets = b.proxy.faulted();
        let started = Instant::now();
        let outcome = post_blob(&reg, name, layer).await;
        let took = started.elapsed();
        match &outcome {
            Ok(r) => {
                eprintln!(
                    "measured: reset under a {} B POST ?digest=: {} in {took:.2?}",
                    layer.len(),
                    r.status
                );
                r.assert_error(503, "UNAVAILABLE");
                b.assert_no_leak("POST ?digest=", &r.text());
            }
            Err(e) => eprintln!(
                "measured: reset under a {} B POST ?digest=: connection error in {took:.2?}: {e}",
                layer.len()
            ),
        }
        assert!(took < ANSWER_LIMIT, "{took:?}");
        assert!(
            b.proxy.faulted() > resets,
            "an upload to the store was reset"
        );
        if layer.len() > MIN_PART {
            // The multipart upload was aborted, not left to linger.
            assert!(
                b.proxy
                    .seen()
                    .iter()
                    .any(|r| r.starts_with("DELETE ") && r.contains("uploadId=")),
                "{:?}",
                b.proxy.seen()
            );
        }
        let d = sha256(layer);
        reg.head(&format!("/v2/{name}/blobs/{d}"))
            .await
            .assert_status(404);
        assert_eq!(b.stored(&paths::blob_data(&digest(&d))).await, None);
    }
    // Only the config is a blob; a manifest naming the failed layers is refused.
    assert_eq!(
        b.blobs().await,
        [paths::blob_data(&digest(&sha256(config)))]
    );
    reg.put_manifest(name, "v1", OCI_MANIFEST, &manifest)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.get(&format!("/v2/{name}/manifests/v1"))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let tags = reg.get(&format!("/v2/{name}/tags/list")).await;
    assert!(
        tags.status == 404 || tags.json()["tags"].as_array().is_none_or(Vec::is_empty),
        "{}",
        tags.text()
    );
    assert!(b
        .keys_under(&format!("{}/_manifests", paths::repo_dir(&repo(name))))
        .await
        .is_empty());

    // The same push succeeds once the store answers again.
    b.proxy.set(Fault::Pass);
    for layer in [&small, &large] {
        reg.push_blob(name, layer).await;
    }
    reg.push_manifest(name, "v1", OCI_MANIFEST, &manifest).await;
    chunked_upload_through_resets(&b, &reg, name).await;
    for layer in [&small, &large] {
        let d = sha256(layer);
        let r = reg.get(&format!("/v2/{name}/blobs/{d}")).await;
        r.assert_status(200);
        assert!(r.body == **layer, "pulled {d} differs");
        assert!(b.stored(&paths::blob_data(&digest(&d))).await.as_ref() == Some(layer));
    }
}

/// A chunked upload whose second PATCH, then whose final PUT (the parts composed into the
/// blob), is reset on its way to the store: each gets a 503, the session keeps what it had,
/// and the client's retries finish it.
async fn chunked_upload_through_resets(b: &Bench, reg: &Reg, name: &str) {
    let chunks = [data(100 << 10, 4), data(100 << 10, 5)];
    let blob = chunks.concat();
    let d = sha256(&blob);
    let upload = path_of(&reg.start_upload(name).await);
    patch(reg, &upload, 0, &chunks[0]).await;

    b.proxy.set(Fault::ResetAfter(64 << 10));
    let r = send_chunk(reg, &upload, chunks[0].len(), &chunks[1]).await;
    eprintln!("measured: reset under a PATCH: {}", r.status);
    r.assert_error(503, "UNAVAILABLE");
    let r = reg.get(&upload).await;
    r.assert_status(204);
    assert_eq!(r.header("range"), format!("0-{}", chunks[0].len() - 1));
    b.proxy.set(Fault::Pass);
    patch(reg, &upload, chunks[0].len(), &chunks[1]).await;

    b.proxy.set(Fault::ResetAfter(64 << 10));
    let finish = format!("{upload}?digest={d}");
    let r = reg.send("PUT", &finish, &[], Vec::new()).await;
    eprintln!(
        "measured: reset under the final PUT (compose): {}",
        r.status
    );
    r.assert_error(503, "UNAVAILABLE");
    reg.head(&format!("/v2/{name}/blobs/{d}"))
        .await
        .assert_status(404);
    assert_eq!(b.stored(&paths::blob_data(&digest(&d))).await, None);
    let r = reg.get(&upload).await;
    r.assert_status(204);
    assert_eq!(r.header("range"), format!("0-{}", blob.len() - 1));

    b.proxy.set(Fault::Pass);
    reg.send("PUT", &finish, &[], Vec::new())
        .await
        .assert_status(201);
    let r = reg.get(&format!("/v2/{name}/blobs/{d}")).await;
    r.assert_status(200);
    assert!(r.body == blob, "pulled blob differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_push_survives_kill_9_between_and_during_patches() {
    let Some(b) = Bench::new("/kill").await else {
        return;
    };
    let name = "faults/kill";
    // Chunks above the 5 MiB part size: each is a multipart upload of its own.
    const CHUNK: usize = MIN_PART + (1 << 20);
    let blob = data(3 * CHUNK, 3);
    let d = sha256(&blob);
    let blob_path = paths::blob_data(&digest(&d));

    let reg = b.berth();
    let upload = path_of(&reg.start_upload(name).await);
    patch(&reg, &upload, 0, &blob[..CHUNK]).await;
    patch(&reg, &upload, CHUNK, &blob[CHUNK..2 * CHUNK]).await;
    reg.head(&format!("/v2/{name}/blobs/{d}"))
        .await
        .assert_status(404);

    // Killed between two PATCHes: the next process reports both chunks.
    let reg = kill_and_restart(reg);
    let r = reg.get(&upload).await;
    r.assert_status(204);
    eprintln!(
        "measured: kill -9 between PATCHes, new process reports Range {}",
        r.header("range")
    );
    assert_eq!(r.header("range"), format!("0-{}", 2 * CHUNK - 1));
    assert_eq!(b.stored(&blob_path).await, None);

    // Killed during a PATCH, once its first 5 MiB part is on its way to the store.
    let seen = b.proxy.seen().len();
    let addr = reg.api.url.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {CHUNK}\r\nContent-Range: {}-{}\r\n\r\n",
        2 * CHUNK,
        3 * CHUNK - 1
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    tcp.write_all(&blob[2 * CHUNK..3 * CHUNK - (512 << 10)])
        .await
        .expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.proxy.seen()[seen..]
        .iter()
        .any(|r| r.starts_with("PUT ") && r.contains("/berthparts/") && r.contains("partNumber"))
    {
        assert!(
            Instant::now() < deadline,
            "no part upload: {:?}",
            b.proxy.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reg = kill_and_restart(reg);
    drop(tcp);
    let r = reg.get(&upload).await;
    r.assert_status(204);
    eprintln!(
        "measured: kill -9 during a PATCH (a part in flight), new process reports Range {}",
        r.header("range")
    );
    assert_eq!(
        r.header("range"),
        format!("0-{}", 2 * CHUNK - 1),
        "the cut chunk is not counted"
    );
    reg.head(&format!("/v2/{name}/blobs/{d}"))
        .await
        .assert_status(404);
    assert!(b.blobs().await.is_empty(), "{:?}", b.blobs().await);

    // The client resumes from the Range and finishes.
    patch(&reg, &upload, 2 * CHUNK, &blob[2 * CHUNK..]).await;
    let r = reg
        .send(
            "PUT",
            &format!("{upload}?digest={d}"),
            &[("content-type", "application/octet-stream")],
            Vec::new(),
        )
        .await;
    r.assert_status(201);
    let r = reg.get(&format!("/v2/{name}/blobs/{d}")).await;
    r.assert_status(200);
    assert!(r.body == blob, "pulled blob differs");
    assert!(b.stored(&blob_path).await.as_ref() == Some(&blob));
    let id = upload.rsplit('/').next().expect("upload id");
    assert!(b
        .keys_under(&paths::upload_dir(&repo(name), id))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_store_still_works() {
    let Some(b) = Bench::new("/slow").await else {
        return;
    };
    let reg = b.berth();
    let name = "faults/slow";
    let layer = b"layer of slow";

    // Every answer of the store a second late: only slower.
    let delay = Duration::from_secs(1);
    b.proxy.set(Fault::Delay(delay));
    let faulted = b.proxy.faulted();
    let started = Instant::now();
    let (manifest, _) = reg.push_image(name, "v1", "slow").await;
    let pushed = started.elapsed();
    let r = reg.get(&format!("/v2/{name}/manifests/v1")).await;
    r.assert_status(200);
    assert_eq!(r.text(), manifest);
    let r = reg
        .get(&format!("/v2/{name}/blobs/{}", sha256(layer)))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, layer);
    let took = started.elapsed();
    let requests = b.proxy.faulted() - faulted;
    eprintln!(
        "measured: {delay:?} per S3 answer ({requests} requests): push 201 in {pushed:.2?}, \
         push + pulls in {took:.2?}"
    );
    assert!(took >= delay * 3, "the delays were applied");

    // One answer 20 s late, below the 30 s read timeout: waited for, not retried.
    b.proxy.set(Fault::Pass);
    tokio::time::sleep(RESOLVE_CACHE).await;
    let before = b.proxy.seen().len();
    reg.get(&format!("/v2/{name}/manifests/v1"))
        .await
        .assert_status(200);
    let normal = b.proxy.seen().len() - before;
    let long = Duration::from_secs(20);
    tokio::time::sleep(RESOLVE_CACHE).await;
    b.proxy.set_for(Fault::Delay(long), 1);
    let before = b.proxy.seen().len();
    let started = Instant::now();
    let r = reg.get(&format!("/v2/{name}/manifests/v1")).await;
    let took = started.elapsed();
    eprintln!(
        "measured: one S3 answer {long:?} late: manifest GET {} in {took:.2?}",
        r.status
    );
    r.assert_status(200);
    assert_eq!(r.text(), manifest);
    assert!(took >= long && took < ANSWER_LIMIT, "{took:?}");
    assert_eq!(
        b.proxy.seen().len() - before,
        normal,
        "no request was sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_cut_mid_body_is_never_a_clean_end() {
    let Some(b) = Bench::new("/cut").await else {
        return;
    };
    let reg = b.berth();
    let name = "faults/cut";
    let blob = data((1 << 20) + 1, 9);
    let d = sha256(&blob);
    reg.push_blob(name, &blob).await;

    // Every answer of the store breaks after 256 KiB, resumed reads included.
    b.proxy.set(Fault::CutResponse(256 << 10));
    let started = Instant::now();
    let r = reqwest::get(reg.abs(&format!("/v2/{name}/blobs/{d}")))
        .await
        .expect("response headers");
    let status = r.status().as_u16();
    let announced = r.content_length();
    let body = r.bytes().await;
    eprintln!(
        "measured: blob GET with every store answer cut at 256 KiB: {status}, body {} in {:.2?}",
        match &body {
            Ok(b) => format!("complete ({} B)", b.len()),
            Err(e) => format!("broken ({e})"),
        },
        started.elapsed()
    );
    // Headers go out before the first byte is read, so the failure can only show as a body
    // that breaks before its announced length: never as a short body that ends cleanly.
    assert_eq!(status, 200);
    assert_eq!(announced, Some(blob.len() as u64));
    assert!(body.is_err(), "a cut download ended cleanly");

    b.proxy.set(Fault::Pass);
    let r = reg.get(&format!("/v2/{name}/blobs/{d}")).await;
    r.assert_status(200);
    assert!(r.body == blob, "pulled blob differs");
}

/// The store refuses the batch delete of a finished upload's parts (as Garage does when its
/// metadata database is locked: 200, with an error per key): Berth deletes what is left key by
/// key and the push succeeds with nothing left behind. When those deletes fail too, the push
/// still succeeds (the blob is published and linked): a warning in the log, and the leftover
/// session is upload purging's to remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cleanup_after_publishing_does_not_fail_the_push() {
    let Some(b) = Bench::new("/cleanup").await else {
        return;
    };
    let reg = b.berth();
    let name = "faults/cleanup";
    for (round, single_deletes_fail) in [(0, false), (1, true)] {
        let chunks = [data(100 << 10, 6 + round), data(100 << 10, 8 + round)];
        let blob = chunks.concat();
        let d = sha256(&blob);
        let upload = path_of(&reg.start_upload(name).await);
        patch(&reg, &upload, 0, &chunks[0]).await;
        patch(&reg, &upload, chunks[0].len(), &chunks[1]).await;
        let uuid = upload.rsplit('/').next().unwrap().to_owned();
        let session = paths::upload_dir(&repo(name), &uuid);
        assert!(!b.keys_under(&session).await.is_empty());

        let faulted = b.proxy.faulted();
        // The batch delete; with `single_deletes_fail`, the first key-by-key delete too (it is
        // a batch delete of one key for object_store).
        let refused = if single_deletes_fail { 2 } else { 1 };
        b.proxy.set_on("?delete", Fault::DeleteRefused, refused);
        reg.send("PUT", &format!("{upload}?digest={d}"), &[], Vec::new())
            .await
            .assert_status(201);
        let r = reg.get(&format!("/v2/{name}/blobs/{d}")).await;
        r.assert_status(200);
        assert!(r.body == blob, "pulled blob differs");
        let logs = reg.server.logs(Duration::from_millis(300)).join("\n");
        assert!(logs.contains("deleting them one by one"), "{logs}");
        if single_deletes_fail {
            assert_eq!(b.proxy.faulted(), faulted + 2);
            assert!(
                logs.contains("could not remove a finished upload session"),
                "{logs}"
            );
            assert!(!b.keys_under(&session).await.is_empty(), "left for purging");
        } else {
            assert_eq!(
                b.proxy.faulted(),
                faulted + 1,
                "the batch delete was refused"
            );
            assert!(
                b.keys_under(&session).await.is_empty(),
                "the session's parts and state were deleted key by key"
            );
        }
    }
}
