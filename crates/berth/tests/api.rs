//! OCI Distribution API against the real `berth` binary: the version check, errors for unknown
//! endpoints and methods, repository names (deep, tricky, invalid), path traversal attempts
//! and disabled deletes. Blobs, manifests and listings have their own files (`api_*.rs`).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::oci::{raw_request, sha256, Reg, OCI_MANIFEST};
use common::write_config;
use serde_json::json;

#[tokio::test]
async fn version_check() {
    let reg = Reg::start("");
    for path in ["/v2/", "/v2"] {
        let r = reg.get(path).await;
        r.assert_status(200);
        assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.json(), json!({}));
    }
    let r = reg.head("/v2/").await;
    r.assert_status(200);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let reg = Reg::start("");
    for path in ["/v2/r", "/v3/", "/v2/r/nothing/here", "/v2/r/tags"] {
        reg.get(path).await.assert_error(404, "NOT_FOUND");
    }
    // registry:2 answers its root (uptime probes point at it).
    reg.get("/").await.assert_status(200);
    let d = sha256(b"x");
    for (method, path) in [
        ("POST", "/v2/".to_owned()),
        ("POST", "/v2/_catalog".to_owned()),
        ("DELETE", "/v2/r/tags/list".to_owned()),
        ("POST", "/v2/r/manifests/latest".to_owned()),
        ("PATCH", "/v2/r/manifests/latest".to_owned()),
        ("PUT", format!("/v2/r/blobs/{d}")),
        ("POST", format!("/v2/r/blobs/{d}")),
        ("PATCH", "/v2/r/blobs/uploads/".to_owned()),
        ("PUT", "/v2/r/blobs/uploads/".to_owned()),
        ("DELETE", format!("/v2/r/referrers/{d}")),
    ] {
        let r = reg.send(method, &path, &[], Vec::new()).await;
        r.assert_error(405, "UNSUPPORTED");
    }
}

#[tokio::test]
async fn deep_and_unusual_names_work() {
    let reg = Reg::start("");
    let names = [
        "a/b/c/d/e/f/g/h",
        "a/manifests/blobs",
        "tags/list",
        "my-app/x__y/z.w",
    ];
    for name in names {
        let (body, digest) = reg.push_image(name, "v1", name).await;
        for reference in ["v1", digest.as_str()] {
            let r = reg.get(&format!("/v2/{name}/manifests/{reference}")).await;
            r.assert_status(200);
            assert_eq!(r.body, body.as_bytes(), "{name}");
        }
        let r = reg.get(&format!("/v2/{name}/tags/list")).await;
        r.assert_status(200);
        assert_eq!(r.json(), json!({"name": name, "tags": ["v1"]}));
        let location = reg.start_upload(name).await;
        assert!(
            location.contains(&format!("/v2/{name}/blobs/uploads/")),
            "{location}"
        );
        reg.delete(&location).await.assert_status(204);
    }
    let r = reg.get("/v2/_catalog").await;
    let mut listed: Vec<String> = serde_json::from_value(r.json()["repositories"].clone()).unwrap();
    listed.sort();
    let mut want = names.map(String::from).to_vec();
    want.sort();
    assert_eq!(listed, want);
}

#[tokio::test]
async fn invalid_names_are_name_invalid() {
    let reg = Reg::start("");
    let d = sha256(b"x");
    let long = "a".repeat(256);
    for name in [
        "Upper",
        "a//b",
        "-a",
        "a-",
        "a...b",
        "a/_b",
        long.as_str(),
        "a%20b",
    ] {
        for (method, path) in [
            ("GET", format!("/v2/{name}/tags/list")),
            ("GET", format!("/v2/{name}/manifests/latest")),
            ("PUT", format!("/v2/{name}/manifests/latest")),
            ("HEAD", format!("/v2/{name}/blobs/{d}")),
            ("POST", format!("/v2/{name}/blobs/uploads/")),
            ("GET", format!("/v2/{name}/referrers/{d}")),
        ] {
            let r = reg.send(method, &path, &[], Vec::new()).await;
            if method == "HEAD" {
                assert_eq!(r.status, 400, "{path}");
            } else {
                r.assert_error(400, "NAME_INVALID");
            }
        }
    }
    // A name of 255 characters is fine.
    let max = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    reg.push_image(&max, "t", "max").await;
}

