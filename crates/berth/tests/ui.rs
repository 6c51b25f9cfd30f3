//! The web UI against the real `berth` binary: what a person sees on the repository list, a
//! repository's tag page and an image page (platform table, layers, config, labels escaped,
//! referrers, cosign tags folded, pull commands with the digest), the security headers,
//! search and paging, `http.prefix`, `GET /` with the UI on and off, the htpasswd login and
//! logout flow with its cookie flags and the failed-login limiter, and the built-in token
//! server's login with its per-repository rules. Server times of the repository list and of a 2,000-tag page
//! are printed.
#![cfg(feature = "ui")]
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod ui_kit;

use common::auth::{add_user, builtin_token_auth};
use common::oci::{Api, Reg};
use common::{write_config, Server};
use ui_kit::{
    assert_no_inline_code, assert_security_headers, page, push_many_repositories, push_many_tags,
    seed, timed_page, HOSTILE,
};

/// Tags in the large repository: 2,000 keep the test fast; `BERTH_UI_TEST_TAGS=10000` measures
/// the design's budget.
fn many() -> usize {
    count_from_env("BERTH_UI_TEST_TAGS", 2000)
}

/// `var` when it holds a number of at least `default`, else `default`.
fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= default)
        .unwrap_or(default)
}

#[tokio::test]
async fn pages_show_what_is_stored() {
    let reg = Reg::start("ui:\n  title: Acme <images>\n  pullhost: reg.example:5000\n");
    let seeded = seed(&reg).await;
    let many = many();
    push_many_tags(&reg, "big/many", many).await;

    // The repository list: every repository, the escaped title, the security headers.
    let (r, client, server_ms) = timed_page(&reg, "/ui/").await;
    println!("repository list: {server_ms:.1} ms at the server, {client:?} round trip");
    r.assert_status(200);
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    assert_security_headers(&r);
    let html = r.text();
    assert_no_inline_code(&html);
    for repo in ["big/many", "team/app", "team/multi"] {
        assert!(
            html.contains(&format!("href=\"/ui/r/{repo}\">{repo}</a>")),
            "{repo}: {html}"
        );
    }
    assert!(html.contains("Acme &lt;images&gt;") && !html.contains("Acme <images>"));
    assert!(html.contains("Showing 1–3 of 3"), "{html}");

    // Search (substring) and paging.
    let html = page(&reg, "/ui/?q=MULTI", None).await.text();
    assert!(
        html.contains("team/multi") && !html.contains("team/app") && !html.contains("big/many")
    );
    let html = page(&reg, "/ui/?n=1", None).await.text();
    assert!(
        html.contains("Showing 1–1 of 3") && html.contains(">big/many</a>"),
        "{html}"
    );
    assert!(
        html.contains("rel=\"next\" href=\"/ui/?start=1&amp;n=1\""),
        "{html}"
    );
    let html = page(&reg, "/ui/?n=1&start=1", None).await.text();
    assert!(
        html.contains(">team/app</a>") && !html.contains(">big/many</a>"),
        "{html}"
    );
    assert!(html.contains("rel=\"prev\""));

    // The index: its platform table, its referrer, pull commands pinned by digest.
    let r = page(&reg, "/ui/r/team/multi/-/v1", None).await;
    r.assert_status(200);
    assert_security_headers(&r);
    let html = r.text();
    assert!(html.contains("<h2>Platforms</h2>"), "{html}");
    assert!(html.contains("<td>linux/arm64</td>") && html.contains("<td>linux/amd64</td>"));
    // The first two manifests pushed are the platform images.
    for (digest, _) in &seeded.multi.manifests[..2] {
        assert!(
            html.contains(&format!("/ui/r/team/multi/-/{digest}")),
            "{digest}: {html}"
        );
    }
    assert!(
        html.contains("application/example.signature"),
        "referrer: {html}"
    );
    assert!(html.contains(&seeded.multi.sig[..19]), "referrer digest");
    let index = &seeded.multi.index;
    assert!(html.contains(&format!("docker pull reg.example:5000/team/multi@{index}")));
    assert!(html.contains("docker pull reg.example:5000/team/multi:v1"));
    assert!(html.contains(&format!("image: reg.example:5000/team/multi@{index}")));
    assert!(html.contains(&format!(
        "data-copy=\"crictl pull reg.example:5000/team/multi@{index}\""
    )));
    // A platform's own page: its layer and config.
    let (child, _) = &seeded.multi.manifests[1];
    let html = page(&reg, &format!("/ui/r/team/multi/-/{child}"), None)
        .await
        .text();
    assert!(
        html.contains("<h2>Layers</h2>") && html.contains("linux/arm64"),
        "{html}"
    );
    assert!(
        !html.contains("By tag"),
        "reached by digest: no tag commands"
    );

    // The labelled image: config shown, everything from storage escaped.
    let r = page(&reg, "/ui/r/team/app/-/v2", None).await;
    r.assert_status(200);
    let html = r.text();
    assert_no_inline_code(&html);
    assert!(!html.contains(HOSTILE) && !html.contains("<img src=x>") && !html.contains("<iframe"));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("x&quot;&gt;&lt;img src=x&gt;"));
    assert!(html.contains("GREETING=&lt;b&gt;hi&lt;/b&gt;"));
    assert!(html.contains("<code>/bin/app</code>") && html.contains("<code>--serve</code>"));
    assert!(html.contains("2026-01-02T03:04:05Z") && html.contains("#(nop) ADD file:abc in /"));
    assert!(html.contains("RUN echo &#39;&lt;iframe src=x&gt;&#39;"));
    assert!(
        html.contains("&quot;quoted&quot; &amp; &lt;i&gt;marked&lt;/i&gt;"),
        "annotation"
    );
    assert!(
        html.contains(&format!("cosign sig (tag <code>{}</code>)", seeded.sig_tag)),
        "{html}"
    );
    assert!(html.contains(&format!("reg.example:5000/team/app@{}", seeded.app)));

    // The repository page folds the .sig tag under its image.
    let html = page(&reg, "/ui/r/team/app", None).await.text();
    assert!(html.contains(">v2</a>") && html.contains("<span class=\"badge\">sig</span>"));
    assert!(
        !html.contains(&format!(">{}</a>", seeded.sig_tag)),
        "{html}"
    );
    assert!(html.contains("1 cosign signature"), "{html}");
    assert!(html.contains("Showing 1–1 of 1"));
    let html = page(&reg, "/ui/r/team/multi", None).await.text();
    assert!(
        html.contains("linux/amd64, linux/arm64"),
        "platforms column: {html}"
    );

    // The large repository: one page of 50 tags, timed; later pages and search.
    let (r, client, server_ms) = timed_page(&reg, "/ui/r/big/many").await;
    println!("tag page of {many} tags: {server_ms:.1} ms at the server, {client:?} round trip");
    r.assert_status(200);
    let html = r.text();
    assert!(html.contains(&format!("Showing 1–50 of {many}")), "{html}");
    assert!(html.contains(">t0049</a>") && !html.contains(">t0050</a>"));
    assert!(html.contains(" UTC</td>"), "push dates: {html}");
    assert!(html.contains("<td class=\"num\">"), "sizes");
    let last_page = format!("/ui/r/big/many?start={}&n=200", many - 100);
    let html = page(&reg, &last_page, None).await.text();
    let showing = format!("Showing {}–{many} of {many}", many - 99);
    assert!(html.contains(&showing), "{html}");
    assert!(html.contains(&format!(">t{:04}</a>", many - 1)));
    assert!(!html.contains(&format!(">t{:04}</a>", many - 101)));
    assert!(!html.contains("rel=\"next\""));
    let html = page(&reg, "/ui/r/big/many?n=100000", None).await.text();
    assert!(
        html.contains("Showing 1–200 of"),
        "page size is capped: {html}"
    );
    let html = page(&reg, "/ui/r/big/many?q=t19", None).await.text();
    assert!(
        html.contains("Showing 1–50 of 100") && html.contains(">t1900</a>"),
        "{html}"
    );

    // Unknown repositories and images, assets, and methods.
    page(&reg, "/ui/r/no/such", None).await.assert_status(404);
    page(&reg, "/ui/r/team/app/-/nope", None)
        .await
        .assert_status(404);
    page(&reg, "/ui/r/Bad..Name", None).await.assert_status(404);
    let r = reg.get("/ui/static/ui.js").await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), "text/javascript; charset=utf-8");
    assert!(r.text().contains("navigator.clipboard"));
    assert_security_headers(&r);
    let r = reg.get("/ui/static/ui.css").await;
    assert!(r.text().contains("prefers-color-scheme: dark"));
    reg.send("DELETE", "/ui/", &[], Vec::new())
        .await
        .assert_status(405);

    // `GET /`: browsers go to the UI, probes keep registry:2's empty 200.
    let r = page(&reg, "/", None).await;
    r.assert_status(303);
    assert_eq!(r.header("location"), "/ui/");
    let r = reg.get("/").await;
    r.assert_status(200);
    assert!(r.body.is_empty());
    // The API is unchanged beside the UI.
    reg.get("/v2/").await.assert_status(200);
    reg.get("/v2/team/app/tags/list").await.assert_status(200);
}

