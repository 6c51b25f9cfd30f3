//! The UI in-process (`tower::ServiceExt::oneshot`) with an access controller that grants pull
//! per repository: a logged-in user sees exactly the repositories the controller lets them
//! pull, and the pages of the others answer like missing ones; with a pull-through cache,
//! cached repositories are grouped by upstream. (htpasswd, the one login mode
//! of the real binary so far, grants all or nothing; token rules grant per repository.)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use berth_api::ApiOptions;
use berth_auth::{Access, AccessController, AuthRequest, Denied, Grant, Resource};
use berth_oci::{Digest, RepoName};
use berth_proxy::{Proxy, Routing, Upstream, UpstreamSettings};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;
use bytes::Bytes;
use http::{header, Request, StatusCode};

/// alice may pull everything but `secret/…`; anybody else is nobody.
#[derive(Default)]
struct PerRepository {
    /// Repository checks asked for, to see that each name shown was asked about.
    asked: AtomicUsize,
}

#[async_trait::async_trait]
impl AccessController for PerRepository {
    async fn authorize(
        &self,
        request: &AuthRequest<'_>,
        needed: &[Access],
    ) -> Result<Grant, Denied> {
        if request.authorization != Some(common::basic("alice", "pw").as_str()) {
            return Err(Denied::Unauthorized {
                challenge: "Basic realm=\"t\"".into(),
                message: "authentication required".into(),
            });
        }
        for access in needed {
            if let Resource::Repository(name) = &access.resource {
                self.asked.fetch_add(1, Ordering::Relaxed);
                if name.starts_with("secret/") {
                    return Err(Denied::Forbidden {
                        message: "no".into(),
                    });
                }
            }
        }
        Ok(Grant {
            subject: Some("alice".into()),
            groups: Vec::new(),
        })
    }
}

async fn seeded_registry(names: &[&str]) -> Arc<Registry> {
    let registry = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let config = Bytes::from_static(b"{}");
    let config_digest = Digest::sha256_of(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
    for name in names {
        let repo: RepoName = name.parse().unwrap();
        let body: berth_registry::BodyStream =
            Box::pin(futures_util::stream::iter([Ok(config.clone())]));
        registry
            .put_blob(&repo, &config_digest, body)
            .await
            .unwrap();
        registry
            .put_manifest(
                &repo,
                &"v1".parse().unwrap(),
                Some("application/vnd.oci.image.manifest.v1+json"),
                Bytes::from(manifest.clone()),
            )
            .await
            .unwrap();
    }
    registry
}

async fn app(controller: Arc<PerRepository>) -> Router {
    app_with(controller, ApiOptions::default()).await
}

async fn app_with(controller: Arc<PerRepository>, options: ApiOptions) -> Router {
    app_in_mode(controller, options, berth_ui::LoginMode::Htpasswd).await
}

async fn app_in_mode(
    controller: Arc<PerRepository>,
    options: ApiOptions,
    login: berth_ui::LoginMode,
) -> Router {
    let registry = seeded_registry(&["public/app", "secret/app", "team/tool"]).await;
    common::app(registry, options, Some(controller), None, login)
}

use common::send;

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path).header(header::HOST, "reg.test");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

