//! The guard on the real request path, with the proxy tests' fake upstream on 127.0.0.1 made
//! to count as a public upstream (every test server is local, and a local upstream may send
//! Berth anywhere): redirects and token realms to private addresses of other hosts (`localhost`
//! or `127.0.0.2`; the upstream's own host 127.0.0.1 is trusted on any port) are refused before
//! anything is asked of them, unless the operator allows it.

#[path = "../tests/fake/mod.rs"]
mod fake;

use std::time::Duration;

use berth_oci::{Digest, RepoName};

use super::*;
use crate::guard::Guard;

fn settings(url: String, allow: bool) -> UpstreamSettings {
    UpstreamSettings {
        host: "docker.io".into(),
        url,
        credentials: Some(("user".into(), "pass".into())),
        tag_ttl: Duration::ZERO,
        proxy: None,
        timeout: Duration::from_secs(5),
        allow_private_redirects: allow,
    }
}

/// An upstream for the fake that counts as public.
fn public(fake: &fake::Fake, allow: bool) -> Upstream {
    Upstream::with_guard(settings(fake.url(), allow), Guard::pretend_public).expect("upstream")
}

fn repo() -> RepoName {
    "library/x".parse().expect("name")
}

#[tokio::test]
async fn a_public_upstream_is_not_redirected_to_a_private_address() {
    for cdn_host in ["127.0.0.2", "localhost"] {
        let fake = fake::Fake::start().await;
        let digest: Digest = fake
            .blob(b"secret from the inside")
            .parse()
            .expect("digest");
        fake.set(|b| {
            b.redirect_blobs = true;
            b.cdn_host = Some(cdn_host.to_owned());
        });
        let err = public(&fake, false)
            .get_blob(&repo(), &digest, 0)
            .await
            .expect_err("refused");
        match &err {
            UpstreamError::Refused(reason) => assert!(reason.contains(cdn_host), "{reason}"),
            e => panic!("{cdn_host:?}: expected a refusal, got {e:?}"),
        }
        assert!(!err.is_transient(), "a refusal is not retried");
        assert_eq!(
            fake.count("CDN "),
            0,
            "{cdn_host:?}: the target was never asked"
        );
    }
}

#[tokio::test]
async fn the_operator_may_allow_private_redirects() {
    let fake = fake::Fake::start().await;
    let digest: Digest = fake.blob(b"in-house CDN").parse().expect("digest");
    fake.set(|b| {
        b.redirect_blobs = true;
        b.cdn_host = Some("localhost".into());
    });
    let response = public(&fake, true)
        .get_blob(&repo(), &digest, 0)
        .await
        .expect("followed");
    let body = response.bytes().await.expect("body");
    assert_eq!(&body[..], b"in-house CDN");
    assert_eq!(fake.count("CDN "), 1);
}

#[tokio::test]
async fn a_token_realm_on_a_private_address_of_another_host_is_refused() {
    let fake = fake::Fake::start().await;
    fake.image("library/x", "1", &[b"layer"]);
    let port = fake.addr.port();
    fake.set(|b| {
        b.bearer = true;
        b.realm_host = Some(format!("localhost:{port}"));
    });
    let up = public(&fake, false);
    let err = up
        .get_manifest(&repo(), "1", true)
        .await
        .expect_err("refused");
    assert!(matches!(err, UpstreamError::Refused(_)), "{err:?}");
    assert!(
        fake.data.lock().expect("lock").token_requests.is_empty(),
        "the realm was never asked"
    );
    // The realm on the upstream's own host is the upstream's business: asked, with credentials.
    fake.set(|b| b.realm_host = None);
    up.get_manifest(&repo(), "1", true).await.expect("manifest");
    let auth = fake.data.lock().expect("lock").token_auth.clone();
    assert!(
        auth.len() == 1 && auth[0].as_deref().is_some_and(|a| a.starts_with("Basic ")),
        "{auth:?}"
    );
}
