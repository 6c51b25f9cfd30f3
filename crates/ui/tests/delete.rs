//! Deleting from the UI, in-process: offered and done only where the API's access controller
//! grants `delete` on that very name; the confirmation lists every tag that goes; the POST
//! needs this site's form token, and deletes only what the confirmation showed.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use berth_api::ApiOptions;
use berth_auth::{Access, AccessController, Action, AuthRequest, Denied, Grant, Resource};
use berth_oci::{Digest, Reference, RepoName};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;
use bytes::Bytes;
use http::{header, Request, StatusCode};

/// alice may pull everything and delete only under `team/`.
struct DeleteInTeam;

#[async_trait::async_trait]
impl AccessController for DeleteInTeam {
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
                if access.actions.contains(&Action::Delete) && !name.starts_with("team/") {
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

const CONFIG: &[u8] = b"{}";

fn manifest(label: &str) -> String {
    let config = Digest::sha256_of(CONFIG);
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"l":"{label}"}}}}"#
    )
}

/// Puts `manifest(label)` under `tags` in `repo`; returns its digest.
async fn put(registry: &Registry, repo: &str, label: &str, tags: &[&str]) -> Digest {
    let repo: RepoName = repo.parse().unwrap();
    let body: berth_registry::BodyStream =
        Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(CONFIG))]));
    registry
        .put_blob(&repo, &Digest::sha256_of(CONFIG), body)
        .await
        .unwrap();
    let m = manifest(label);
    for tag in tags {
        registry
            .put_manifest(
                &repo,
                &tag.parse().unwrap(),
                Some("application/vnd.oci.image.manifest.v1+json"),
                Bytes::from(m.clone()),
            )
            .await
            .unwrap();
    }
    Digest::sha256_of(m.as_bytes())
}

struct Fixture {
    app: Router,
    registry: Arc<Registry>,
    cookie: String,
}

async fn fixture(delete_enabled: bool) -> Fixture {
    let registry = Registry::new(
        Arc::new(InMemoryDriver::new()),
        RegistryOptions {
            delete_enabled,
            read_only: false,
        },
    );
    let app = common::app(
        registry.clone(),
        ApiOptions::default(),
        Some(Arc::new(DeleteInTeam)),
        None,
        berth_ui::LoginMode::Htpasswd,
    );
    let request = Request::post("/ui/login")
        .header(header::HOST, "reg.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("username=alice&password=pw"))
        .unwrap();
    let (status, headers, _) = common::send(&app, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    Fixture {
        app,
        registry,
        cookie,
    }
}

impl Fixture {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let request = Request::get(path)
            .header(header::HOST, "reg.test")
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap();
        let (status, _, html) = common::send(&self.app, request).await;
        (status, html)
    }

    async fn post(&self, path: &str, form: &str, origin: &str) -> (StatusCode, String) {
        let request = Request::post(path)
            .header(header::HOST, "reg.test")
            .header(header::ORIGIN, origin)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .unwrap();
        let (status, _, html) = common::send(&self.app, request).await;
        (status, html)
    }

    /// Submits the confirmation page's form as the browser would: its hidden fields.
    async fn confirm(&self, path: &str) -> (StatusCode, String) {
        let (status, html) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let form = hidden_fields(&html);
        self.post(path, &form, "http://reg.test").await
    }

    async fn tags(&self, repo: &str) -> Vec<String> {
        let repo: RepoName = repo.parse().unwrap();
        self.registry.all_tags(&repo).await.unwrap_or_default()
    }
}

/// The hidden inputs of the page's form, urlencoded.
fn hidden_fields(html: &str) -> String {
    let mut fields = Vec::new();
    for part in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = part.split_once('"').unwrap();
        let value = rest
            .split_once("value=\"")
            .unwrap()
            .1
            .split_once('"')
            .unwrap()
            .0;
        fields.push(format!("{name}={}", value.replace(':', "%3A")));
    }
    fields.join("&")
}

#[tokio::test]
async fn deleting_a_tag_lists_the_other_tags_and_needs_the_form_token() {
    let f = fixture(true).await;
    let digest = put(&f.registry, "team/tool", "one", &["v1", "v1.0", "latest"]).await;

    // The image page offers both deletes; the confirmation names the tags that stay.
    let (_, html) = f.get("/ui/r/team/tool/-/v1").await;
    assert!(
        html.contains("/ui/r/team/tool/-/v1/delete\">Delete tag v1</a>")
            && html.contains(&format!(
                "/ui/r/team/tool/-/{digest}/delete\">Delete manifest"
            )),
        "{html}"
    );
    let (status, html) = f.get("/ui/r/team/tool/-/v1/delete").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<code>latest</code>") && html.contains("<code>v1.0</code>"),
        "the tags still pointing at it are listed: {html}"
    );

    // Without the form token, or from another site: refused, nothing deleted.
    let (status, _) = f
        .post(
            "/ui/r/team/tool/-/v1/delete",
            &format!("digest={digest}"),
            "http://reg.test",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let form = hidden_fields(&html);
    let (status, _) = f
        .post("/ui/r/team/tool/-/v1/delete", &form, "http://evil.test")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(f.tags("team/tool").await.len(), 3);

    let (status, html) = f
        .post("/ui/r/team/tool/-/v1/delete", &form, "http://reg.test")
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Tag <code>v1</code> was deleted"), "{html}");
    assert_eq!(f.tags("team/tool").await, vec!["latest", "v1.0"]);
}