/// Repositories for the list test: 300 keep it fast; `BERTH_UI_TEST_REPOS=2000` measures the
/// design's budget.
fn many_repositories() -> usize {
    count_from_env("BERTH_UI_TEST_REPOS", 300)
}

#[tokio::test]
async fn repository_list_with_many_repositories() {
    let reg = Reg::start("");
    let count = many_repositories();
    push_many_repositories(&reg, count).await;
    // The first page after a push lists the storage once (as `_catalog` would); the ones
    // after use that listing.
    let (r, _, first_ms) = timed_page(&reg, "/ui/").await;
    r.assert_status(200);
    println!(
        "repository list of {count} repositories, listing storage: {first_ms:.1} ms at the server"
    );
    let (r, client, server_ms) = timed_page(&reg, "/ui/").await;
    println!("repository list of {count} repositories: {server_ms:.1} ms at the server, {client:?} round trip");
    let html = r.text();
    assert!(html.contains(&format!("Showing 1–50 of {count}")), "{html}");
    assert!(html.contains(">many/r0049</a>") && !html.contains(">many/r0050</a>"));
    let last = format!("/ui/?start={}&n=200", count - 10);
    let html = page(&reg, &last, None).await.text();
    assert!(
        html.contains(&format!(">many/r{:04}</a>", count - 1)),
        "{html}"
    );
    assert!(!html.contains("rel=\"next\"") && html.contains("rel=\"prev\""));
    let (r, _, server_ms) = timed_page(&reg, "/ui/?q=r01").await;
    println!("repository search over {count} repositories: {server_ms:.1} ms at the server");
    let html = r.text();
    assert!(
        html.contains("Showing 1–50 of 100") && html.contains(">many/r0100</a>"),
        "{html}"
    );
}

