//! What a registry:2 user switching over meets: answers, headers and log lines that must be
//! registry:2's (or the OCI conformance suite's) so that existing clients, CORS setups such
//! as Joxit's UI, uptime probes and log pipelines keep working unchanged.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::oci::{raw_request, sha256, Reg};
use common::{write_config, Server};

/// OCI conformance (distribution-spec v1.1.1): a manifest reference that is not a valid tag
/// names no manifest; only a PUT with it is `TAG_INVALID`.
#[tokio::test]
async fn invalid_references_are_unknown_manifests() {
    let reg = Reg::start("");
    reg.push_image("app", "v1", "x").await;
    for method in ["GET", "DELETE"] {
        let r = reg
            .send(
                method,
                "/v2/app/manifests/.INVALID_MANIFEST_NAME",
                &[],
                Vec::new(),
            )
            .await;
        r.assert_error(404, "MANIFEST_UNKNOWN");
    }
    let r = reg.head("/v2/app/manifests/.INVALID_MANIFEST_NAME").await;
    assert_eq!(r.status, 404);
    let r = reg
        .put_manifest(
            "app",
            ".INVALID_MANIFEST_NAME",
            common::oci::OCI_MANIFEST,
            "{}",
        )
        .await;
    r.assert_error(400, "TAG_INVALID");
}

/// `http.headers` with a list sends every value; OPTIONS is answered with `Allow` on every
/// endpoint without credentials (a browser's CORS preflight sends none); `GET /` is 200.
#[tokio::test]
async fn cors_headers_options_and_root_answer_like_registry2() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    common::auth::add_user(&htpasswd, "alice", "alice-pw");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {}}}\nauth:\n  htpasswd: {{realm: r, path: {}}}\nhttp:\n  addr: 127.0.0.1:0\n  headers:\n    Access-Control-Allow-Origin: ['http://ui.example']\n    Access-Control-Allow-Methods: [HEAD, GET, OPTIONS, DELETE]\n    Access-Control-Allow-Headers: [Authorization, Accept]\n",
            dir.path().join("data").display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let server = Server::start(&[config], &[]);
    let client = reqwest::Client::new();
    let r = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v2/app/manifests/v1", server.url),
        )
        .header("origin", "http://ui.example")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["allow"], "GET, HEAD, PUT, DELETE, OPTIONS");
    let methods: Vec<&str> = r
        .headers()
        .get_all("access-control-allow-methods")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(methods, ["HEAD", "GET", "OPTIONS", "DELETE"]);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://ui.example"
    );
    for path in [
        "/v2/",
        "/v2/_catalog",
        "/v2/a/b/tags/list",
        "/v2/app/blobs/uploads/",
    ] {
        let r = client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().contains_key("allow"), "{path}");
    }
    // The API itself still wants credentials, and the error carries the CORS headers too.
    let r = client
        .get(format!("{}/v2/", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()
            .get_all("access-control-allow-methods")
            .iter()
            .count(),
        4
    );
    let r = client.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 200, "uptime probes pointed at / stay green");
}

/// A stored manifest that no longer matches its digest is the server's fault: a logged 500,
/// not the client's `DIGEST_INVALID`.
#[tokio::test]
async fn a_corrupt_stored_manifest_is_a_server_error() {
    let reg = Reg::start("");
    let (_, digest) = reg.push_image("app", "v1", "to be damaged").await;
    let hex = digest.trim_start_matches("sha256:");
    let data = reg
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    std::fs::write(&data, b"{\"damaged\": true}").unwrap();
    let reg = reg.restart(); // the in-memory manifest cache holds the good copy
    let r = reg.get(&format!("/v2/app/manifests/{digest}")).await;
    r.assert_error(500, "UNKNOWN");
    assert!(
        !r.text().contains(hex),
        "details are logged, not sent: {}",
        r.text()
    );
    let logs = reg.server.logs(Duration::from_millis(300)).join("\n");
    assert!(logs.contains("does not match its digest"), "{logs}");
}

/// Under `formatter: json`, the access line has registry:2's field names; a password in a
/// URL never reaches the log.
#[tokio::test]
async fn access_log_lines_use_registry2_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(&[&config], &[("REGISTRY_LOG_FORMATTER", "json")]);
    let data = b"logged blob";
    let path = format!("/v2/logs/app/blobs/uploads/?digest={}", sha256(data));
    let (status, _) = raw_request(
        &server.url,
        "POST",
        &path,
        &["User-Agent: log-test/1", "Content-Length: 11"],
        data,
    )
    .await;
    assert_eq!(status, 201);
    let _ = raw_request(
        &server.url,
        "GET",
        "/v2/x/tags/list?n=1&password=hunter2&PASS%57ORD=hunter3",
        &[],
        b"",
    )
    .await;
    let logs = server.logs(Duration::from_millis(300));
    let lines: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let access = lines
        .iter()
        .find(|l| l["http.request.method"] == "POST")
        .unwrap_or_else(|| panic!("no access line in {logs:?}"));
    assert_eq!(access["msg"], "response completed");
    assert_eq!(access["http.request.uri"], path);
    assert_eq!(access["http.response.status"], 201);
    assert_eq!(access["http.response.written"], 0);
    assert_eq!(access["http.request.useragent"], "log-test/1");
    assert!(access["http.request.remoteaddr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(access["vars.name"], "logs/app");
    assert!(!logs.join("\n").contains("hunter"), "{logs:?}");
    assert!(lines
        .iter()
        .any(|l| l["http.request.uri"]
            == "/v2/x/tags/list?n=1&password=REDACTED&PASS%57ORD=REDACTED"));
}

/// A pull-through cache in read-only mode (during a backup) still serves pulls it cannot
/// store, uncached, instead of failing them; writes are refused as everywhere.
#[tokio::test]
async fn a_read_only_mirror_serves_pulls_uncached() {
    let upstream = Reg::start("");
    let (manifest, _) = upstream.push_image("ops/app", "v1", "mirrored").await;
    let mirror = Reg::start(&format!(
        "proxy: {{remoteurl: \"{}\"}}\n",
        upstream.server.url
    ));
    // The same data and config, restarted read-only (the server is stopped, the directory kept).
    let common::oci::Reg {
        server,
        dir,
        config,
        ..
    } = mirror;
    drop(server);
    let readonly = Server::start(
        &[&config],
        &[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")],
    );
    let api = common::oci::Api::new(&readonly.url);
    let accept = [("accept", common::oci::OCI_MANIFEST)];
    let r = api
        .send("GET", "/v2/ops/app/manifests/v1", &accept, Vec::new())
        .await;
    r.assert_status(200);
    assert_eq!(r.text(), manifest);
    let layer = sha256(b"layer of mirrored");
    let r = api.get(&format!("/v2/ops/app/blobs/{layer}")).await;
    r.assert_status(200);
    assert_eq!(r.body, b"layer of mirrored");
    let r = api
        .send(
            "PUT",
            "/v2/ops/app/manifests/v2",
            &accept,
            manifest.into_bytes(),
        )
        .await;
    r.assert_error(405, "UNSUPPORTED");
    let logs = readonly.logs(Duration::from_millis(300)).join("\n");
    assert!(logs.contains("served but not cached"), "{logs}");
    drop(readonly);
    drop(dir);
}
