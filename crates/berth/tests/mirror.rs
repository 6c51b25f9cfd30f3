//! The pull-through cache with real upstreams (Debian's docker-registry 2.8, on 127.0.0.1):
//! routing by `?ns=`, host prefix and default upstream with byte-identical content; private
//! repositories beside cached ones; pushes into upstream namespaces refused; cached content
//! served after the upstream went away; upstream credentials; registry:2's `proxy.remoteurl`
//! mode; the outbound proxy, per upstream and from the environment.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod mirror_kit;

use common::oci::{sha256, Api, Reg};
use mirror_kit::{data, have_registry2, push_image, upstreams_yaml, Registry2, TestProxy};
use serde_json::Value;

/// The layers' digests of a manifest body.
fn blobs_of(manifest: &str) -> Vec<String> {
    let m: Value = serde_json::from_str(manifest).unwrap();
    let mut out = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_owned());
    }
    out
}

/// Pulls `manifest_path` and every blob of it (`blob_prefix` + `/blobs/<digest>` + `query`)
/// and checks they are byte-identical to what the upstream holds.
async fn pull_and_verify(
    api: &Api,
    manifest_path: &str,
    blob_prefix: &str,
    query: &str,
    body: &str,
) {
    let r = api
        .send(
            "GET",
            manifest_path,
            &[("accept", "application/vnd.oci.image.manifest.v1+json")],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.text(), body, "{manifest_path}: byte-identical manifest");
    assert_eq!(r.header("docker-content-digest"), sha256(body.as_bytes()));
    assert_eq!(
        r.header("content-type"),
        "application/vnd.oci.image.manifest.v1+json"
    );
    for digest in blobs_of(body) {
        let r = api
            .get(&format!("{blob_prefix}/blobs/{digest}{query}"))
            .await;
        r.assert_status(200);
        assert_eq!(sha256(&r.body), digest, "{blob_prefix}: blob verified");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_ns_host_prefix_and_default_upstream_are_byte_identical() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let upstream = up.api();
    let (app, app_digest) = push_image(
        &upstream,
        "library/app",
        "1",
        &[data(1 << 20, 1), data(1000, 2)],
        None,
    )
    .await;
    let (tool, _) = push_image(&upstream, "org/tool", "2", &[data(5000, 3)], None).await;
    let reg = Reg::start(&upstreams_yaml(
        &[
            ("docker.io", &up.url, "ttl: 1s, timeout: 2s"),
            ("ghcr.io", &up.url, ""),
        ],
        "  default: docker.io\n  private: [team]\n",
    ));

    pull_and_verify(
        &reg,
        "/v2/library/app/manifests/1?ns=docker.io",
        "/v2/library/app",
        "?ns=docker.io",
        &app,
    )
    .await;
    pull_and_verify(
        &reg,
        "/v2/docker.io/library/app/manifests/1",
        "/v2/docker.io/library/app",
        "",
        &app,
    )
    .await;
    pull_and_verify(&reg, "/v2/app/manifests/1", "/v2/app", "", &app).await;
    pull_and_verify(
        &reg,
        &format!("/v2/app/manifests/{app_digest}"),
        "/v2/app",
        "",
        &app,
    )
    .await;
    pull_and_verify(
        &reg,
        "/v2/ghcr.io/org/tool/manifests/2",
        "/v2/ghcr.io/org/tool",
        "",
        &tool,
    )
    .await;
    pull_and_verify(
        &reg,
        "/v2/org/tool/manifests/2?ns=ghcr.io",
        "/v2/org/tool",
        "?ns=ghcr.io",
        &tool,
    )
    .await;

    // Each upstream manifest and blob was fetched once, however many routes led to it.
    assert_eq!(up.requests("GET", "/v2/library/app/manifests/1"), 1);
    for d in blobs_of(&app) {
        assert_eq!(
            up.requests("GET", &format!("/v2/library/app/blobs/{d}")),
            1,
            "{d}"
        );
    }
    // Cached repositories appear with their host prefix.
    let catalog = reg.get("/v2/_catalog").await.json();
    let repos: Vec<&str> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        repos.contains(&"docker.io/library/app") && repos.contains(&"ghcr.io/org/tool"),
        "{repos:?}"
    );
    let tags = reg.get("/v2/docker.io/library/app/tags/list").await.json();
    assert_eq!(tags["tags"], serde_json::json!(["1"]));
    // HEAD of a cold blob answers the size without downloading it.
    let (small, _) = push_image(&upstream, "library/app", "3", &[data(777, 9)], None).await;
    let layer = blobs_of(&small).pop().unwrap();
    let r = reg.head(&format!("/v2/app/blobs/{layer}")).await;
    r.assert_status(200);
    assert_eq!(r.header("content-length"), "777");
    assert_eq!(
        up.requests("GET", &format!("/v2/library/app/blobs/{layer}")),
        0
    );
    // Unknown upstream content is a 404 with the OCI code.
    reg.get("/v2/app/manifests/nope")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    reg.get(&format!("/v2/app/blobs/{}", sha256(b"nope")))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repositories_live_beside_cached_ones_and_upstream_namespaces_refuse_pushes() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let reg = Reg::start(&upstreams_yaml(
        &[("docker.io", &up.url, ""), ("ghcr.io", &up.url, "")],
        "  default: docker.io\n  private: [team, ci/builds]\n",
    ));
    for (path, why) in [
        (
            "/v2/library/app/blobs/uploads/",
            "default upstream docker.io",
        ),
        (
            "/v2/docker.io/app/blobs/uploads/",
            "names starting with docker.io/",
        ),
        (
            "/v2/ghcr.io/org/app/blobs/uploads/",
            "names starting with ghcr.io/",
        ),
        ("/v2/team/app/blobs/uploads/?ns=docker.io", "?ns=docker.io"),
        ("/v2/ci/app/blobs/uploads/", "default upstream"),
    ] {
        let r = reg.send("POST", path, &[], Vec::new()).await;
        r.assert_error(403, "DENIED");
        assert!(r.text().contains(why), "{path}: {}", r.text());
    }
    let r = reg
        .send(
            "PUT",
            "/v2/docker.io/x/manifests/1",
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            "{}",
        )
        .await;
    r.assert_error(403, "DENIED");
    reg.delete("/v2/docker.io/x/manifests/1")
        .await
        .assert_error(403, "DENIED");
    // Private names are stored and served as usual, and never asked upstream.
    for repo in ["team/app", "ci/builds/x", "team"] {
        let (body, digest) = push_image(&reg, repo, "1", &[data(3000, 4)], None).await;
        let r = reg.get(&format!("/v2/{repo}/manifests/1")).await;
        r.assert_status(200);
        assert_eq!(r.text(), body);
        assert_eq!(r.header("docker-content-digest"), digest);
    }
    assert_eq!(up.requests("GET", "/v2/team/app/manifests/1"), 0);
    assert_eq!(up.requests("HEAD", "/v2/team/app/manifests/1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_content_is_served_after_the_upstream_went_away() {
    if !have_registry2() {
        return;
    }
    let mut up = Registry2::start("");
    let (body, digest) = push_image(&up.api(), "library/app", "1", &[data(200_000, 5)], None).await;
    let reg = Reg::start(&upstreams_yaml(
        &[("docker.io", &up.url, "ttl: 1s, timeout: 2s")],
        "  default: docker.io\n",
    ));
    pull_and_verify(&reg, "/v2/app/manifests/1", "/v2/app", "", &body).await;
    up.stop();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // The TTL has passed: the re-check fails, and the cached tag is served.
    pull_and_verify(&reg, "/v2/app/manifests/1", "/v2/app", "", &body).await;
    pull_and_verify(
        &reg,
        &format!("/v2/app/manifests/{digest}"),
        "/v2/app",
        "",
        &body,
    )
    .await;
    pull_and_verify(
        &reg,
        "/v2/library/app/manifests/1?ns=docker.io",
        "/v2/library/app",
        "?ns=docker.io",
        &body,
    )
    .await;
    let r = reg.head("/v2/app/manifests/1").await;
    r.assert_status(200);
    assert_eq!(r.header("docker-content-digest"), digest);
    let tags = reg.get("/v2/app/tags/list").await;
    tags.assert_status(200);
    assert_eq!(tags.json()["tags"], serde_json::json!(["1"]));
    // What Berth never had is an error, not a hang.
    let r = reg.get("/v2/app/manifests/2").await;
    r.assert_error(502, "UNKNOWN");
    assert!(r.text().contains("not cached"), "{}", r.text());
    let logs = reg
        .server
        .logs(std::time::Duration::from_millis(100))
        .join("\n");
    assert!(logs.contains("stale-if-error"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_credentials_reach_an_htpasswd_upstream() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start_htpasswd();
    let basic = "Basic dXNlcjpwYXNz"; // user:pass
    let (body, _) = push_image(&up.api(), "org/secret", "1", &[data(4000, 6)], Some(basic)).await;
    let reg = Reg::start(&upstreams_yaml(
        &[("registry.lan", &up.url, "username: user, password: pass")],
        "",
    ));
    pull_and_verify(
        &reg,
        "/v2/registry.lan/org/secret/manifests/1",
        "/v2/registry.lan/org/secret",
        "",
        &body,
    )
    .await;
    let anonymous = Reg::start(&upstreams_yaml(&[("registry.lan", &up.url, "")], ""));
    anonymous
        .get("/v2/registry.lan/org/secret/manifests/1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let out = common::berth(&["config", "check", &reg.config], &[]);
    let text = common::text(&out.stdout);
    assert!(
        out.status.success() && text.contains("username: user") && !text.contains("pass\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry2_remoteurl_mode_mirrors_one_upstream_and_refuses_pushes() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let (body, _) = push_image(&up.api(), "library/app", "1", &[data(3000, 7)], None).await;
    let reg = Reg::start(&format!("proxy:\n  remoteurl: {}\n", up.url));
    // Names are kept (no host prefix), ?ns= is ignored, as in registry:2.
    pull_and_verify(
        &reg,
        "/v2/library/app/manifests/1",
        "/v2/library/app",
        "",
        &body,
    )
    .await;
    pull_and_verify(
        &reg,
        "/v2/library/app/manifests/1?ns=quay.io",
        "/v2/library/app",
        "?ns=quay.io",
        &body,
    )
    .await;
    let catalog = reg.get("/v2/_catalog").await.json();
    assert_eq!(catalog["repositories"], serde_json::json!(["library/app"]));
    // registry:2 answers every write in proxy mode with 405 UNSUPPORTED.
    reg.send("POST", "/v2/mine/blobs/uploads/", &[], Vec::new())
        .await
        .assert_error(405, "UNSUPPORTED");
    reg.send(
        "PUT",
        "/v2/mine/manifests/1",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        "{}",
    )
    .await
    .assert_error(405, "UNSUPPORTED");
    reg.delete("/v2/library/app/manifests/1")
        .await
        .assert_error(405, "UNSUPPORTED");
    // The same from REGISTRY_PROXY_REMOTEURL; no "not implemented" warning any more.
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let server = common::Server::start(&[&config], &[("REGISTRY_PROXY_REMOTEURL", &up.url)]);
    let api = Api::new(&server.url);
    pull_and_verify(
        &api,
        "/v2/library/app/manifests/1",
        "/v2/library/app",
        "",
        &body,
    )
    .await;
    let logs = server
        .logs(std::time::Duration::from_millis(100))
        .join("\n");
    assert!(!logs.contains("not implemented"), "{logs}");
    assert!(logs.contains("pull-through cache upstream"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_proxy_is_used_per_upstream_and_from_the_environment() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let (body, _) = push_image(&up.api(), "library/app", "1", &[data(3000, 8)], None).await;
    let outbound = TestProxy::forward().await;
    let via = |keys: &str| {
        Reg::start(&upstreams_yaml(
            &[("docker.io", &up.url, keys)],
            "  default: docker.io\n",
        ))
    };

    let reg = via(&format!("proxy: {}", outbound.url()));
    pull_and_verify(&reg, "/v2/app/manifests/1", "/v2/app", "", &body).await;
    let seen = outbound.seen();
    let want = format!("GET {}/v2/library/app/manifests/1", up.url);
    assert!(seen.iter().any(|s| s == &want), "{want} in {seen:#?}");
    assert_eq!(
        seen.iter().filter(|s| s.contains("/blobs/")).count(),
        2,
        "{seen:#?}"
    );
    drop(reg);

    // HTTP_PROXY from the environment, when the upstream names none.
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        &upstreams_yaml(&[("docker.io", &up.url, "")], "  default: docker.io\n"),
    );
    let before = outbound.seen().len();
    let server = common::Server::start(
        &[&config],
        &[("HTTP_PROXY", &outbound.url()), ("NO_PROXY", "")],
    );
    pull_and_verify(
        &Api::new(&server.url),
        "/v2/app/manifests/1",
        "/v2/app",
        "",
        &body,
    )
    .await;
    assert!(
        outbound.seen().len() >= before + 3,
        "{:#?}",
        outbound.seen()
    );
    drop(server);

    // NO_PROXY exempts the upstream.
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        &upstreams_yaml(&[("docker.io", &up.url, "")], "  default: docker.io\n"),
    );
    let before = outbound.seen().len();
    let server = common::Server::start(
        &[&config],
        &[("HTTP_PROXY", &outbound.url()), ("NO_PROXY", "127.0.0.1")],
    );
    pull_and_verify(
        &Api::new(&server.url),
        "/v2/app/manifests/1",
        "/v2/app",
        "",
        &body,
    )
    .await;
    assert_eq!(outbound.seen().len(), before, "{:#?}", outbound.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_verified_against_the_system_roots() {
    if !have_registry2() {
        return;
    }
    let mut plain = Registry2::start("");
    let (body, _) = push_image(&plain.api(), "org/app", "1", &[data(3000, 9)], None).await;
    let (tls, cert) = plain.restart_tls();
    let config = |dir: &std::path::Path| {
        common::write_config(
            dir,
            &upstreams_yaml(&[("ghcr.io", &tls.url, "timeout: 2s")], ""),
        )
    };
    // The self-signed certificate is trusted once it is in the roots (SSL_CERT_FILE here).
    let dir = tempfile::tempdir().unwrap();
    let cert = cert.display().to_string();
    let server = common::Server::start(&[&config(dir.path())], &[("SSL_CERT_FILE", &cert)]);
    let api = Api::new(&server.url);
    pull_and_verify(
        &api,
        "/v2/ghcr.io/org/app/manifests/1",
        "/v2/ghcr.io/org/app",
        "",
        &body,
    )
    .await;
    drop(server);
    // Without it, the upstream is not trusted: an error, not content from an unverified peer.
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&[&config(dir.path())], &[]);
    Api::new(&server.url)
        .get("/v2/ghcr.io/org/app/manifests/1")
        .await
        .assert_error(502, "UNKNOWN");
    let logs = server
        .logs(std::time::Duration::from_millis(100))
        .join("\n");
    assert!(
        logs.contains("certificate") || logs.contains("Certificate"),
        "{logs}"
    );
}
