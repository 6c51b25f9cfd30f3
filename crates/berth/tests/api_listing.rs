//! OCI Distribution listing APIs against the real `berth` binary: tags (sorted, `n`/`last`
//! pagination with `Link`, tag deletion), the catalog, and the OCI 1.1 referrers API.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::oci::{
    artifact_manifest, descriptor, manifest_descriptor, sha256, Api, Reg, OCI_EMPTY, OCI_INDEX,
    OCI_MANIFEST,
};
use serde_json::{json, Value};

/// The target of a `Link: <url>; rel="next"` header, checked for shape.
#[track_caller]
fn next_link(link: &str) -> String {
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("not a next link: {link:?}"));
    target.to_owned()
}

/// The query parameters of a URL, decoded enough for these names.
fn query(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2F", "/").replace("%2f", "/")))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Follows `Link` headers from `first` and returns every page's items under `key`.
async fn all_pages(api: &Api, first: &str, key: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(url) = next {
        let r = api.get(&url).await;
        r.assert_status(200);
        assert_eq!(r.header("content-type"), "application/json");
        pages.push(strings(&r.json()[key]));
        next = r.has("link").then(|| next_link(r.header("link")));
        assert!(pages.len() < 20, "pagination does not end");
    }
    pages
}

#[tokio::test]
async fn tags_are_sorted_and_paginated_with_link() {
    let reg = Reg::start("");
    let (body, digest) = reg.push_image("r", "b", "img").await;
    for tag in ["e", "a", "d", "c", "B"] {
        reg.push_manifest("r", tag, OCI_MANIFEST, &body).await;
    }
    let r = reg.get("/v2/r/tags/list").await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(!r.has("link"));
    assert_eq!(
        r.json(),
        json!({"name": "r", "tags": ["B", "a", "b", "c", "d", "e"]})
    );

    let r = reg.get("/v2/r/tags/list?n=2").await;
    r.assert_status(200);
    assert_eq!(strings(&r.json()["tags"]), ["B", "a"]);
    let link = next_link(r.header("link"));
    assert!(link.contains("/v2/r/tags/list?"), "{link}");
    let mut q = query(&link);
    q.sort();
    assert_eq!(q, [("last".into(), "a".into()), ("n".into(), "2".into())]);
    assert_eq!(
        all_pages(&reg, "/v2/r/tags/list?n=2", "tags").await,
        [vec!["B", "a"], vec!["b", "c"], vec!["d", "e"]]
    );
    assert_eq!(
        all_pages(&reg, "/v2/r/tags/list?n=4&last=a", "tags").await,
        [vec!["b", "c", "d", "e"]]
    );
    for (path, tags) in [
        ("/v2/r/tags/list?last=c", vec!["d", "e"]),
        ("/v2/r/tags/list?n=10", vec!["B", "a", "b", "c", "d", "e"]),
        ("/v2/r/tags/list?n=0", vec![]),
        ("/v2/r/tags/list?n=3&last=e", vec![]),
    ] {
        let r = reg.get(path).await;
        r.assert_status(200);
        assert_eq!(strings(&r.json()["tags"]), tags, "{path}");
        assert!(!r.has("link"), "{path}: {}", r.header("link"));
    }
    for n in ["abc", "-1"] {
        reg.get(&format!("/v2/r/tags/list?n={n}"))
            .await
            .assert_error(400, "PAGINATION_NUMBER_INVALID");
    }

    // Deleting a tag removes only that tag.
    let r = reg.delete("/v2/r/manifests/c").await;
    r.assert_status(202);
    reg.get("/v2/r/manifests/c")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    reg.delete("/v2/r/manifests/c")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    for reference in ["a", "b", "d", digest.as_str()] {
        let r = reg.get(&format!("/v2/r/manifests/{reference}")).await;
        r.assert_status(200);
        assert_eq!(r.body, body.as_bytes());
    }
    let r = reg.get("/v2/r/tags/list").await;
    assert_eq!(strings(&r.json()["tags"]), ["B", "a", "b", "d", "e"]);
}

#[tokio::test]
async fn catalog_lists_repositories_with_manifests_and_paginates() {
    let reg = Reg::start("");
    for repo in ["zeta", "alpha-x", "alpha/beta", "alpha", "m/n/o"] {
        reg.push_image(repo, "latest", repo).await;
    }
    // A repository with blobs but no manifest is not listed.
    reg.push_blob("blobsonly", b"data").await;
    let all = ["alpha", "alpha/beta", "alpha-x", "m/n/o", "zeta"];

    let r = reg.get("/v2/_catalog").await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(!r.has("link"));
    assert_eq!(r.json(), json!({"repositories": all}));

    let r = reg.get("/v2/_catalog?n=2").await;
    let link = next_link(r.header("link"));
    assert!(link.contains("/v2/_catalog?"), "{link}");
    let mut q = query(&link);
    q.sort();
    assert_eq!(
        q,
        [
            ("last".into(), "alpha/beta".into()),
            ("n".into(), "2".into())
        ]
    );
    let pages = all_pages(&reg, "/v2/_catalog?n=2", "repositories").await;
    assert_eq!(
        pages,
        [
            vec!["alpha", "alpha/beta"],
            vec!["alpha-x", "m/n/o"],
            vec!["zeta"]
        ]
    );
    let pages = all_pages(&reg, "/v2/_catalog?n=3&last=alpha", "repositories").await;
    assert_eq!(
        pages,
        [vec!["alpha/beta", "alpha-x", "m/n/o"], vec!["zeta"]]
    );
    let r = reg.get("/v2/_catalog?n=0").await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"repositories": []}));
    assert!(!r.has("link"));
    reg.get("/v2/_catalog?n=many")
        .await
        .assert_error(400, "PAGINATION_NUMBER_INVALID");
}

