//! Sorting in-process: repositories by last push and size (from the usage report, whose age
//! the page states), tags by push date and size; paging and search keep the sort.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use berth_api::ApiOptions;
use berth_oci::{Digest, RepoName};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use tower::ServiceExt;

/// Pushes an image with one layer of `layer_size` bytes to `repo` under `tag`.
async fn push(registry: &Registry, repo: &str, tag: &str, layer_size: usize) {
    let repo: RepoName = repo.parse().unwrap();
    let layer = Bytes::from(vec![tag.len() as u8 ^ layer_size as u8; layer_size]);
    let config = Bytes::from(format!("{{\"tag\":\"{tag}\",\"n\":{layer_size}}}"));
    for blob in [&layer, &config] {
        let body: berth_registry::BodyStream =
            Box::pin(futures_util::stream::iter([Ok(blob.clone())]));
        registry
            .put_blob(&repo, &Digest::sha256_of(blob), body)
            .await
            .unwrap();
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        Digest::sha256_of(&config),
        config.len(),
        Digest::sha256_of(&layer),
        layer.len()
    );
    registry
        .put_manifest(
            &repo,
            &tag.parse().unwrap(),
            Some("application/vnd.oci.image.manifest.v1+json"),
            Bytes::from(manifest),
        )
        .await
        .unwrap();
    // Push dates are file times: keep pushes apart.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn app() -> (Router, Arc<Registry>) {
    let registry = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let app = common::app(
        registry.clone(),
        ApiOptions::default(),
        None,
        None,
        berth_ui::LoginMode::Open,
    );
    (app, registry)
}

async fn get(app: &Router, path: &str) -> String {
    let request = Request::get(path)
        .header(header::HOST, "reg.test")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

/// The order in which `names` appear in `html` as links.
fn order<'a>(html: &str, names: &[&'a str]) -> Vec<&'a str> {
    let mut found: Vec<(usize, &str)> = names
        .iter()
        .map(|n| {
            let at = html
                .find(&format!(">{n}</a>"))
                .unwrap_or_else(|| panic!("{n} missing: {html}"));
            (at, *n)
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, n)| n).collect()
}

#[tokio::test]
async fn repositories_sort_by_name_last_push_and_size() {
    let (app, registry) = app().await;
    push(&registry, "big", "v1", 50_000).await;
    push(&registry, "small", "v1", 10).await;
    push(&registry, "middle", "v1", 5_000).await;
    let names = ["big", "middle", "small"];

    let html = get(&app, "/ui/?sort=size").await;
    assert_eq!(order(&html, &names), ["big", "middle", "small"]);
    assert!(
        html.contains("as of "),
        "the report's age is stated: {html}"
    );
    assert!(
        html.contains("<strong aria-current=\"true\">Size</strong>"),
        "{html}"
    );
    // The repository page states its storage from the same report.
    let html = get(&app, "/ui/r/big").await;
    assert!(
        html.contains("KiB</strong> only here") && html.contains("0 B shared"),
        "{html}"
    );
    let html = get(&app, "/ui/?sort=pushed").await;
    assert_eq!(order(&html, &names), ["middle", "small", "big"]);
    let html = get(&app, "/ui/").await;
    assert_eq!(order(&html, &names), ["big", "middle", "small"]);
    // Paging keeps the sort.
    let html = get(&app, "/ui/?sort=size&n=1&start=1").await;
    assert!(
        html.contains(">middle</a>") && !html.contains(">big</a>"),
        "{html}"
    );
    assert!(
        html.contains("sort=size"),
        "paging links keep the sort: {html}"
    );
    // An unknown sort is the default.
    let html = get(&app, "/ui/?sort=%3Cscript%3E").await;
    assert!(!html.contains("<script>"), "{html}");
}

#[tokio::test]
async fn tags_sort_by_push_date_and_size() {
    let (app, registry) = app().await;
    push(&registry, "app", "b-large", 40_000).await;
    push(&registry, "app", "c-small", 100).await;
    push(&registry, "app", "a-medium", 4_000).await;
    let tags = ["a-medium", "b-large", "c-small"];

    let html = get(&app, "/ui/r/app").await;
    assert_eq!(order(&html, &tags), ["a-medium", "b-large", "c-small"]);
    let html = get(&app, "/ui/r/app?sort=pushed").await;
    assert_eq!(order(&html, &tags), ["a-medium", "c-small", "b-large"]);
    let html = get(&app, "/ui/r/app?sort=size").await;
    assert_eq!(order(&html, &tags), ["b-large", "a-medium", "c-small"]);
    // Search and sort together.
    let html = get(&app, "/ui/r/app?sort=size&q=m").await;
    assert_eq!(
        order(&html, &["a-medium", "c-small"]),
        ["a-medium", "c-small"]
    );
    assert!(!html.contains(">b-large</a>"), "{html}");
}
