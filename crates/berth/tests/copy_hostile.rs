//! `berth copy` from a hostile source (a server the test runs on 127.0.0.1): a manifest over
//! the 4 MiB limit sent without a length, a manifest that does not hash to its announced
//! digest, and a blob that does not hash to its descriptor's digest. Each is refused with
//! exit code 5 and nothing is tagged or stored at the target.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod copy_kit;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use common::oci::{descriptor, image_manifest, sha256, Reg, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use copy_kit::{addr, manifest_digest, Env};

const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;
const GOOD_LAYER: &[u8] = b"the layer the manifest promises";
const EVIL_LAYER: &[u8] = b"the layer the server sends inst";

fn manifest() -> String {
    image_manifest(
        OCI_MANIFEST,
        descriptor(OCI_CONFIG, CONFIG),
        &[descriptor(OCI_LAYER, GOOD_LAYER)],
    )
}

fn respond(status: u16, content_type: &str, body: Body) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

async fn hostile(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let m = manifest();
    match path.as_str() {
        "/v2/" => respond(200, "application/json", Body::from("{}")),
        // 5 MiB in 64 KiB chunks, no Content-Length: only counting while reading stops it.
        "/v2/big/manifests/1" => {
            let chunks = (0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
            respond(
                200,
                OCI_MANIFEST,
                Body::from_stream(futures_util::stream::iter(chunks)),
            )
        }
        "/v2/liar/manifests/1" => {
            let mut r = respond(200, OCI_MANIFEST, Body::from(m));
            let other = sha256(b"something else");
            r.headers_mut()
                .insert("docker-content-digest", other.parse().unwrap());
            r
        }
        "/v2/evil/manifests/1" => respond(200, OCI_MANIFEST, Body::from(m)),
        p if p == format!("/v2/evil/blobs/{}", sha256(CONFIG)) => {
            respond(200, "application/octet-stream", Body::from(CONFIG))
        }
        p if p == format!("/v2/evil/blobs/{}", sha256(GOOD_LAYER)) => {
            respond(200, "application/octet-stream", Body::from(EVIL_LAYER))
        }
        _ => respond(404, "application/json", Body::from(r#"{"errors":[]}"#)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_sources_are_refused_cleanly() {
    assert_eq!(GOOD_LAYER.len(), EVIL_LAYER.len(), "same size, other bytes");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(hostile)).await;
    });
    let env = Env::new();
    let target = Reg::start("");
    let t = addr(&target.url);
    for (repo, says) in [
        ("big", "limit"),
        ("liar", "hashes to"),
        ("evil", "hashes to"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        for dst in [
            format!("docker://{t}/{repo}:1"),
            format!("oci:{}:1", dir.path().join("layout").display()),
        ] {
            let out = env
                .copy(&[], &format!("docker://{source}/{repo}:1"), &dst)
                .await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(5), "{repo} -> {dst}: {stderr}");
            assert!(
                stderr.contains("refused content") && stderr.contains(says),
                "{stderr}"
            );
        }
        assert_eq!(manifest_digest(&target, repo, "1").await, None);
        assert!(!dir.path().join("layout/index.json").exists());
    }
    // Nothing of the bad layer was stored, under either digest.
    for d in [sha256(GOOD_LAYER), sha256(EVIL_LAYER)] {
        target
            .head(&format!("/v2/evil/blobs/{d}"))
            .await
            .assert_status(404);
    }
    server.abort();
}
