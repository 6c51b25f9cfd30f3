//! OCI Distribution blob API against the real `berth` binary: pulls (whole, HEAD, ranges),
//! every upload flavour (monolithic, session + PUT, streamed and ranged PATCH chunks, status,
//! cancel, resume after a restart), digest checks, sha512, deletes and cross-repository mounts.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::oci::{sha256, sha512, Reg};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `location` with `?digest=` (or `&digest=` when the server put a query in it).
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

#[tokio::test]
async fn monolithic_upload_then_get_head_and_ranges() {
    let reg = Reg::start("");
    let blob = data(1000, 7);
    let digest = sha256(&blob);
    let r = reg
        .send(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
            &[("content-type", "application/octet-stream")],
            blob.clone(),
        )
        .await;
    r.assert_status(201);
    assert_eq!(
        r.header("location"),
        format!("{}/v2/r/blobs/{digest}", reg.url)
    );
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(r.header("content-length"), "0");
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");

    let path = format!("/v2/r/blobs/{digest}");
    let r = reg.get(&path).await;
    r.assert_status(200);
    assert_eq!(r.body, blob);
    assert_eq!(r.header("content-length"), "1000");
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(r.header("content-type"), "application/octet-stream");

    let r = reg.head(&path).await;
    r.assert_status(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), "1000");
    assert_eq!(r.header("docker-content-digest"), digest);

    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=998-5000", 998, 999),
    ] {
        let r = reg
            .send("GET", &path, &[("range", range)], Vec::new())
            .await;
        r.assert_status(206);
        assert_eq!(
            r.header("content-range"),
            format!("bytes {start}-{end}/1000")
        );
        assert_eq!(r.header("content-length"), (end - start + 1).to_string());
        assert_eq!(r.body, &blob[start..=end], "{range}");
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=20-10"] {
        let r = reg
            .send("GET", &path, &[("range", range)], Vec::new())
            .await;
        r.assert_error(416, "RANGE_INVALID");
        assert_eq!(r.header("content-range"), "bytes */1000", "{range}");
    }
}

#[tokio::test]
async fn empty_blob() {
    let reg = Reg::start("");
    let digest = reg.push_blob("r", b"").await;
    let path = format!("/v2/r/blobs/{digest}");
    let r = reg.get(&path).await;
    r.assert_status(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), "0");
    assert_eq!(r.header("docker-content-digest"), digest);
    let r = reg.head(&path).await;
    r.assert_status(200);
    assert_eq!(r.header("content-length"), "0");
    let r = reg
        .send("GET", &path, &[("range", "bytes=0-")], Vec::new())
        .await;
    r.assert_error(416, "RANGE_INVALID");
    assert_eq!(r.header("content-range"), "bytes */0");
}

