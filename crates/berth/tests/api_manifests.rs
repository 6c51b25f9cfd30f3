//! OCI Distribution manifest API against the real `berth` binary: every manifest kind pushed
//! by tag and by digest, pulled byte-identical with its Content-Type, HEAD, DELETE, and every
//! way a push can be refused.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::oci::{
    descriptor, image_manifest, index_manifest, manifest_descriptor, raw_request, sha256, sha512,
    Api, Reg, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER, OCI_MANIFEST,
};
use serde_json::{json, Value};

/// Pushes a config and a layer for `seed` and returns an image manifest of `kind` over them.
async fn image_body(api: &Api, repo: &str, kind: &str, seed: &str) -> String {
    let (config_type, layer_type) = if kind == DOCKER_MANIFEST {
        (DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_CONFIG, OCI_LAYER)
    };
    let config = format!(r#"{{"os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer {seed}");
    api.push_blob(repo, config.as_bytes()).await;
    api.push_blob(repo, layer.as_bytes()).await;
    image_manifest(
        kind,
        descriptor(config_type, config.as_bytes()),
        &[descriptor(layer_type, layer.as_bytes())],
    )
}

fn child(media_type: &str, body: &str, arch: &str) -> Value {
    let mut d = manifest_descriptor(media_type, body);
    d["platform"] = json!({"architecture": arch, "os": "linux"});
    d
}

/// GET and HEAD by every reference: 200, the pushed bytes, the pushed Content-Type, digest.
async fn assert_served(api: &Api, repo: &str, references: &[&str], media_type: &str, body: &str) {
    for reference in references {
        // Fetched by digest, the digest is that one; by tag, the sha256 one it was pushed with.
        let digest = match reference.strip_prefix("sha512:") {
            Some(_) => reference.to_string(),
            None => sha256(body.as_bytes()),
        };
        let path = format!("/v2/{repo}/manifests/{reference}");
        let r = api.get(&path).await;
        r.assert_status(200);
        assert_eq!(r.body, body.as_bytes(), "{path}: not byte-identical");
        assert_eq!(r.header("content-type"), media_type, "{path}");
        assert_eq!(r.header("docker-content-digest"), digest, "{path}");
        assert_eq!(r.header("content-length"), body.len().to_string());
        let r = api.head(&path).await;
        r.assert_status(200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-type"), media_type, "{path}");
        assert_eq!(r.header("docker-content-digest"), digest, "{path}");
        assert_eq!(r.header("content-length"), body.len().to_string());
    }
}

#[tokio::test]
async fn every_manifest_kind_round_trips_by_tag_and_digest() {
    let reg = Reg::start("");
    let repo = "kinds";
    let oci = image_body(&reg, repo, OCI_MANIFEST, "oci").await;
    let docker = image_body(&reg, repo, DOCKER_MANIFEST, "docker").await;
    // The images are pushed by digest (as multi-platform pushes do), the indexes by tag.
    let mut pushed = Vec::new();
    for (body, kind) in [(&oci, OCI_MANIFEST), (&docker, DOCKER_MANIFEST)] {
        let digest = sha256(body.as_bytes());
        let r = reg.put_manifest(repo, &digest, kind, body).await;
        r.assert_status(201);
        assert_eq!(
            r.header("location"),
            format!("{}/v2/{repo}/manifests/{digest}", reg.url)
        );
        assert_eq!(r.header("docker-content-digest"), digest);
        assert!(!r.has("oci-subject"));
        pushed.push((body.clone(), kind, digest));
    }
    let oci_index = index_manifest(OCI_INDEX, &[child(OCI_MANIFEST, &oci, "amd64")]);
    let docker_list = index_manifest(DOCKER_LIST, &[child(DOCKER_MANIFEST, &docker, "arm64")]);
    for (tag, body, kind) in [
        ("index", &oci_index, OCI_INDEX),
        ("list", &docker_list, DOCKER_LIST),
    ] {
        let r = reg.put_manifest(repo, tag, kind, body).await;
        r.assert_status(201);
        let digest = sha256(body.as_bytes());
        assert_eq!(
            r.header("location"),
            format!("{}/v2/{repo}/manifests/{digest}", reg.url)
        );
        assert_eq!(r.header("docker-content-digest"), digest);
        assert_eq!(r.header("content-length"), "0");
        pushed.push((body.clone(), kind, digest));
    }
    // Tag the images too, then check every manifest by each of its references.
    reg.push_manifest(repo, "oci", OCI_MANIFEST, &oci).await;
    reg.push_manifest(repo, "docker", DOCKER_MANIFEST, &docker)
        .await;
    for ((body, kind, digest), tag) in pushed.iter().zip(["oci", "docker", "index", "list"]) {
        assert_served(&reg, repo, &[tag, digest], kind, body).await;
    }

    // Delete by digest: the manifest and every tag on it are gone.
    for (_, _, digest) in &pushed {
        let r = reg.delete(&format!("/v2/{repo}/manifests/{digest}")).await;
        r.assert_status(202);
    }
    for ((_, _, digest), tag) in pushed.iter().zip(["oci", "docker", "index", "list"]) {
        for reference in [tag, digest.as_str()] {
            let path = format!("/v2/{repo}/manifests/{reference}");
            reg.get(&path).await.assert_error(404, "MANIFEST_UNKNOWN");
            let r = reg.head(&path).await;
            r.assert_status(404);
            assert!(r.body.is_empty());
        }
        reg.delete(&format!("/v2/{repo}/manifests/{digest}"))
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    let r = reg.get(&format!("/v2/{repo}/tags/list")).await;
    r.assert_status(200);
    assert_eq!(r.json()["tags"], json!([]));
}

#[tokio::test]
async fn a_tag_can_move_to_another_manifest() {
    let reg = Reg::start("");
    let (first, d1) = reg.push_image("r", "latest", "one").await;
    let (second, d2) = reg.push_image("r", "latest", "two").await;
    assert_ne!(d1, d2);
    assert_served(&reg, "r", &["latest", &d2], OCI_MANIFEST, &second).await;
    assert_served(&reg, "r", &[&d1], OCI_MANIFEST, &first).await;
}

#[tokio::test]
async fn manifest_pushed_by_sha512_digest() {
    let reg = Reg::start("");
    let (body, sha) = reg.push_image("r", "v1", "x").await;
    let digest = sha512(body.as_bytes());
    let r = reg.put_manifest("r", &digest, OCI_MANIFEST, &body).await;
    r.assert_status(201);
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_served(&reg, "r", &[&digest], OCI_MANIFEST, &body).await;
    assert_served(&reg, "r", &["v1", &sha], OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn refused_pushes_store_nothing() {
    let reg = Reg::start("");
    let repo = "r";
    let config = br#"{"os":"linux"}"#;
    reg.push_blob(repo, config).await;
    reg.push_blob("elsewhere", b"layer only in another repository")
        .await;
    let good = image_manifest(OCI_MANIFEST, descriptor(OCI_CONFIG, config), &[]);

    // A layer that is unknown, or only in another repository; a config that is unknown.
    for layer in [&b"never pushed"[..], b"layer only in another repository"] {
        let body = image_manifest(
            OCI_MANIFEST,
            descriptor(OCI_CONFIG, config),
            &[descriptor(OCI_LAYER, layer)],
        );
        reg.put_manifest(repo, "t", OCI_MANIFEST, &body)
            .await
            .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    }
    let body = image_manifest(OCI_MANIFEST, descriptor(OCI_CONFIG, b"{}"), &[]);
    reg.put_manifest(repo, "t", OCI_MANIFEST, &body)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");

    // An index whose child is not in the repository (the code is checked in its own test).
    let body = index_manifest(OCI_INDEX, &[child(OCI_MANIFEST, &good, "amd64")]);
    reg.put_manifest(repo, "t", OCI_INDEX, &body)
        .await
        .assert_status(400);

    // Malformed or invalid manifests.
    let docker_body = image_manifest(DOCKER_MANIFEST, descriptor(DOCKER_CONFIG, config), &[]);
    for (content_type, body) in [
        (OCI_MANIFEST, r#"{"schemaVersion":2,"#.to_owned()),
        (OCI_MANIFEST, "not json".to_owned()),
        (OCI_MANIFEST, String::new()),
        (
            OCI_MANIFEST,
            good.replace("\"schemaVersion\": 2", "\"schemaVersion\": 3"),
        ),
        (
            OCI_MANIFEST,
            r#"{"schemaVersion":2,"layers":[]}"#.to_owned(),
        ),
        (OCI_MANIFEST, good.replace(OCI_MANIFEST, "text/plain")),
        // The body's mediaType contradicts the Content-Type.
        (OCI_MANIFEST, docker_body.clone()),
        (OCI_INDEX, good.clone()),
    ] {
        let r = reg.put_manifest(repo, "t", content_type, &body).await;
        r.assert_error(400, "MANIFEST_INVALID");
    }

    // By digest, the digest must be the body's.
    let wrong = sha256(b"another body");
    reg.put_manifest(repo, &wrong, OCI_MANIFEST, &good)
        .await
        .assert_error(400, "DIGEST_INVALID");
    let bad_digest = "sha256:0123";
    reg.put_manifest(repo, bad_digest, OCI_MANIFEST, &good)
        .await
        .assert_error(400, "DIGEST_INVALID");
    // Tags must be valid.
    let long = "t".repeat(129);
    for tag in ["-dash", ".dot", long.as_str()] {
        reg.put_manifest(repo, tag, OCI_MANIFEST, &good)
            .await
            .assert_error(400, "TAG_INVALID");
    }

    // Nothing was stored: the repository has no manifests at all.
    reg.get(&format!("/v2/{repo}/tags/list"))
        .await
        .assert_error(404, "NAME_UNKNOWN");
    reg.get(&format!("/v2/{repo}/manifests/{}", sha256(good.as_bytes())))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    // The valid manifest is accepted at last, and by a tag of the maximum length.
    let max = "t".repeat(128);
    reg.push_manifest(repo, &max, OCI_MANIFEST, &good).await;
}

/// A missing child is `MANIFEST_UNKNOWN` (what Berth promises) followed by
/// `MANIFEST_BLOB_UNKNOWN` (what registry:2 sends), so clients that look for either find it.
#[tokio::test]
async fn index_with_missing_child_is_manifest_unknown_and_manifest_blob_unknown() {
    let reg = Reg::start("");
    let config = br#"{"os":"linux"}"#;
    reg.push_blob("r", config).await;
    let image = image_manifest(OCI_MANIFEST, descriptor(OCI_CONFIG, config), &[]);
    for (kind, child_kind) in [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)] {
        let body = index_manifest(kind, &[child(child_kind, &image, "amd64")]);
        let response = reg.put_manifest("r", "t", kind, &body).await;
        response.assert_error(400, "MANIFEST_UNKNOWN");
        assert_eq!(
            response.json()["errors"][1]["code"],
            "MANIFEST_BLOB_UNKNOWN"
        );
    }
}

/// An OCI image manifest of exactly `len` bytes, padded with an annotation.
fn manifest_of_len(config: &[u8], len: usize) -> String {
    let with_pad = |pad: usize| {
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [],
            "annotations": {"pad": "x".repeat(pad)},
        });
        serde_json::to_string(&m).unwrap()
    };
    let body = with_pad(len - with_pad(0).len());
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn manifests_up_to_4_mib_are_accepted_larger_ones_are_413() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let reg = Reg::start("");
    let config = b"{}";
    reg.push_blob("r", config).await;

    let at_limit = manifest_of_len(config, LIMIT);
    let digest = reg.push_manifest("r", "big", OCI_MANIFEST, &at_limit).await;
    let r = reg.get(&format!("/v2/r/manifests/{digest}")).await;
    r.assert_status(200);
    assert!(r.body == at_limit.as_bytes());

    let over = manifest_of_len(config, LIMIT + 1);
    // Sent raw: the server answers as soon as it knows and closes the connection, which a
    // client still sending the body may see as a broken pipe instead of the answer.
    // A Content-Length over the limit is refused before any byte is read.
    let ct = format!("Content-Type: {OCI_MANIFEST}");
    let length = format!("Content-Length: {}", over.len());
    let path = "/v2/r/manifests/over";
    let (status, text) = raw_request(&reg.url, "PUT", path, &[&length, &ct], &[]).await;
    assert_eq!(status, 413, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["errors"][0]["code"], "MANIFEST_INVALID");
    // Chunked, without a Content-Length: refused once the limit is crossed. The chunk is sent
    // without its end, so the server has read every byte sent when it closes.
    let mut chunk = format!("{:x}\r\n", over.len()).into_bytes();
    chunk.extend_from_slice(over.as_bytes());
    let te = "Transfer-Encoding: chunked";
    let (status, text) = raw_request(&reg.url, "PUT", path, &[te, &ct], &chunk).await;
    assert_eq!(status, 413, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["errors"][0]["code"], "MANIFEST_INVALID");
    reg.get("/v2/r/manifests/over")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn unknown_manifests_and_repositories_are_404() {
    let reg = Reg::start("");
    let (_, digest) = reg.push_image("r", "latest", "x").await;
    let unknown = sha256(b"no such manifest");
    // A blob is not a manifest.
    let layer = sha256(b"layer of x");
    for path in [
        format!("/v2/r/manifests/{layer}"),
        "/v2/r/manifests/nosuchtag".to_owned(),
        format!("/v2/r/manifests/{unknown}"),
        "/v2/nosuchrepo/manifests/latest".to_owned(),
        format!("/v2/nosuchrepo/manifests/{digest}"),
    ] {
        reg.get(&path).await.assert_error(404, "MANIFEST_UNKNOWN");
        let r = reg.head(&path).await;
        r.assert_status(404);
        assert!(r.body.is_empty(), "{path}");
        reg.delete(&path)
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    reg.get("/v2/nosuchrepo/tags/list")
        .await
        .assert_error(404, "NAME_UNKNOWN");
    reg.get(&format!("/v2/nosuchrepo/blobs/{unknown}"))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    // The manifest stays where it was pushed.
    reg.get("/v2/r/manifests/latest").await.assert_status(200);
}