async fn login(app: &Router, password: &str) -> (StatusCode, http::HeaderMap, String) {
    let request = Request::post("/ui/login")
        .header(header::HOST, "reg.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("username=alice&password={password}")))
        .unwrap();
    send(app, request).await
}

#[tokio::test]
async fn a_user_sees_only_what_they_may_pull() {
    let controller = Arc::new(PerRepository::default());
    let app = app(controller.clone()).await;

    // Anonymous: nothing.
    let (status, _, html) = send(&app, get("/ui/", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !html.contains("public/app") && !html.contains("secret/app"),
        "{html}"
    );

    let (status, _, _) = login(&app, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = login(&app, "pw").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let before = controller.asked.load(Ordering::Relaxed);
    let (_, _, html) = send(&app, get("/ui/", Some(&cookie))).await;
    assert!(
        html.contains(">public/app</a>") && html.contains(">team/tool</a>"),
        "{html}"
    );
    assert!(
        !html.contains("secret/app"),
        "a repository alice may not pull is listed: {html}"
    );
    assert!(html.contains("Showing 1–2 of 2"), "{html}");
    assert_eq!(
        controller.asked.load(Ordering::Relaxed) - before,
        3,
        "one decision per repository name"
    );
    // Search does not reveal it either.
    let (_, _, html) = send(&app, get("/ui/?q=secret", Some(&cookie))).await;
    assert!(
        !html.contains("secret/app") && html.contains("Nothing to show (0 in all)"),
        "{html}"
    );

    // Its pages answer like a missing repository's.
    let (missing, _, missing_html) = send(&app, get("/ui/r/nope/app", Some(&cookie))).await;
    let (status, _, html) = send(&app, get("/ui/r/secret/app", Some(&cookie))).await;
    assert_eq!(
        (status, missing),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(html, missing_html);
    let (status, _, _) = send(&app, get("/ui/r/secret/app/-/v1", Some(&cookie))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, html) = send(&app, get("/ui/r/public/app/-/v1", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("docker pull reg.test/public/app:v1"),
        "{html}"
    );
}

fn upstream(host: &str) -> Arc<Upstream> {
    Arc::new(
        Upstream::new(UpstreamSettings {
            host: host.into(),
            // Unreachable: the UI never asks an upstream.
            url: "http://127.0.0.1:9".into(),
            credentials: None,
            tag_ttl: Duration::ZERO,
            proxy: None,
            timeout: Duration::from_secs(1),
            allow_private_redirects: false,
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn cached_repositories_are_grouped_by_upstream() {
    let registry =
        seeded_registry(&["team/app", "ghcr.io/acme/tool", "docker.io/library/alpine"]).await;
    let spool = tempfile::tempdir().unwrap();
    let routing = Routing::Many {
        upstreams: vec![upstream("docker.io"), upstream("ghcr.io")],
        default: None,
        private: Vec::new(),
    };
    let proxy = Proxy::new(registry.clone(), routing, spool.path().to_path_buf());
    let app = common::app(
        registry,
        ApiOptions::default(),
        None,
        Some(proxy),
        berth_ui::LoginMode::Open,
    );
    let (status, _, html) = send(&app, get("/ui/", None)).await;
    assert_eq!(status, StatusCode::OK);
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {html}"))
    };
    let order = [
        at("<h2>Private repositories</h2>"),
        at(">team/app</a>"),
        at("<h2>Cached from docker.io</h2>"),
        at(">docker.io/library/alpine</a>"),
        at("<h2>Cached from ghcr.io</h2>"),
        at(">ghcr.io/acme/tool</a>"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}: {html}");
    // Paging keeps the grouping: the second page starts under its upstream's heading.
    let (_, _, html) = send(&app, get("/ui/?n=1&start=1", None)).await;
    assert!(html.contains("<h2>Cached from docker.io</h2>") && !html.contains("Private"));
    // The cached image's page reads what is stored; no upstream is asked.
    let (status, _, html) = send(&app, get("/ui/r/docker.io/library/alpine/-/v1", None)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_host() {
    let plain = app(Arc::default()).await;
    let (_, headers, _) = login(&plain, "pw").await;
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
    let options = ApiOptions {
        host: Some("https://registry.example".into()),
        ..ApiOptions::default()
    };
    let behind_proxy = app_with(Arc::default(), options).await;
    let (status, headers, _) = login(&behind_proxy, "pw").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    // And its pull commands name that host.
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let (_, _, html) = send(&behind_proxy, get("/ui/r/public/app/-/v1", Some(&cookie))).await;
    assert!(
        html.contains("docker pull registry.example/public/app:v1"),
        "{html}"
    );
}

#[tokio::test]
async fn an_external_token_server_shows_nothing_yet() {
    let app = app_in_mode(
        Arc::default(),
        ApiOptions::default(),
        berth_ui::LoginMode::Unsupported,
    )
    .await;
    let (status, _, html) = send(&app, get("/ui/", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("not available yet"), "{html}");
    assert!(
        !html.contains("public/app") && !html.contains("Log in</a>"),
        "{html}"
    );
    let (status, _, _) = send(&app, get("/ui/r/public/app", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Even valid credentials start no session.
    let (status, headers, _) = login(&app, "pw").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!headers.contains_key(header::SET_COOKIE));
}
