//! The write policy, applied by the dispatcher before any handler runs: pushes into cached
//! namespaces (`403 DENIED`; `405 UNSUPPORTED` in registry:2's proxy mode), deletes when they
//! are disabled and every write in read-only mode (`405 UNSUPPORTED`). Each refusal is shown on
//! a request a handler would have answered differently (an oversized manifest: 413; an unknown
//! upload: 404), so the answer can only have come from the dispatcher.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use berth_api::{app, ApiOptions, Ctx};
use berth_oci::Digest;
use berth_proxy::{Proxy, Routing, Upstream, UpstreamSettings};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A manifest `Content-Length` above the 4 MiB limit: the handler answers it with 413.
const OVERSIZED: &str = "5000000";
/// A well-formed upload id no session has: the upload handlers answer it with 404.
const UNKNOWN_UPLOAD: &str = "0b5b4c8e-5b1e-4b8e-9f3a-2f6c1d2e3a4b";

/// An app over an in-memory registry, optionally with a pull-through cache.
struct TestApp {
    router: Router,
    registry: Arc<Registry>,
    _spool: tempfile::TempDir,
}

impl TestApp {
    /// `routing`: the cache's routing (`None`: no cache).
    fn new(delete_enabled: bool, routing: Option<Routing>) -> TestApp {
        let registry = Registry::new(
            Arc::new(InMemoryDriver::new()),
            RegistryOptions {
                delete_enabled,
                read_only: false,
            },
        );
        let spool = tempfile::tempdir().expect("spool");
        let proxy = routing.map(|r| Proxy::new(registry.clone(), r, spool.path().to_path_buf()));
        let router = app(Arc::new(Ctx {
            registry: registry.clone(),
            options: ApiOptions {
                relative_urls: true,
                ..ApiOptions::default()
            },
            auth: None,
            token_issuer: None,
            proxy,
            notifier: None,
            health: Default::default(),
        }));
        TestApp {
            router,
            registry,
            _spool: spool,
        }
    }

    /// Sends a request; returns the status, the error code (if any) and the body text.
    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (StatusCode, String, String) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_vec())).expect("request"))
            .await
            .expect("response");
        let status = r.status();
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (status, code, text)
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let uri = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let (status, _, text) = self.send(Method::POST, &uri, &[], data).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        digest
    }
}

/// Docker Hub as the default upstream (unreachable: nothing here may ask it), `team/...`
/// private.
fn many() -> Routing {
    Routing::Many {
        upstreams: vec![upstream("docker.io")],
        default: Some(0),
        private: vec!["team".into()],
    }
}

fn upstream(host: &str) -> Arc<Upstream> {
    Arc::new(
        Upstream::new(UpstreamSettings {
            host: host.into(),
            url: "http://127.0.0.1:9".into(),
            credentials: None,
            tag_ttl: Duration::ZERO,
            proxy: None,
            timeout: Duration::from_secs(1),
            allow_private_redirects: false,
        })
        .expect("upstream"),
    )
}

/// A request: method, path, headers.
type Call = (Method, String, Vec<(&'static str, &'static str)>);

/// The writes each handler would answer without a body or session.
fn writes(repo: &str) -> Vec<Call> {
    let d = Digest::sha256_of(b"nothing");
    vec![
        (
            Method::PUT,
            format!("/v2/{repo}/manifests/1"),
            vec![("content-length", OVERSIZED)],
        ),
        (Method::POST, format!("/v2/{repo}/blobs/uploads/"), vec![]),
        (
            Method::PATCH,
            format!("/v2/{repo}/blobs/uploads/{UNKNOWN_UPLOAD}"),
            vec![],
        ),
        (
            Method::PUT,
            format!("/v2/{repo}/blobs/uploads/{UNKNOWN_UPLOAD}?digest={d}"),
            vec![],
        ),
        (
            Method::DELETE,
            format!("/v2/{repo}/blobs/uploads/{UNKNOWN_UPLOAD}"),
            vec![],
        ),
        (Method::DELETE, format!("/v2/{repo}/manifests/{d}"), vec![]),
        (Method::DELETE, format!("/v2/{repo}/blobs/{d}"), vec![]),
    ]
}

#[tokio::test]
async fn pushes_into_cached_namespaces_are_refused_before_any_handler() {
    let t = TestApp::new(true, Some(many()));
    for repo in ["docker.io/x", "alpine", "team/app?ns=docker.io"] {
        let (repo, query) = repo.split_once('?').unwrap_or((repo, ""));
        for (method, path, headers) in writes(repo) {
            let sep = if path.contains('?') { '&' } else { '?' };
            let uri = if query.is_empty() {
                path.clone()
            } else {
                format!("{path}{sep}{query}")
            };
            let (status, code, text) = t.send(method.clone(), &uri, &headers, b"").await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::FORBIDDEN, "DENIED"),
                "{method} {uri}: {text}"
            );
            assert!(text.contains("read-only"), "{method} {uri}: {text}");
        }
    }
    // Private names take pushes; upload status is a read.
    let (status, _, _) = t
        .send(Method::POST, "/v2/team/app/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, code, _) = t
        .send(
            Method::GET,
            &format!("/v2/docker.io/x/blobs/uploads/{UNKNOWN_UPLOAD}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
    // A method the endpoint does not have stays a plain 405.
    let (status, code, text) = t
        .send(Method::POST, "/v2/docker.io/x/manifests/1", &[], b"")
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
    assert!(text.contains("not allowed on this endpoint"), "{text}");
}

#[tokio::test]
async fn registry2_proxy_mode_refuses_every_write_as_unsupported() {
    let t = TestApp::new(true, Some(Routing::Single(upstream("docker.io"))));
    for (method, path, headers) in writes("library/alpine") {
        let (status, code, text) = t.send(method.clone(), &path, &headers, b"").await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            "{method} {path}: {text}"
        );
    }
}

#[tokio::test]
async fn read_only_mode_refuses_writes_before_any_handler() {
    let t = TestApp::new(true, Some(many()));
    let kept = t.push_blob("team/app", b"kept").await;
    t.registry.set_read_only(true);
    for (method, path, headers) in writes("team/app") {
        let (status, code, text) = t.send(method.clone(), &path, &headers, b"").await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            "{method} {path}: {text}"
        );
        assert!(text.contains("read-only mode"), "{method} {path}: {text}");
    }
    // A cached namespace says why it never takes pushes, read-only or not.
    let (status, code, _) = t
        .send(Method::POST, "/v2/docker.io/x/blobs/uploads/", &[], b"")
        .await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    // Reads go on.
    let (status, _, _) = t
        .send(Method::GET, &format!("/v2/team/app/blobs/{kept}"), &[], b"")
        .await;
    assert_eq!(status, StatusCode::OK);
    t.registry.set_read_only(false);
    let (status, _, _) = t
        .send(Method::POST, "/v2/team/app/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "writable again");
}

#[tokio::test]
async fn deletes_disabled_are_refused_before_read_only_as_before() {
    let t = TestApp::new(false, None);
    let kept = t.push_blob("r", b"kept").await;
    t.registry.set_read_only(true);
    for path in [
        format!("/v2/r/blobs/{kept}"),
        format!("/v2/r/manifests/{kept}"),
    ] {
        let (status, code, text) = t.send(Method::DELETE, &path, &[], b"").await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            "{path}: {text}"
        );
        assert!(text.contains("deletes are disabled"), "{path}: {text}");
    }
    let (status, _, _) = t
        .send(Method::GET, &format!("/v2/r/blobs/{kept}"), &[], b"")
        .await;
    assert_eq!(status, StatusCode::OK, "blob still there");
}