#[tokio::test]
async fn prefix_host_fallback_and_ui_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(
        &[&config],
        &[
            ("REGISTRY_HTTP_PREFIX", "/registry/"),
            ("REGISTRY_HTTP_HEADERS_X-OPERATOR", "[on]"),
            ("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS", "SAMEORIGIN"),
        ],
    );
    let api = Api::new(&format!("{}/registry", server.url));
    let (_, digest) = api.push_image("solo/app", "latest", "prefix").await;
    let root = Api::new(&server.url);
    let r = page(&root, "/registry/ui/", None).await;
    r.assert_status(200);
    // `http.headers` reach UI responses too; the UI's own security headers win.
    assert_eq!(r.header("x-operator"), "on");
    assert_eq!(r.header("x-frame-options"), "DENY");
    let html = r.text();
    assert!(html.contains("href=\"/registry/ui/r/solo/app\""), "{html}");
    assert!(html.contains("href=\"/registry/ui/static/ui.css\""));
    assert!(html.contains("src=\"/registry/ui/static/ui.js\""));
    page(&root, "/ui/", None).await.assert_status(404);
    let r = page(&root, "/registry/ui", None).await;
    r.assert_status(303);
    assert_eq!(r.header("location"), "/registry/ui/");
    let r = page(&root, "/", None).await;
    assert_eq!(r.header("location"), "/registry/ui/");
    // No pullhost, no http.host: the Host the browser used.
    let host = server.url.trim_start_matches("http://");
    let html = page(&root, "/registry/ui/r/solo/app/-/latest", None)
        .await
        .text();
    assert!(
        html.contains(&format!("podman pull {host}/solo/app@{digest}")),
        "{html}"
    );
    // UI requests get the access log line API requests get.
    let logs = server.logs(std::time::Duration::from_millis(300));
    assert!(
        logs.iter()
            .any(|l| l.contains("response completed")
                && l.contains("/registry/ui/r/solo/app/-/latest")),
        "{logs:?}"
    );
    drop(server);

    // The UI off: no UI routes, and `/` answers 200 to browsers and probes alike.
    let server = Server::start(&[&config], &[("REGISTRY_UI_ENABLED", "false")]);
    let api = Api::new(&server.url);
    page(&api, "/ui/", None).await.assert_status(404);
    let r = page(&api, "/", None).await;
    r.assert_status(200);
    assert!(r.body.is_empty() && !r.has("location"));
    api.get("/").await.assert_status(200);
    api.get("/v2/solo/app/tags/list").await.assert_status(200);
}