#[tokio::test]
async fn deleting_a_manifest_takes_every_tag_on_it() {
    let f = fixture(true).await;
    let digest = put(&f.registry, "team/tool", "one", &["a", "b"]).await;
    put(&f.registry, "team/tool", "two", &["c"]).await;
    let path = format!("/ui/r/team/tool/-/{digest}/delete");
    let (_, html) = f.get(&path).await;
    assert!(
        html.contains("every tag that points at it (2)")
            && html.contains("<code>a</code>")
            && html.contains("<code>b</code>")
            && !html.contains("<code>c</code>"),
        "{html}"
    );
    let (status, html) = f.confirm(&path).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("with its 2 tags"), "{html}");
    assert_eq!(f.tags("team/tool").await, vec!["c"]);
    let repo: RepoName = "team/tool".parse().unwrap();
    assert!(f
        .registry
        .get_manifest(&repo, &Reference::Digest(digest))
        .await
        .is_err());
}

#[tokio::test]
async fn a_tag_moved_after_the_confirmation_is_not_deleted() {
    let f = fixture(true).await;
    put(&f.registry, "team/tool", "one", &["v1"]).await;
    let (_, html) = f.get("/ui/r/team/tool/-/v1/delete").await;
    let form = hidden_fields(&html);
    // Someone pushes another image to v1 meanwhile.
    put(&f.registry, "team/tool", "two", &["v1"]).await;
    let (status, html) = f
        .post("/ui/r/team/tool/-/v1/delete", &form, "http://reg.test")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert_eq!(f.tags("team/tool").await, vec!["v1"]);
}

#[tokio::test]
async fn deleting_a_repository_removes_every_manifest_and_tag() {
    let f = fixture(true).await;
    put(&f.registry, "team/tool", "one", &["a", "b"]).await;
    put(&f.registry, "team/tool", "two", &["c"]).await;
    put(&f.registry, "team/other", "one", &["keep"]).await;
    let (_, html) = f.get("/ui/r/team/tool").await;
    assert!(
        html.contains("/ui/r/team/tool/-delete\">Delete repository</a>"),
        "{html}"
    );
    let (_, html) = f.get("/ui/r/team/tool/-delete").await;
    assert!(
        html.contains("<strong>2</strong> manifests and <strong>3</strong> tags"),
        "{html}"
    );
    let (status, html) = f.confirm("/ui/r/team/tool/-delete").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Deleted 2 manifests and 3 tags"), "{html}");
    let repo: RepoName = "team/tool".parse().unwrap();
    assert!(f.tags("team/tool").await.is_empty());
    assert!(f
        .registry
        .manifest_revisions(&repo)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(f.tags("team/other").await, vec!["keep"]);
}

#[tokio::test]
async fn delete_is_neither_offered_nor_done_where_it_is_not_allowed() {
    // alice may not delete outside team/: nothing offered, the pages and the POST refuse.
    let f = fixture(true).await;
    let digest = put(&f.registry, "public/app", "one", &["v1"]).await;
    let (_, html) = f.get("/ui/r/public/app/-/v1").await;
    assert!(!html.contains("Delete"), "{html}");
    let (_, html) = f.get("/ui/r/public/app").await;
    assert!(!html.contains("Delete repository"), "{html}");
    let (status, html) = f.get("/ui/r/public/app/-/v1/delete").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("You may not delete"), "{html}");
    // A form token from a page she may use does not open another repository.
    put(&f.registry, "team/tool", "one", &["v1"]).await;
    let (_, html) = f.get("/ui/r/team/tool/-/v1/delete").await;
    let csrf = hidden_fields(&html);
    let csrf = csrf.split('&').find(|f| f.starts_with("csrf=")).unwrap();
    for path in ["/ui/r/public/app/-/v1/delete", "/ui/r/public/app/-delete"] {
        let form = format!("{csrf}&digest={}", digest.to_string().replace(':', "%3A"));
        let (status, _) = f.post(path, &form, "http://reg.test").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(f.tags("public/app").await, vec!["v1"]);

    // With deletes turned off, nobody is offered one.
    let f = fixture(false).await;
    put(&f.registry, "team/tool", "one", &["v1"]).await;
    let (_, html) = f.get("/ui/r/team/tool/-/v1").await;
    assert!(!html.contains("Delete tag"), "{html}");
    let (status, html) = f.get("/ui/r/team/tool/-/v1/delete").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("storage.delete.enabled"), "{html}");
}