#[tokio::test]
async fn session_then_put_with_the_whole_body() {
    let reg = Reg::start("");
    let r = reg
        .send("POST", "/v2/a/b/blobs/uploads/", &[], Vec::new())
        .await;
    r.assert_status(202);
    let uuid = r.header("docker-upload-uuid").to_owned();
    assert!(!uuid.is_empty());
    let location = r.header("location").to_owned();
    assert!(
        location.starts_with(&format!("{}/v2/a/b/blobs/uploads/", reg.url))
            && location.contains(&uuid),
        "{location}"
    );
    assert_eq!(r.header("range"), "0-0");
    assert_eq!(r.header("content-length"), "0");

    let blob = data(4096, 1);
    let digest = sha256(&blob);
    let r = reg
        .send("PUT", &with_digest(&location, &digest), &[], blob.clone())
        .await;
    r.assert_status(201);
    assert_eq!(
        r.header("location"),
        format!("{}/v2/a/b/blobs/{digest}", reg.url)
    );
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(reg.get(&format!("/v2/a/b/blobs/{digest}")).await.body, blob);
    // Pushing the same content again is fine.
    assert_eq!(reg.push_blob("a/b", &blob).await, digest);
    // A finished session is gone.
    reg.get(&location)
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn streamed_patches_without_content_range_then_empty_put() {
    let reg = Reg::start("");
    let location = reg.start_upload("r").await;
    let parts = [data(70_000, 2), data(123, 3)];
    let mut sent = 0;
    for (i, part) in parts.iter().enumerate() {
        // A file body is sent chunked, with no Content-Length, as streaming clients do.
        let file = reg.dir.path().join(format!("part{i}"));
        std::fs::write(&file, part).unwrap();
        let body = tokio::fs::File::open(&file).await.unwrap();
        let r = reg.send("PATCH", &location, &[], body).await;
        r.assert_status(202);
        sent += part.len();
        assert_eq!(r.header("range"), format!("0-{}", sent - 1));
        assert!(r.header("location").contains("/v2/r/blobs/uploads/"));
        assert!(!r.header("docker-upload-uuid").is_empty());
    }
    let r = reg.get(&location).await;
    r.assert_status(204);
    assert_eq!(r.header("range"), format!("0-{}", sent - 1));

    let whole = parts.concat();
    let digest = sha256(&whole);
    let r = reg
        .send("PUT", &with_digest(&location, &digest), &[], Vec::new())
        .await;
    r.assert_status(201);
    assert_eq!(r.header("docker-content-digest"), digest);
    let r = reg.get(&format!("/v2/r/blobs/{digest}")).await;
    assert_eq!(r.body, whole);
}

#[tokio::test]
async fn ranged_chunks_must_arrive_in_order() {
    let reg = Reg::start("");
    let location = reg.start_upload("r").await;
    let blob = data(15, 9);
    let patch = |range: &'static str, bytes: &[u8]| {
        let bytes = bytes.to_vec();
        let location = location.clone();
        let reg = &reg;
        async move {
            reg.send("PATCH", &location, &[("content-range", range)], bytes)
                .await
        }
    };
    let r = patch("0-4", &blob[..5]).await;
    r.assert_status(202);
    assert_eq!(r.header("range"), "0-4");

    // Out of order (a gap) and overlapping chunks are refused with the current range.
    for (range, bytes) in [("10-14", &blob[10..]), ("3-7", &blob[3..8])] {
        let r = patch(range, bytes).await;
        r.assert_error(416, "RANGE_INVALID");
        assert_eq!(r.header("range"), "0-4", "{range}");
    }
    // Content-Range that disagrees with Content-Length.
    patch("5-9", &blob[5..7])
        .await
        .assert_error(416, "RANGE_INVALID");
    let r = reg.get(&location).await;
    r.assert_status(204);
    assert_eq!(
        r.header("range"),
        "0-4",
        "refused chunks left no bytes behind"
    );

    let r = patch("5-9", &blob[5..10]).await;
    r.assert_status(202);
    assert_eq!(r.header("range"), "0-9");

    // The final chunk in the PUT: out of order is a 416 too, and the session survives it.
    let digest = sha256(&blob);
    let put = with_digest(&location, &digest);
    let r = reg
        .send(
            "PUT",
            &put,
            &[("content-range", "12-14")],
            blob[12..].to_vec(),
        )
        .await;
    r.assert_error(416, "RANGE_INVALID");
    let r = reg
        .send(
            "PUT",
            &put,
            &[("content-range", "10-14")],
            blob[10..].to_vec(),
        )
        .await;
    r.assert_status(201);
    assert_eq!(reg.get(&format!("/v2/r/blobs/{digest}")).await.body, blob);
}

#[tokio::test]
async fn upload_status_and_cancel() {
    let reg = Reg::start("");
    let r = reg
        .send("POST", "/v2/r/blobs/uploads/", &[], Vec::new())
        .await;
    let location = r.header("location").to_owned();
    let uuid = r.header("docker-upload-uuid").to_owned();
    reg.send("PATCH", &location, &[], b"abc".to_vec())
        .await
        .assert_status(202);
    let r = reg.get(&location).await;
    r.assert_status(204);
    assert_eq!(r.header("range"), "0-2");
    assert_eq!(r.header("docker-upload-uuid"), uuid);
    assert_eq!(r.header("location"), location);
    assert!(r.body.is_empty());

    let r = reg.delete(&location).await;
    r.assert_status(204);
    reg.get(&location)
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send("PATCH", &location, &[], b"d".to_vec())
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    let put = with_digest(&location, &sha256(b"abc"));
    reg.send("PUT", &put, &[], Vec::new())
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&location)
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    // A session belongs to the repository it was started in.
    let location = reg.start_upload("r").await;
    let elsewhere = location.replace("/v2/r/", "/v2/other/");
    reg.get(&elsewhere)
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send("PATCH", &elsewhere, &[], b"x".to_vec())
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.get(&location).await.assert_status(204);
    for id in [
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "nope",
        "..%2f..%2fx",
    ] {
        reg.get(&format!("/v2/r/blobs/uploads/{id}"))
            .await
            .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
}