/// The `Set-Cookie` of a login, as `name=value` for the next requests.
fn session_cookie(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn login(api: &Api, user: &str, password: &str, origin: Option<&str>) -> common::oci::Resp {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(o) = origin {
        headers.push(("origin", o));
    }
    let body = format!("username={user}&password={password}");
    api.send("POST", "/ui/login", &headers, body).await
}

#[tokio::test]
async fn htpasswd_login_logout_and_limits() {
    // Content pushed without auth, then served with htpasswd auth over the same storage.
    let reg = Reg::start("");
    seed(&reg).await;
    let Reg { server, dir, .. } = reg;
    drop(server);
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "alice", "wonder land&more");
    let config = write_config(
        dir.path(),
        &format!(
            "auth:\n  htpasswd:\n    realm: ui-test\n    path: {}\nlimits:\n  login:\n    accountfailures: 3\n",
            htpasswd.display()
        ),
    );
    let server = Server::start(&[&config], &[]);
    let api = Api::new(&server.url);

    // Anonymous: no repository listed or readable, a login link, no Basic-auth challenge.
    let r = page(&api, "/ui/", None).await;
    r.assert_status(200);
    assert_security_headers(&r);
    let html = r.text();
    assert!(html.contains("href=\"/ui/login\">Log in</a>"), "{html}");
    assert!(
        !html.contains("team/app") && !html.contains("team/multi"),
        "{html}"
    );
    page(&api, "/ui/r/team/app", None).await.assert_status(404);
    page(&api, "/ui/r/team/app/-/v2", None)
        .await
        .assert_status(404);
    let r = page(&api, "/ui/login", None).await;
    assert!(r
        .text()
        .contains("<form class=\"login\" method=\"post\" action=\"/ui/login\">"));
    assert_no_inline_code(&r.text());

    // A wrong password: the form again, no cookie, no challenge.
    let r = login(&api, "alice", "wrong", None).await;
    r.assert_status(401);
    assert_security_headers(&r);
    assert!(!r.has("set-cookie"));
    assert!(r.text().contains("Invalid user name or password."));
    // A form posted from another site is refused before the password is checked.
    let r = login(
        &api,
        "alice",
        "wonder+land%26more",
        Some("https://evil.test"),
    )
    .await;
    r.assert_status(403);
    assert!(!r.has("set-cookie"));

    // The right password (form-encoded): a session cookie with the safe flags.
    let origin = server.url.clone();
    let r = login(&api, "alice", "wonder+land%26more", Some(&origin)).await;
    r.assert_status(303);
    assert_eq!(r.header("location"), "/ui/");
    let set_cookie = r.header("set-cookie").to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui/", "Max-Age="] {
        assert!(set_cookie.contains(flag), "{set_cookie} lacks {flag}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = session_cookie(&set_cookie);
    assert!(!cookie.contains("alice") && cookie.len() > 60, "{cookie}");

    // Logged in: the repositories and the image page.
    let html = page(&api, "/ui/", Some(&cookie)).await.text();
    assert!(
        html.contains("Logged in as <strong>alice</strong>"),
        "{html}"
    );
    assert!(
        html.contains(">team/app</a>") && html.contains(">team/multi</a>"),
        "{html}"
    );
    let html = page(&api, "/ui/r/team/multi/-/v1", Some(&cookie))
        .await
        .text();
    assert!(html.contains("<td>linux/arm64</td>"));
    // A made-up cookie is nobody.
    let forged = format!("berth_ui_session={}", "0".repeat(64));
    assert!(!page(&api, "/ui/", Some(&forged))
        .await
        .text()
        .contains("team/app"));

    // Logout ends the session server-side: the old cookie no longer works.
    let r = api
        .send("POST", "/ui/logout", &[("cookie", &cookie)], Vec::new())
        .await;
    r.assert_status(303);
    assert!(r.header("set-cookie").contains("Max-Age=0"));
    let html = page(&api, "/ui/", Some(&cookie)).await.text();
    assert!(
        !html.contains("team/app") && !html.contains("Logged in"),
        "{html}"
    );

    // Failed logins go through the limiter (accountfailures: 3): then 429, even before the
    // password is checked.
    for _ in 0..3 {
        login(&api, "mallory", "guess", None)
            .await
            .assert_status(401);
    }
    let r = login(&api, "mallory", "guess", None).await;
    r.assert_status(429);
    assert!(r.has("retry-after"));
    assert!(r.text().contains("Too many failed logins"));
    drop(server);
}

#[tokio::test]
async fn builtin_token_server_login_follows_its_rules() {
    let reg = Reg::start("");
    seed(&reg).await;
    reg.push_image("private/x", "v1", "private").await;
    let Reg { server, dir, .. } = reg;
    drop(server);
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "alice", "secret");
    let rules = "admins: [root]\nrules:\n  - {repositories: [team/app], users: [alice], actions: [pull]}\n  - {repositories: [team/multi], users: [anonymous], actions: [pull]}";
    let auth = builtin_token_auth("ui-test", &htpasswd, &dir.path().join("signing.pem"), rules);
    let config = write_config(dir.path(), &auth);
    let server = Server::start(&[&config], &[]);
    let api = Api::new(&server.url);

    // Anonymous: what the rules let anonymous callers pull, nothing else.
    let html = page(&api, "/ui/", None).await.text();
    assert!(
        html.contains(">team/multi</a>") && html.contains("href=\"/ui/login\">Log in</a>"),
        "{html}"
    );
    assert!(
        !html.contains("team/app") && !html.contains("private/x"),
        "{html}"
    );
    page(&api, "/ui/r/team/app/-/v2", None)
        .await
        .assert_status(404);
    page(&api, "/ui/r/team/multi/-/v1", None)
        .await
        .assert_status(200);

    // A wrong password, then alice: her rule adds team/app; private/x stays hidden.
    let r = login(&api, "alice", "wrong", None).await;
    r.assert_status(401);
    assert!(!r.has("set-cookie") && !r.has("www-authenticate"));
    let r = login(&api, "alice", "secret", None).await;
    r.assert_status(303);
    let cookie = session_cookie(r.header("set-cookie"));
    let html = page(&api, "/ui/", Some(&cookie)).await.text();
    assert!(
        html.contains("Logged in as <strong>alice</strong>"),
        "{html}"
    );
    assert!(
        html.contains(">team/app</a>") && html.contains(">team/multi</a>"),
        "{html}"
    );
    assert!(!html.contains("private/x"), "{html}");
    page(&api, "/ui/r/private/x", Some(&cookie))
        .await
        .assert_status(404);
    let html = page(&api, "/ui/r/team/app/-/v2", Some(&cookie))
        .await
        .text();
    assert!(html.contains("<h2>Layers</h2>"), "{html}");
    // alice is no admin: no registry page, not even a link to it.
    assert!(!html.contains("/ui/admin"), "{html}");
    page(&api, "/ui/admin", Some(&cookie))
        .await
        .assert_status(404);

    // root is: the registry page with the masked configuration.
    add_user(&htpasswd, "root", "rootpw");
    let r = login(&api, "root", "rootpw", None).await;
    r.assert_status(303);
    let root = session_cookie(r.header("set-cookie"));
    let r = page(&api, "/ui/admin", Some(&root)).await;
    r.assert_status(200);
    let html = r.text();
    assert!(
        html.contains("<h2>Maintenance</h2>") && html.contains("Effective configuration"),
        "{html}"
    );
    drop(server);
}