#[tokio::test]
async fn path_tricks_are_refused_and_the_server_stays_healthy() {
    let reg = Reg::start("");
    let (body, _) = reg.push_image("a/b", "latest", "x").await;
    // Sent raw: an HTTP client would resolve `..` and `%2e%2e` before sending.
    for (method, path, status, code) in [
        ("GET", "/v2/../etc/passwd", 404, "NOT_FOUND"),
        ("GET", "/v2/a/../../etc/passwd", 404, "NOT_FOUND"),
        (
            "GET",
            "/v2/a/%2e%2e/b/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        ("GET", "/v2/a/../b/manifests/latest", 400, "NAME_INVALID"),
        ("GET", "/v2/%2e%2e/%2e%2e/manifests/x", 400, "NAME_INVALID"),
        (
            "PUT",
            "/v2/a/%2E%2E/b/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        ("GET", "/v2/a/b/../b/tags/list", 400, "NAME_INVALID"),
        ("GET", "/v2/a/blobs/sha256:../../x", 404, "NOT_FOUND"),
        (
            "GET",
            "/v2/a/blobs/sha256:..%2f..%2fx",
            400,
            "DIGEST_INVALID",
        ),
        ("DELETE", "/v2/a/blobs/sha256:../../../x", 404, "NOT_FOUND"),
        // Not a tag: no such manifest on a read (the conformance suite's answer); a PUT of
        // it is TAG_INVALID.
        ("GET", "/v2/a/b/manifests/..", 404, "MANIFEST_UNKNOWN"),
        (
            "GET",
            "/v2/a/b/manifests/..%2f..%2fx",
            404,
            "MANIFEST_UNKNOWN",
        ),
        ("PUT", "/v2/a/b/manifests/..", 400, "TAG_INVALID"),
        (
            "GET",
            "/v2/a/b/blobs/uploads/..%2f..%2fx",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        ("PATCH", "/v2/a/b/blobs/uploads/../../x", 404, "NOT_FOUND"),
    ] {
        let (got, text) = raw_request(&reg.url, method, path, &[], &[]).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        let err: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        assert_eq!(err["errors"][0]["code"], code, "{method} {path}");
    }
    reg.get("/v2/").await.assert_status(200);
    let r = reg.get("/v2/a/b/manifests/latest").await;
    r.assert_status(200);
    assert_eq!(r.body, body.as_bytes());
    // Nothing was written outside the data directory.
    let mut entries: Vec<String> = std::fs::read_dir(reg.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["config.yml", "data"]);
}

#[tokio::test]
async fn deletes_disabled_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let yaml = std::fs::read_to_string(&config).unwrap();
    let disabled = yaml.replace("delete: {enabled: true}", "delete: {enabled: false}");
    assert_ne!(yaml, disabled);
    std::fs::write(&config, disabled).unwrap();
    let reg = Reg::start_in(dir, config);

    let (body, digest) = reg.push_image("r", "latest", "kept").await;
    let layer = sha256(b"layer of kept");
    for path in [
        format!("/v2/r/blobs/{layer}"),
        format!("/v2/r/manifests/{digest}"),
        "/v2/r/manifests/latest".to_owned(),
    ] {
        reg.delete(&path).await.assert_error(405, "UNSUPPORTED");
    }
    reg.head(&format!("/v2/r/blobs/{layer}"))
        .await
        .assert_status(200);
    for reference in ["latest", digest.as_str()] {
        let r = reg.get(&format!("/v2/r/manifests/{reference}")).await;
        r.assert_status(200);
        assert_eq!(r.body, body.as_bytes());
    }
    // Cancelling an upload is not a delete of content: still allowed.
    let location = reg.start_upload("r").await;
    reg.delete(&location).await.assert_status(204);
    // Pushes still work.
    reg.push_manifest("r", "again", OCI_MANIFEST, &body).await;
}