#[tokio::test]
async fn wrong_or_missing_digest_publishes_nothing() {
    let reg = Reg::start("");
    let blob = data(100, 4);
    let claimed = sha256(b"something else");

    let location = reg.start_upload("r").await;
    let r = reg
        .send("PUT", &with_digest(&location, &claimed), &[], blob.clone())
        .await;
    r.assert_error(400, "DIGEST_INVALID");
    for digest in [&claimed, &sha256(&blob)] {
        let r = reg.head(&format!("/v2/r/blobs/{digest}")).await;
        r.assert_status(404);
        assert!(r.body.is_empty());
    }
    // The failed session is discarded, as registry:2 does.
    reg.get(&location)
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");

    // Monolithic with a wrong digest.
    reg.send(
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={claimed}"),
        &[],
        blob.clone(),
    )
    .await
    .assert_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/r/blobs/{claimed}"))
        .await
        .assert_status(404);

    // No digest, or a malformed or unsupported one.
    let location = reg.start_upload("r").await;
    reg.send("PUT", &location, &[], blob.clone())
        .await
        .assert_error(400, "DIGEST_INVALID");
    let location = reg.start_upload("r").await;
    for bad in [
        "sha256:abc",
        "md5:0123456789abcdef0123456789abcdef",
        "nodigest",
    ] {
        reg.send("PUT", &with_digest(&location, bad), &[], Vec::new())
            .await
            .assert_error(400, "DIGEST_INVALID");
        reg.send(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={bad}"),
            &[],
            blob.clone(),
        )
        .await
        .assert_error(400, "DIGEST_INVALID");
    }
    reg.head(&format!("/v2/r/blobs/{}", sha256(&blob)))
        .await
        .assert_status(404);
}

