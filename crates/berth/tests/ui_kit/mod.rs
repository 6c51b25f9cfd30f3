//! Fixtures for the web UI tests: seeding a registry with what the pages must show (a
//! multi-arch index with a referrer, an image with hostile config labels and history, a
//! cosign-style `.sig` tag, a repository with many tags), fetching pages as a browser would,
//! and reading the UI's server timing.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::common::oci::{
    descriptor, push_multi_arch, sha256, Api, Pushed, Resp, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST,
};

/// The hostile label value: markup that must come out escaped.
pub const HOSTILE: &str = "<script>alert(1)</script>";

/// What [`seed`] pushed.
pub struct Seeded {
    /// `team/multi:v1`, an index of linux/amd64 and linux/arm64 with a signature referrer.
    pub multi: Pushed,
    /// The digest of `team/app:v2`, an image with labels, env, entrypoint and history.
    pub app: String,
    /// The cosign-style tag `sha256-<hex of app>.sig`.
    pub sig_tag: String,
}

/// Pushes the multi-arch index, the labelled image and its `.sig` tag.
pub async fn seed(api: &Api) -> Seeded {
    let multi = push_multi_arch(api, "team/multi").await;
    let layer = b"app layer".to_vec();
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": {
            "Labels": {"org.opencontainers.image.title": HOSTILE, "x\"><img src=x>": "v"},
            "Env": ["PATH=/usr/bin", "GREETING=<b>hi</b>"],
            "Entrypoint": ["/bin/app"],
            "Cmd": ["--serve"],
        },
        "history": [
            {"created": "2026-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
            {"created_by": "RUN echo '<iframe src=x>'", "empty_layer": true},
        ],
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    })
    .to_string()
    .into_bytes();
    api.push_blob("team/app", &config).await;
    api.push_blob("team/app", &layer).await;
    let body = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
        "annotations": {"org.example.note": "\"quoted\" & <i>marked</i>"},
    })
    .to_string();
    let app = api
        .push_manifest("team/app", "v2", OCI_MANIFEST, &body)
        .await;
    // A cosign-style signature: an image manifest under the tag `sha256-<hex>.sig`.
    let payload = b"{\"critical\":{}}".to_vec();
    api.push_blob("team/app", b"{}").await;
    api.push_blob("team/app", &payload).await;
    let sig_body = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"{}"),
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", &payload)],
    })
    .to_string();
    let sig_tag = format!("sha256-{}.sig", app.trim_start_matches("sha256:"));
    api.push_manifest("team/app", &sig_tag, OCI_MANIFEST, &sig_body)
        .await;
    Seeded {
        multi,
        app,
        sig_tag,
    }
}

/// Tags one image `count` times in `repo` (`t0000`, `t0001`, …), 16 PUTs at a time.
pub async fn push_many_tags(api: &Api, repo: &str, count: usize) -> String {
    let (body, digest) = api.push_image(repo, "t0000", "many").await;
    let tags: Vec<String> = (1..count).map(|i| format!("t{i:04}")).collect();
    futures_util::stream::iter(tags)
        .map(|tag| {
            let body = body.clone();
            async move {
                api.put_manifest(repo, &tag, OCI_MANIFEST, &body)
                    .await
                    .assert_status(201);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    digest
}

/// `count` repositories `many/r0000`, `many/r0001`, … holding one image (its blobs mounted
/// from the first), 16 repositories at a time.
pub async fn push_many_repositories(api: &Api, count: usize) {
    let (body, _) = api.push_image("many/r0000", "latest", "repos").await;
    let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
    let blobs: Vec<String> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    futures_util::stream::iter(1..count)
        .map(|i| {
            let (body, blobs) = (body.clone(), blobs.clone());
            async move {
                let repo = format!("many/r{i:04}");
                for digest in &blobs {
                    let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from=many/r0000");
                    api.send("POST", &path, &[], Vec::new())
                        .await
                        .assert_status(201);
                }
                api.put_manifest(&repo, "latest", OCI_MANIFEST, &body)
                    .await
                    .assert_status(201);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// A GET as a browser sends it (asking for HTML), with the session `cookie` when given.
pub async fn page(api: &Api, path: &str, cookie: Option<&str>) -> Resp {
    let mut headers = vec![("accept", "text/html,application/xhtml+xml")];
    let cookie_header;
    if let Some(c) = cookie {
        cookie_header = c.to_owned();
        headers.push(("cookie", &cookie_header));
    }
    api.send("GET", path, &headers, Vec::new()).await
}

/// A page fetched with its timings: the client's (round trip) and the server's own
/// (`Server-Timing: app;dur=`).
pub async fn timed_page(api: &Api, path: &str) -> (Resp, Duration, f64) {
    let started = Instant::now();
    let r = page(api, path, None).await;
    let elapsed = started.elapsed();
    let server_ms = r
        .header("server-timing")
        .strip_prefix("app;dur=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no server timing: {:?}", r.header("server-timing")));
    (r, elapsed, server_ms)
}

/// Asserts the headers every UI page carries.
#[track_caller]
pub fn assert_security_headers(r: &Resp) {
    let csp = r.header("content-security-policy");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part:?}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("referrer-policy"), "same-origin");
    assert!(!r.has("www-authenticate"), "no browser Basic-auth dialog");
}

/// Asserts that a page has no inline script or style: every `<script` loads a file, and no
/// element carries a `style=` attribute (the CSP would block both).
#[track_caller]
pub fn assert_no_inline_code(html: &str) {
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..html[i..].find('>').map_or(html.len(), |e| i + e)];
        assert!(tag.contains(" src="), "inline script: {tag}");
    }
    assert!(!html.contains(" style="), "inline style attribute");
    assert!(!html.contains("<style"), "inline style element");
}
