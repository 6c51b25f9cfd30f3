//! In-process protocol tests: the router from `berth_api::app` driven with `oneshot` over the
//! in-memory driver, for details that are awkward to see through a real client.
#![allow(missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use berth_api::{app, ApiOptions, Ctx};
use berth_oci::Digest;
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Fixture: an app over an empty in-memory registry.
struct TestApp {
    router: Router,
}

impl TestApp {
    fn new(delete_enabled: bool) -> Self {
        let options = ApiOptions {
            relative_urls: true,
            ..ApiOptions::default()
        };
        Self::with_options(delete_enabled, options)
    }

    fn with_options(delete_enabled: bool, options: ApiOptions) -> Self {
        let registry = Registry::new(
            Arc::new(InMemoryDriver::new()),
            RegistryOptions {
                delete_enabled,
                read_only: false,
            },
        );
        TestApp {
            router: app(Arc::new(Ctx {
                registry,
                options,
                auth: None,
                token_issuer: None,
                proxy: None,
                notifier: None,
                health: Default::default(),
            })),
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response<Body> {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.router
            .clone()
            .oneshot(req.body(Body::from(body)).expect("request"))
            .await
            .expect("response")
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        digest
    }
}

async fn body_json(r: Response<Body>) -> serde_json::Value {
    let bytes = r.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json body")
}

fn header<'a>(r: &'a Response<Body>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn base_endpoint_announces_api_version() {
    let t = TestApp::new(true);
    let r = t.send(Method::GET, "/v2/", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
}

#[tokio::test]
async fn errors_are_oci_json() {
    let t = TestApp::new(true);
    let r = t
        .send(Method::GET, "/v2/UPPER/tags/list", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let body = body_json(r).await;
    assert_eq!(body["errors"][0]["code"], "NAME_INVALID");
}

#[tokio::test]
async fn head_manifest_has_length_but_no_body() {
    let t = TestApp::new(true);
    let config = t.push_blob("r", b"{}").await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    let ct = [("content-type", "application/vnd.oci.image.manifest.v1+json")];
    let r = t
        .send(
            Method::PUT,
            "/v2/r/manifests/v1",
            &ct,
            manifest.clone().into_bytes(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = t
        .send(Method::HEAD, "/v2/r/manifests/v1", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), manifest.len().to_string());
    assert_eq!(
        header(&r, "docker-content-digest"),
        Digest::sha256_of(manifest.as_bytes()).to_string()
    );
    let body = r.into_body().collect().await.expect("body").to_bytes();
    assert!(body.is_empty());
}

#[tokio::test]
async fn delete_disabled_is_unsupported() {
    let t = TestApp::new(false);
    let d = t.push_blob("r", b"abc").await;
    let r = t
        .send(Method::DELETE, &format!("/v2/r/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body_json(r).await["errors"][0]["code"], "UNSUPPORTED");
    let r = t
        .send(Method::GET, &format!("/v2/r/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK, "blob still there");
}

#[tokio::test]
async fn chunked_upload_with_relative_location() {
    let t = TestApp::new(true);
    let r = t
        .send(Method::POST, "/v2/a/b/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-0");
    let location = header(&r, "location").to_owned();
    assert!(location.starts_with("/v2/a/b/blobs/uploads/"), "{location}");
    let r = t
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-2")],
            b"abc".to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-2");
    let r = t
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "5-6")],
            b"xy".to_vec(),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        "out-of-order chunk"
    );
    let digest = Digest::sha256_of(b"abcdef");
    let r = t
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            b"def".to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/a/b/blobs/{digest}"));
    let r = t
        .send(
            Method::GET,
            &format!("/v2/a/b/blobs/{digest}"),
            &[("range", "bytes=1-3")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 1-3/6");
    let body = r.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"bcd");
}

#[tokio::test]
async fn prefix_and_absolute_locations() {
    let options = ApiOptions {
        prefix: "/registry/".into(),
        ..ApiOptions::default()
    };
    let t = TestApp::with_options(true, options);
    let r = t.send(Method::GET, "/v2/", &[], vec![]).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the API lives only under the prefix"
    );
    let r = t.send(Method::GET, "/registry/v2/", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let headers = [("host", "reg.example:5000"), ("x-forwarded-proto", "https")];
    let r = t
        .send(
            Method::POST,
            "/registry/v2/r/blobs/uploads/",
            &headers,
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    assert!(
        location.starts_with("https://reg.example:5000/registry/v2/r/blobs/uploads/"),
        "{location}"
    );
}

#[tokio::test]
async fn read_only_mode_refuses_writes_but_serves_reads() {
    let registry = Registry::new(
        Arc::new(InMemoryDriver::new()),
        RegistryOptions {
            delete_enabled: true,
            read_only: false,
        },
    );
    let t = TestApp {
        router: app(Arc::new(Ctx {
            registry: registry.clone(),
            options: ApiOptions::default(),
            auth: None,
            token_issuer: None,
            proxy: None,
            notifier: None,
            health: Default::default(),
        })),
    };
    let d = t.push_blob("r", b"kept").await;
    registry.set_read_only(true);
    let r = t
        .send(Method::POST, "/v2/r/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body_json(r).await["errors"][0]["code"], "UNSUPPORTED");
    let r = t
        .send(Method::DELETE, &format!("/v2/r/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = t
        .send(Method::GET, &format!("/v2/r/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}