#[tokio::test]
async fn sha512_digests() {
    let reg = Reg::start("");
    let blob = data(5000, 5);
    let digest = sha512(&blob);
    let r = reg
        .send(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
            &[],
            blob.clone(),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.header("docker-content-digest"), digest);
    let r = reg.get(&format!("/v2/r/blobs/{digest}")).await;
    r.assert_status(200);
    assert_eq!(r.body, blob);
    assert_eq!(r.header("docker-content-digest"), digest);

    // Through a chunked session (hashed with sha256 while it arrives).
    let blob = data(3000, 6);
    let digest = sha512(&blob);
    let location = reg.start_upload("r").await;
    reg.send(
        "PATCH",
        &location,
        &[("content-range", "0-999")],
        blob[..1000].to_vec(),
    )
    .await
    .assert_status(202);
    let r = reg
        .send(
            "PUT",
            &with_digest(&location, &digest),
            &[],
            blob[1000..].to_vec(),
        )
        .await;
    r.assert_status(201);
    let r = reg.head(&format!("/v2/r/blobs/{digest}")).await;
    r.assert_status(200);
    assert_eq!(r.header("content-length"), "3000");
    let location = reg.start_upload("r").await;
    reg.send(
        "PUT",
        &with_digest(&location, &sha512(b"x")),
        &[],
        b"y".to_vec(),
    )
    .await
    .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn blob_delete_and_unknown_blobs() {
    let reg = Reg::start("");
    let blob = data(10, 8);
    let digest = reg.push_blob("r", &blob).await;
    let path = format!("/v2/r/blobs/{digest}");
    // Repositories are isolated: another one cannot serve the blob.
    reg.get(&format!("/v2/other/blobs/{digest}"))
        .await
        .assert_error(404, "BLOB_UNKNOWN");

    let r = reg.delete(&path).await;
    r.assert_status(202);
    reg.get(&path).await.assert_error(404, "BLOB_UNKNOWN");
    let r = reg.head(&path).await;
    r.assert_status(404);
    assert!(r.body.is_empty());
    reg.delete(&path).await.assert_error(404, "BLOB_UNKNOWN");

    let unknown = sha256(b"never pushed");
    reg.get(&format!("/v2/r/blobs/{unknown}"))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    reg.delete(&format!("/v2/r/blobs/{unknown}"))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    for bad in ["sha256:xyz", "sha256:ABC", "notadigest", "sha256:"] {
        reg.get(&format!("/v2/r/blobs/{bad}"))
            .await
            .assert_error(400, "DIGEST_INVALID");
    }
    let upper = format!("sha256:{}", digest[7..].to_uppercase());
    reg.get(&format!("/v2/r/blobs/{upper}"))
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn cross_repository_mount() {
    let reg = Reg::start("");
    let blob = data(50, 10);
    let digest = reg.push_blob("src", &blob).await;

    let r = reg
        .send(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            Vec::new(),
        )
        .await;
    r.assert_status(201);
    assert_eq!(
        r.header("location"),
        format!("{}/v2/dst/blobs/{digest}", reg.url)
    );
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(reg.get(&format!("/v2/dst/blobs/{digest}")).await.body, blob);

    // The source repository does not have it: fall back to a new session.
    let r = reg
        .send(
            "POST",
            &format!("/v2/third/blobs/uploads/?mount={digest}&from=empty"),
            &[],
            Vec::new(),
        )
        .await;
    r.assert_status(202);
    let location = r.header("location").to_owned();
    assert!(location.contains("/v2/third/blobs/uploads/"), "{location}");
    assert!(!r.header("docker-upload-uuid").is_empty());
    assert_eq!(r.header("range"), "0-0");
    reg.head(&format!("/v2/third/blobs/{digest}"))
        .await
        .assert_status(404);
    // ...and that session is a real one.
    reg.send("PUT", &with_digest(&location, &digest), &[], blob.clone())
        .await
        .assert_status(201);

    // Without `from`, Berth mounts any blob it stores (the spec allows it); an unknown digest
    // gets a session.
    let r = reg
        .send(
            "POST",
            &format!("/v2/fourth/blobs/uploads/?mount={digest}"),
            &[],
            Vec::new(),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.header("docker-content-digest"), digest);
    reg.head(&format!("/v2/fourth/blobs/{digest}"))
        .await
        .assert_status(200);
    let unknown = sha256(b"nowhere");
    let r = reg
        .send(
            "POST",
            &format!("/v2/fourth/blobs/uploads/?mount={unknown}&from=src"),
            &[],
            Vec::new(),
        )
        .await;
    r.assert_status(202);
    assert!(r.header("location").contains("/v2/fourth/blobs/uploads/"));
}

#[tokio::test]
async fn mount_with_invalid_arguments_falls_back_to_a_session() {
    let reg = Reg::start("");
    let digest = reg.push_blob("src", b"abc").await;
    let mut wrong = Vec::new();
    for query in [
        "mount=sha256:xyz&from=src".to_owned(),
        format!("mount={digest}&from=Not..Valid"),
    ] {
        let path = format!("/v2/dst/blobs/uploads/?{query}");
        let r = reg.send("POST", &path, &[], Vec::new()).await;
        if r.status != 202 || !r.header("location").contains("/v2/dst/blobs/uploads/") {
            wrong.push(format!("POST {path}: {} {}", r.status, r.text()));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn upload_survives_a_restart() {
    let reg = Reg::start("");
    let blob = data(200_000, 11);
    let location = reg.start_upload("r").await;
    let r = reg
        .send(
            "PATCH",
            &location,
            &[("content-range", "0-99999")],
            blob[..100_000].to_vec(),
        )
        .await;
    r.assert_status(202);
    assert_eq!(r.header("range"), "0-99999");

    let reg = reg.restart();
    let r = reg.get(&location).await;
    r.assert_status(204);
    assert_eq!(r.header("range"), "0-99999");
    let r = reg
        .send(
            "PATCH",
            &location,
            &[("content-range", "100000-149999")],
            blob[100_000..150_000].to_vec(),
        )
        .await;
    r.assert_status(202);
    assert_eq!(r.header("range"), "0-149999");
    let digest = sha256(&blob);
    let r = reg
        .send(
            "PUT",
            &with_digest(&location, &digest),
            &[],
            blob[150_000..].to_vec(),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.header("docker-content-digest"), digest);
    let r = reg.get(&format!("/v2/r/blobs/{digest}")).await;
    assert_eq!(r.body.len(), blob.len());
    assert!(r.body == blob, "blob content differs after resuming");
}
