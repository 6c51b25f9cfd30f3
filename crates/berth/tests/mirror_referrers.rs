//! Referrers (OCI 1.1 `GET /v2/<name>/referrers/<digest>`) through the pull-through cache, with
//! real servers on 127.0.0.1: a second `berth serve` as an upstream that has the referrers API
//! (an image, a signature and an SBOM referring to it), and Debian's docker-registry 2.8 as one
//! that has not. The cache lists what the upstream lists, with the `artifactType` filter and
//! `OCI-Filters-Applied`, by host prefix and by `?ns=`; keeps serving it (and the referrer
//! manifests) once the upstream is gone; and answers an empty index, not an error, when the
//! upstream has no referrers API.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod mirror_kit;

use std::time::Duration;

use common::oci::{
    artifact_manifest, manifest_descriptor, sha256, Api, Reg, OCI_INDEX, OCI_MANIFEST,
};
use mirror_kit::{data, have_registry2, push_image, upstreams_yaml, Registry2};

const SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";

/// `?artifactType=<t>`, with the `+` of media types escaped (a bare `+` is a space in a query).
fn filter(artifact_type: &str) -> String {
    format!("?artifactType={}", artifact_type.replace('+', "%2B"))
}

/// The digests an index lists, in order.
fn listed(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Asks `api` for the referrers at `path` (with `query`), checks the response is an index, and
/// returns the digests it lists and its `OCI-Filters-Applied`.
async fn referrers(api: &Api, path: &str, query: &str) -> (Vec<String>, String) {
    let r = api.get(&format!("{path}{query}")).await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), OCI_INDEX, "{path}{query}");
    let index = r.json();
    assert_eq!(index["mediaType"], OCI_INDEX);
    (listed(&index), r.header("oci-filters-applied").to_owned())
}

/// Pushes an artifact of `artifact_type` referring to the manifest `subject` into `repo`;
/// returns its digest.
async fn push_artifact(api: &Api, repo: &str, subject: &str, artifact_type: &str) -> String {
    let layer = format!("{artifact_type} payload").into_bytes();
    api.push_blob(repo, b"{}").await;
    api.push_blob(repo, &layer).await;
    let body = artifact_manifest(
        artifact_type,
        &layer,
        manifest_descriptor(OCI_MANIFEST, subject),
        artifact_type,
    );
    api.push_manifest(repo, &sha256(body.as_bytes()), OCI_MANIFEST, &body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_come_through_the_cache_and_stay_when_the_upstream_is_gone() {
    let up = Reg::start("");
    let (image, subject) = up.push_image("org/app", "1", "signed").await;
    let sig = push_artifact(&up, "org/app", &image, SIGNATURE).await;
    let sbom = push_artifact(&up, "org/app", &image, SBOM).await;
    let mut both = vec![sig.clone(), sbom.clone()];
    both.sort();
    let cache = Reg::start(&upstreams_yaml(
        &[("ghcr.io", &up.server.url, "ttl: 1s, timeout: 2s")],
        "",
    ));

    let path = format!("/v2/ghcr.io/org/app/referrers/{subject}");
    assert_eq!(
        referrers(&cache, &path, "").await,
        (both.clone(), String::new())
    );
    assert_eq!(
        referrers(&cache, &path, &filter(SIGNATURE)).await,
        (vec![sig.clone()], "artifactType".to_owned())
    );
    // The same repository routed by containerd's ?ns=.
    let by_ns = format!("/v2/org/app/referrers/{subject}");
    assert_eq!(
        referrers(&cache, &by_ns, "?ns=ghcr.io").await.0,
        both.clone()
    );
    // A client that found a signature pulls it next: from the cache.
    let r = cache
        .send(
            "GET",
            &format!("/v2/ghcr.io/org/app/manifests/{sig}"),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(sha256(&r.body), sig);

    // The upstream goes away; after the TTL the cache asks it, fails, and serves what it stored.
    drop(up);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(referrers(&cache, &path, "").await.0, both);
    assert_eq!(
        referrers(&cache, &path, &filter(SBOM)).await,
        (vec![sbom.clone()], "artifactType".to_owned())
    );
    for d in [&sig, &sbom] {
        let r = cache
            .send(
                "GET",
                &format!("/v2/ghcr.io/org/app/manifests/{d}"),
                &[("accept", OCI_MANIFEST)],
                Vec::new(),
            )
            .await;
        r.assert_status(200);
        assert_eq!(&sha256(&r.body), d);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_the_referrers_api_gives_an_empty_index() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let (_, subject) = push_image(&up.api(), "org/app", "1", &[data(1000, 1)], None).await;
    let cache = Reg::start(&upstreams_yaml(
        &[("ghcr.io", &up.url, "ttl: 1s, timeout: 2s")],
        "",
    ));
    let path = format!("/v2/ghcr.io/org/app/referrers/{subject}");
    assert_eq!(
        referrers(&cache, &path, "").await,
        (Vec::new(), String::new())
    );
    assert_eq!(
        referrers(&cache, &path, &filter(SIGNATURE)).await,
        (Vec::new(), "artifactType".to_owned())
    );
    assert!(
        up.requests("GET", &format!("/v2/org/app/referrers/{subject}")) >= 1,
        "the cache asked the upstream"
    );
}