/// The hidden form fields of a page, urlencoded, as a browser posts them.
fn hidden_form(html: &str) -> String {
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once('"').unwrap();
            let value = rest
                .split_once("value=\"")
                .unwrap()
                .1
                .split_once('"')
                .unwrap()
                .0;
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn registry_page_previews_and_runs_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(
        &[&config],
        &[("REGISTRY_STORAGE_MAINTENANCE_GC_DELAY", "1s")],
    );
    let api = Api::new(&server.url);
    let (_, digest) = api.push_image("gc/app", "v1", "collect me").await;
    api.push_image("gc/keep", "v1", "keep me").await;
    api.delete(&format!("/v2/gc/app/manifests/{digest}"))
        .await
        .assert_status(202);
    // Older than the delay: unused blobs may go to the trash.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    let html = page(&api, "/ui/admin", None).await.text();
    assert!(
        html.contains("<td>garbage collection</td><td>off (storage.maintenance.gc)</td><td>not since start</td>"),
        "{html}"
    );
    let r = page(&api, "/ui/admin/gc", None).await;
    r.assert_status(200);
    let preview = r.text();
    // The deleted image's manifest, config and layer; nothing of the kept one.
    assert_eq!(
        preview.matches("would move to the trash: sha256:").count(),
        3,
        "{preview}"
    );
    assert!(
        preview.contains(&format!("would move to the trash: {digest}")),
        "{preview}"
    );
    assert!(preview.contains("dry run: "), "{preview}");

    // Without the page's form token the run is refused; with it, it runs.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    api.send("POST", "/ui/admin/gc", &form, "csrf=0".to_owned())
        .await
        .assert_status(403);
    let r = api
        .send("POST", "/ui/admin/gc", &form, hidden_form(&preview))
        .await;
    r.assert_status(200);
    assert!(r.text().contains("3 unused blobs"), "{}", r.text());
    let html = page(&api, "/ui/admin", None).await.text();
    assert!(
        html.contains("moved to the trash"),
        "the run is listed: {html}"
    );
    // A second preview finds nothing left to trash.
    let preview = page(&api, "/ui/admin/gc", None).await.text();
    assert!(
        !preview.contains("would move to the trash: sha256:"),
        "{preview}"
    );
    assert!(preview.contains("3 waiting for the delay"), "{preview}");
    api.get("/v2/gc/keep/manifests/v1").await.assert_status(200);
    let r = page(&api, "/ui/admin/retention", None).await;
    assert!(r.text().contains("No retention policies"), "{}", r.text());
}