/// Referrers of `subject` in `repo`, optionally filtered; checks the index shape and headers.
async fn referrers(api: &Api, repo: &str, subject: &str, filter: Option<&str>) -> Vec<Value> {
    let path = match filter {
        Some(t) => format!("/v2/{repo}/referrers/{subject}?artifactType={t}"),
        None => format!("/v2/{repo}/referrers/{subject}"),
    };
    let r = api.get(&path).await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let filters = if filter.is_some() { "artifactType" } else { "" };
    assert_eq!(r.header("oci-filters-applied"), filters, "{path}");
    let index = r.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let mut manifests = index["manifests"].as_array().unwrap().clone();
    manifests.sort_by_key(|d| d["digest"].as_str().unwrap().to_owned());
    manifests
}

/// What the referrers index must list for an artifact manifest.
fn expected(body: &str, artifact_type: &str, note: &str) -> Value {
    let mut d = manifest_descriptor(OCI_MANIFEST, body);
    d["artifactType"] = json!(artifact_type);
    d["annotations"] = json!({"org.example.note": note});
    d
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|d| d["digest"].as_str().unwrap().to_owned());
    v
}

#[tokio::test]
async fn referrers_list_filter_and_follow_deletes() {
    let reg = Reg::start("");
    let (image, subject) = reg.push_image("r", "v1", "subject").await;
    let subject_desc = manifest_descriptor(OCI_MANIFEST, &image);
    reg.push_blob("r", b"{}").await;
    reg.push_blob("r", b"sbom contents").await;
    reg.push_blob("r", b"signature").await;
    const SBOM: &str = "application/vnd.example.sbom.v1";
    const SIG: &str = "application/vnd.example.signature.v1";
    let sbom = artifact_manifest(SBOM, b"sbom contents", subject_desc.clone(), "sbom");
    let sig = artifact_manifest(SIG, b"signature", subject_desc.clone(), "sig");
    let mut digests = Vec::new();
    for body in [&sbom, &sig] {
        let digest = sha256(body.as_bytes());
        let r = reg.put_manifest("r", &digest, OCI_MANIFEST, body).await;
        r.assert_status(201);
        assert_eq!(r.header("oci-subject"), subject);
        assert_eq!(r.header("docker-content-digest"), digest);
        digests.push(digest);
    }

    let all = referrers(&reg, "r", &subject, None).await;
    assert_eq!(
        all,
        sorted(vec![
            expected(&sbom, SBOM, "sbom"),
            expected(&sig, SIG, "sig")
        ])
    );
    assert_eq!(
        referrers(&reg, "r", &subject, Some(SBOM)).await,
        [expected(&sbom, SBOM, "sbom")]
    );
    assert_eq!(
        referrers(&reg, "r", &subject, Some(SIG)).await,
        [expected(&sig, SIG, "sig")]
    );
    assert!(referrers(&reg, "r", &subject, Some("application/x-none"))
        .await
        .is_empty());

    // Deleting a referrer drops it from the list; the subject itself is untouched.
    reg.delete(&format!("/v2/r/manifests/{}", digests[1]))
        .await
        .assert_status(202);
    assert_eq!(
        referrers(&reg, "r", &subject, None).await,
        [expected(&sbom, SBOM, "sbom")]
    );
    assert!(referrers(&reg, "r", &subject, Some(SIG)).await.is_empty());
    reg.get("/v2/r/manifests/v1").await.assert_status(200);
    // Referrers are per repository.
    assert!(referrers(&reg, "other", &subject, None).await.is_empty());
}

#[tokio::test]
async fn referrers_of_unknown_or_absent_subjects() {
    let reg = Reg::start("");
    let unknown = sha256(b"no such subject");
    // Never a 404: an empty index, for an unknown digest and an unknown repository alike.
    assert!(referrers(&reg, "nosuchrepo", &unknown, None)
        .await
        .is_empty());
    reg.push_image("r", "v1", "x").await;
    assert!(referrers(&reg, "r", &unknown, None).await.is_empty());
    reg.get("/v2/r/referrers/sha256:nothex")
        .await
        .assert_error(400, "DIGEST_INVALID");

    // A referrer may be pushed before its subject. Without `artifactType`, the config's
    // media type is reported.
    const CONFIG_TYPE: &str = "application/vnd.example.config.v1+json";
    reg.push_blob("r", b"{}").await;
    let body = serde_json::to_string(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG_TYPE, b"{}"),
        "layers": [descriptor(OCI_EMPTY, b"{}")],
        "subject": {"mediaType": OCI_MANIFEST, "digest": unknown, "size": 123},
    }))
    .unwrap();
    let r = reg.put_manifest("r", "early", OCI_MANIFEST, &body).await;
    r.assert_status(201);
    assert_eq!(r.header("oci-subject"), unknown);
    let mut want = manifest_descriptor(OCI_MANIFEST, &body);
    want["artifactType"] = json!(CONFIG_TYPE);
    assert_eq!(referrers(&reg, "r", &unknown, None).await, [want]);
}