#[tokio::test]
async fn registry_page_previews_and_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(
        &[&config],
        &[(
            "REGISTRY_STORAGE_MAINTENANCE_RETENTION",
            "{policies: [{repositories: ['ret/**'], keeplast: 1}]}",
        )],
    );
    let api = Api::new(&server.url);
    for tag in ["v1", "v2", "v3"] {
        api.push_image("ret/app", tag, tag).await;
    }
    api.push_image("other/app", "v1", "untouched").await;

    let r = page(&api, "/ui/admin/retention", None).await;
    r.assert_status(200);
    let preview = r.text();
    assert_eq!(
        preview.matches("ret/app: would delete tag ").count(),
        2,
        "{preview}"
    );
    assert!(preview.contains("Apply retention now"), "{preview}");

    // Without the page's form token the run is refused; with it, it deletes what was listed.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    api.send("POST", "/ui/admin/retention", &form, "csrf=0".to_owned())
        .await
        .assert_status(403);
    api.get("/v2/ret/app/manifests/v1").await.assert_status(200);
    let r = api
        .send("POST", "/ui/admin/retention", &form, hidden_form(&preview))
        .await;
    r.assert_status(200);
    let run = r.text();
    assert_eq!(run.matches("ret/app: deleted tag ").count(), 2, "{run}");
    let tags = api.get("/v2/ret/app/tags/list").await;
    let tags: serde_json::Value = serde_json::from_str(&tags.text()).unwrap();
    assert_eq!(tags["tags"].as_array().map(Vec::len), Some(1), "{tags}");
    api.get("/v2/other/app/manifests/v1")
        .await
        .assert_status(200);
    let html = page(&api, "/ui/admin", None).await.text();
    assert!(
        html.contains("2 tags and 0 untagged manifests deleted"),
        "the run is listed: {html}"
    );
}

/// The scheduled retention job inside `berth serve` (interval 1 s here) applies the policies
/// and shows as the job's last run on the registry page.
#[tokio::test]
async fn scheduled_retention_runs_and_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(&[&config], &[]);
    let api = Api::new(&server.url);
    for tag in ["v1", "v2", "v3"] {
        api.push_image("ret/app", tag, tag).await;
    }
    drop(server);
    let server = Server::start(
        &[&config],
        &[(
            "REGISTRY_STORAGE_MAINTENANCE_RETENTION",
            "{enabled: true, interval: 1s, policies: [{repositories: ['ret/**'], keeplast: 1}]}",
        )],
    );
    let api = Api::new(&server.url);
    let mut left = None;
    for _ in 0..100 {
        let tags = api.get("/v2/ret/app/tags/list").await;
        let tags: serde_json::Value = serde_json::from_str(&tags.text()).unwrap();
        left = tags["tags"].as_array().map(Vec::len);
        if left == Some(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, Some(1), "the scheduled run kept the newest tag only");
    let html = page(&api, "/ui/admin", None).await.text();
    assert!(
        html.contains("every 1s, 1 policy")
            && html.contains("2 tags and 0 untagged manifests deleted"),
        "{html}"
    );
}
