//! OIDC sign-in to the web UI against a real identity provider: `oidc-provider` from npm
//! (scripts/oidc/idp.mjs) on loopback, two users in different groups, and the real `berth`
//! binary with `auth.oidc` beside the built-in token server, whose rules grant by group. An
//! HTTP client with a cookie jar plays the browser: it starts the sign-in at Berth, posts the
//! provider's login form, follows the redirects back and reads the repository list.
//!
//! Refused, each in its own test: a replayed `state`, a sign-in finished in another browser,
//! an authorization code redeemed with another sign-in's PKCE verifier (the provider refuses;
//! the UI says so), ID tokens with a wrong nonce, a wrong audience, a forged signature or an
//! unknown key; an unreachable provider (an error page, nobody let in).
//!
//! Personal access tokens: an OIDC user creates them on the "Access tokens" page (shown
//! once), logs in to the token server with them as the password (what `docker login` does),
//! gets what the user's group allows cut to the token's scope, and a revoked, expired or
//! someone else's token is refused.
//!
//! Needs node (and npm, to install scripts/oidc's packages when missing): without them the
//! tests are skipped with a message, except under CI=true, where that is a failure.
#![cfg(feature = "ui")]
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod oidc_kit;

use std::time::Duration;

use common::auth::{add_user, builtin_token_auth, send, SERVICE};
use common::oci::Api;
use common::{write_config, Server};
use oidc_kit::{
    create_token, csrf, listed, query, registry, registry_for, registry_with, sign_in, to_callback,
    token_for, url_query, Browser, Idp, RULES,
};
use reqwest::Url;

#[tokio::test]
async fn groups_decide_what_each_user_sees() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry(&idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();

    // The login page offers both ways in.
    let b = Browser::new();
    let login = b.get(&format!("{berth}/ui/login")).await;
    assert!(
        login.body.contains("name=\"password\"")
            && login
                .body
                .contains("href=\"/ui/oidc/login\">Sign in with Test IdP</a>"),
        "{}",
        login.body
    );
    assert!(listed(&b, &berth).await.is_empty());

    // A wrong password at the provider: its form again, nothing at Berth.
    let start = b.get(&format!("{berth}/ui/oidc/login")).await;
    let form = b.follow(b.get(&start.location()).await, &berth).await;
    let form = form.expect_err("login form");
    let action = form.body.split("action=\"").nth(1).unwrap();
    let action = format!("{}{}", idp.issuer, action.split('"').next().unwrap());
    let refused = b
        .post(&action, &[("login", "alice"), ("password", "wrong")])
        .await;
    assert_eq!(refused.status, 401);

    // alice (team-a): team-a's repository only, and she may not open team-b's.
    let done = sign_in(&b, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.headers["refresh"], "0; url=/ui/");
    assert!(done.body.contains("Signed in as alice with Test IdP"));
    let cookie = done
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("berth_ui_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
    assert_eq!(listed(&b, &berth).await, ["team-a/app"]);
    let html = b.get(&format!("{berth}/ui/")).await.body;
    assert!(html.contains("<strong>alice</strong>"), "{html}");
    assert_eq!(b.get(&format!("{berth}/ui/r/team-b/app")).await.status, 404);
    assert_eq!(b.get(&format!("{berth}/ui/r/team-a/app")).await.status, 200);

    // Logout ends the session.
    let html = b.get(&format!("{berth}/ui/")).await.body;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("")
        .to_owned();
    let out = b
        .post(&format!("{berth}/ui/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, 303);
    assert!(listed(&b, &berth).await.is_empty());
    // ... and sends the browser to the provider's end-session endpoint with the ID token as
    // hint; confirming there ends the provider's session: the next sign-in asks again.
    let end = out.location();
    assert!(
        end.starts_with(&format!(
            "{}/session/end?client_id=berth&id_token_hint=",
            idp.issuer
        )),
        "{end}"
    );
    let confirm = b.get(&end).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let action = confirm
        .body
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let xsrf = confirm
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let action = Url::parse(&confirm.url).unwrap().join(action).unwrap();
    let done = b
        .post(action.as_str(), &[("xsrf", xsrf), ("logout", "yes")])
        .await;
    assert!(done.status < 400, "{} {}", done.status, done.body);
    let _ = b.follow(done, &berth).await;
    let start = b.get(&format!("{berth}/ui/oidc/login")).await;
    let form = b.follow(b.get(&start.location()).await, &berth).await;
    let form = form.expect_err("signed out at the provider: its login form again");
    assert!(
        form.body.contains("Sign in to the test IdP"),
        "{}",
        form.body
    );

    // bob (team-b) in another browser: team-b's repository only.
    let b2 = Browser::new();
    let done = sign_in(&b2, &berth, &idp, "bob", "bob-pw").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(listed(&b2, &berth).await, ["team-b/app"]);
}

/// Every `refresh_interval` (1 s here) a session is checked again with the provider through its
/// refresh token: new groups apply, a user disabled at the provider is signed out, logout
/// revokes the token, and a provider that is down signs nobody out.
#[tokio::test]
async fn sessions_are_checked_again_with_the_provider() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry(&idp.issuer, "    refresh_interval: 1s\n").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let after_interval = || tokio::time::sleep(Duration::from_millis(1300));

    let alice = Browser::new();
    let done = sign_in(&alice, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(listed(&alice, &berth).await, ["team-a/app"]);

    // Moved from team-a to team-b at the provider: the next check gives the new groups.
    idp.change_user(serde_json::json!({"user": "alice", "groups": ["team-b"]}))
        .await;
    assert_eq!(
        listed(&alice, &berth).await,
        ["team-a/app"],
        "within the interval the session is not checked"
    );
    after_interval().await;
    assert_eq!(listed(&alice, &berth).await, ["team-b/app"]);
    // The rotated refresh token works for the check after that one too.
    after_interval().await;
    assert_eq!(listed(&alice, &berth).await, ["team-b/app"]);

    // Disabled at the provider: the next check signs her out.
    idp.change_user(serde_json::json!({"user": "alice", "disabled": true}))
        .await;
    after_interval().await;
    assert!(listed(&alice, &berth).await.is_empty());
    let html = alice.get(&format!("{berth}/ui/")).await.body;
    assert!(html.contains("<a href=\"/ui/login\">Log in</a>"), "{html}");
    assert!(!html.contains("<strong>alice</strong>"), "{html}");

    // Logout revokes the session's refresh token at the provider.
    let bob = Browser::new();
    let done = sign_in(&bob, &berth, &idp, "bob", "bob-pw").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let revoked = idp.revocations().await;
    let html = bob.get(&format!("{berth}/ui/")).await.body;
    assert!(html.contains("<strong>bob</strong>"), "{html}");
    let out = bob.post(&format!("{berth}/ui/logout"), &[]).await;
    assert_eq!(out.status, 303);
    let mut waited = 0;
    while idp.revocations().await == revoked && waited < 50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(
        idp.revocations().await,
        revoked + 1,
        "the refresh token was revoked"
    );

    // The provider down: sessions go on with what it said last.
    let carol = Browser::new();
    let done = sign_in(&carol, &berth, &idp, "bob", "bob-pw").await;
    assert_eq!(done.status, 200, "{}", done.body);
    drop(idp);
    after_interval().await;
    assert_eq!(listed(&carol, &berth).await, ["team-b/app"]);
    assert_eq!(listed(&carol, &berth).await, ["team-b/app"]);
}

/// A provider that issues no refresh token (the ES256 client here): the session holds the
/// groups of its sign-in and is not checked.
#[tokio::test]
async fn sessions_without_a_refresh_token_keep_the_sign_in_groups() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) =
        registry_for("berth-es256", &idp.issuer, "    refresh_interval: 1s\n").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let alice = Browser::new();
    let done = sign_in(&alice, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(done.status, 200, "{}", done.body);
    idp.change_user(serde_json::json!({"user": "alice", "groups": ["team-b"]}))
        .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(listed(&alice, &berth).await, ["team-a/app"]);
}

#[tokio::test]
async fn a_provider_user_named_like_a_local_account_is_refused() {
    let Some(idp) = Idp::start() else { return };
    let (server, dir) = registry(&idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    // The provider's alice made an access token while no local account had her name.
    let early = Browser::new();
    let page = sign_in(&early, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = create_token(&early, &berth, "laptop", "pull").await;
    let scope = ["repository:team-a/app:pull"];
    assert_eq!(token_for(&berth, "alice", &token, &scope).await.0, 200);
    // A local htpasswd user called alice (the file is re-read when it changes): the provider's
    // alice must not get her rules, neither by signing in nor with the earlier token.
    add_user(&dir.path().join("htpasswd"), "alice", "local-pw");
    assert_eq!(token_for(&berth, "alice", &token, &scope).await.0, 401);
    let b = Browser::new();
    let page = sign_in(&b, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body
            .contains("A local account of this registry is named alice"),
        "{}",
        page.body
    );
    assert!(listed(&b, &berth).await.is_empty());
    // bob has no local namesake and signs in.
    let b = Browser::new();
    let page = sign_in(&b, &berth, &idp, "bob", "bob-pw").await;
    assert_eq!(page.status, 200, "{}", page.body);
}

#[tokio::test]
async fn a_replayed_state_is_refused() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry(&idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let b = Browser::new();
    let back = to_callback(&b, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(b.get(&back).await.status, 200);
    // The same answer again (its code and state), in a browser that has no session yet:
    // the state was used.
    let b2 = Browser::new();
    b2.jar.lock().unwrap().extend(
        b.jar
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() == "berth_ui_oidc")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let again = b2.get(&back).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(
        again.body.contains("expired or was already used"),
        "{}",
        again.body
    );
    assert!(listed(&b2, &berth).await.is_empty());
}

#[tokio::test]
async fn a_sign_in_finished_in_another_browser_is_refused() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry(&idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let victim = Browser::new();
    // An attacker's own sign-in, handed to a victim's browser (login CSRF): no binding cookie.
    let attacker = Browser::new();
    let back = to_callback(&attacker, &berth, &idp, "bob", "bob-pw").await;
    let r = victim.get(&back).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("started in another browser"), "{}", r.body);
    assert!(listed(&victim, &berth).await.is_empty());
}

#[tokio::test]
async fn a_code_redeemed_without_its_pkce_verifier_is_refused() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry(&idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let b = Browser::new();
    // Sign-in A reaches the way back; sign-in B is started in the same browser. A's code with
    // B's state makes Berth redeem A's code with B's verifier: A's verifier is missing.
    let back_a = to_callback(&b, &berth, &idp, "alice", "alice-pw").await;
    let start_b = b.get(&format!("{berth}/ui/oidc/login")).await;
    let state_b = query(&start_b.location(), "state");
    let code_a = query(&back_a, "code");
    let injected = format!(
        "{berth}/ui/oidc/callback?{}",
        url_query(&[("code", &code_a), ("state", &state_b)])
    );
    let r = b.get(&injected).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.body.contains("refused the sign-in") && r.body.contains("invalid_grant"),
        "{}",
        r.body
    );
    assert!(listed(&b, &berth).await.is_empty());
}

/// Signs in with the provider altering the ID token (`mode`): refused with `expect` shown.
async fn refused_token(mode: &str, expect: &str) {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry(&idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let b = Browser::new();
    idp.tamper(mode).await;
    let r = sign_in(&b, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(r.status, 401, "{mode}: {}", r.body);
    assert!(r.body.contains(expect), "{mode}: {}", r.body);
    assert!(
        !r.headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("berth_ui_session=")),
        "{mode}"
    );
    assert!(listed(&b, &berth).await.is_empty(), "{mode}");
    // The same browser and provider, untouched: signing in works.
    let ok = sign_in(&b, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(ok.status, 200, "{mode}: {}", ok.body);
    assert_eq!(listed(&b, &berth).await, ["team-a/app"], "{mode}");
}

#[tokio::test]
async fn an_id_token_with_a_wrong_nonce_is_refused() {
    refused_token("nonce", "nonce is not this sign-in").await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    refused_token("audience", "InvalidAudience").await;
}

#[tokio::test]
async fn a_forged_id_token_is_refused() {
    refused_token("forged", "InvalidSignature").await;
}

#[tokio::test]
async fn an_id_token_signed_by_an_unlisted_key_is_refused() {
    refused_token("unknown-kid", "does not list").await;
}

#[tokio::test]
async fn an_unreachable_provider_is_an_error_page() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (server, _dir) = registry(&format!("http://127.0.0.1:{port}"), "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let logs = server.logs(Duration::from_millis(500)).join("\n");
    assert!(
        logs.contains("the identity provider is not usable"),
        "{logs}"
    );
    let b = Browser::new();
    let r = b.get(&format!("{berth}/ui/oidc/login")).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body
            .contains("Signing in with Test IdP is not available right now"),
        "{}",
        r.body
    );
    assert!(listed(&b, &berth).await.is_empty());
    // Password logins still work.
    let api = Api::new(&berth);
    let r = api
        .send(
            "POST",
            "/ui/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=root&password=root-pw",
        )
        .await;
    r.assert_status(303);
}

#[tokio::test]
async fn the_redirect_uri_follows_http_host_and_prefix() {
    let Some(idp) = Idp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "root", "root-pw");
    let mut yaml = builtin_token_auth("oidc-test", &htpasswd, &dir.path().join("k.pem"), RULES);
    yaml.push_str(&format!(
        "  oidc:\n    realm: {}\n    client_id: berth\n    client_secret: berth-test-secret\n",
        idp.issuer
    ));
    let config = write_config(dir.path(), &yaml);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "http: {addr: 127.0.0.1:0}",
        "http: {addr: 127.0.0.1:0, prefix: /reg/, host: \"https://reg.example.test\"}",
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&[&config], &[]);
    let berth = server.url.trim_end_matches('/').to_owned();
    let b = Browser::new();
    let login = b.get(&format!("{berth}/reg/ui/login")).await;
    assert!(
        login
            .body
            .contains("href=\"/reg/ui/oidc/login\">Sign in with 127.0.0.1:"),
        "{}",
        login.body
    );
    let start = b.get(&format!("{berth}/reg/ui/oidc/login")).await;
    assert_eq!(start.status, 303, "{}", start.body);
    assert_eq!(
        query(&start.location(), "redirect_uri"),
        "https://reg.example.test/reg/ui/oidc/callback"
    );
    let cookie = start.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("Path=/reg/ui/oidc/; HttpOnly; SameSite=Lax")
            && cookie.ends_with("; Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn access_tokens_log_in_with_what_the_group_allows() {
    let Some(idp) = Idp::start() else { return };
    let (server, dir) = registry(&idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let b = Browser::new();
    assert_eq!(
        sign_in(&b, &berth, &idp, "alice", "alice-pw").await.status,
        200
    );

    // The page, linked from every page of an OIDC user.
    let html = b.get(&format!("{berth}/ui/")).await.body;
    assert!(
        html.contains("href=\"/ui/tokens\">Access tokens</a>"),
        "{html}"
    );
    let html = b.get(&format!("{berth}/ui/tokens")).await.body;
    assert!(
        html.contains("You have no access tokens") && html.contains("Create token"),
        "{html}"
    );
    let pull = create_token(&b, &berth, "laptop", "pull").await;
    let push = create_token(&b, &berth, "ci", "push").await;
    assert!(pull.starts_with("berth_pat_") && pull != push);
    // Listed by name, never shown again; nothing but hashes in storage.
    let html = b.get(&format!("{berth}/ui/tokens")).await.body;
    assert!(
        html.contains(">laptop<") && html.contains(">ci<") && html.contains("pull and push"),
        "{html}"
    );
    assert!(!html.contains(&pull) && !html.contains(&push));
    let tokens_dir = dir.path().join("data/docker/registry/v2/_berth/tokens");
    let mut stored = String::new();
    for user in std::fs::read_dir(&tokens_dir).unwrap() {
        for file in std::fs::read_dir(user.unwrap().path()).unwrap() {
            stored.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
        }
    }
    assert!(stored.contains("laptop") && !stored.contains(&pull) && !stored.contains(&push));

    // What each token gets: alice's group's repository, up to the token's scope; never
    // another group's.
    let scopes = [
        "repository:team-a/app:pull,push,delete",
        "repository:team-b/app:pull",
    ];
    let pull_only = vec![
        ("team-a/app".to_owned(), vec!["pull".to_owned()]),
        ("team-b/app".to_owned(), vec![]),
    ];
    assert_eq!(
        token_for(&berth, "alice", &pull, &scopes).await,
        (200, pull_only)
    );
    let (status, access) = token_for(&berth, "alice", &push, &scopes).await;
    assert_eq!(status, 200);
    assert_eq!(
        access[0],
        (
            "team-a/app".to_owned(),
            vec!["pull".to_owned(), "push".to_owned()]
        )
    );
    assert!(access[1].1.is_empty());
    // And the registry takes them: a pull with the pull token, an upload with the push token.
    let jwt = |password: &str, scope: &str| {
        let berth = berth.clone();
        let password = password.to_owned();
        let scope = scope.to_owned();
        async move {
            let path = format!("/auth/token?service={SERVICE}&scope={scope}");
            let basic = common::auth::basic("alice", &password);
            let r = send(&berth, "GET", &path, Some(&basic), None, None).await;
            format!("Bearer {}", r.json()["token"].as_str().unwrap())
        }
    };
    let bearer = jwt(&pull, "repository:team-a/app:pull").await;
    let r = send(
        &berth,
        "GET",
        "/v2/team-a/app/manifests/v1",
        Some(&bearer),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        &berth,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        Some(&bearer),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401, "a pull token does not push");
    let bearer = jwt(&push, "repository:team-a/app:pull,push").await;
    let r = send(
        &berth,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        Some(&bearer),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 202);
    let bearer = jwt(&push, "repository:team-b/app:pull").await;
    let r = send(
        &berth,
        "GET",
        "/v2/team-b/app/manifests/v1",
        Some(&bearer),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401, "another group's repository");

    // The catalog lists what the token's user and groups may pull, as the UI does.
    let bearer = jwt(&pull, "registry:catalog:*").await;
    let r = send(&berth, "GET", "/v2/_catalog", Some(&bearer), None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["repositories"], serde_json::json!(["team-a/app"]));

    // Someone else's name with alice's token, a made-up token: refused.
    assert_eq!(token_for(&berth, "bob", &pull, &scopes).await.0, 401);
    assert_eq!(
        token_for(&berth, "alice", "berth_pat_madeup", &scopes)
            .await
            .0,
        401
    );

    // Revoked: refused at once.
    let html = b.get(&format!("{berth}/ui/tokens")).await.body;
    let row = html.split("<tr>").find(|r| r.contains(">laptop<")).unwrap();
    let id = row
        .split("name=\"id\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let r = b
        .post(
            &format!("{berth}/ui/tokens"),
            &[("csrf", &csrf(&html)), ("action", "revoke"), ("id", id)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("The token was revoked") && !r.body.contains(">laptop<"),
        "{}",
        r.body
    );
    assert_eq!(token_for(&berth, "alice", &pull, &scopes).await.0, 401);

    // Expired: its record says so (as if 30 days had passed), refused.
    for user in std::fs::read_dir(&tokens_dir).unwrap() {
        for file in std::fs::read_dir(user.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let mut record: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            record["expires"] = serde_json::json!(record["created"].as_u64().unwrap() - 1);
            std::fs::write(&path, record.to_string()).unwrap();
        }
    }
    assert_eq!(token_for(&berth, "alice", &push, &scopes).await.0, 401);
    let html = b.get(&format!("{berth}/ui/tokens")).await.body;
    assert!(html.contains("(expired)"), "{html}");

    // A password user has no access tokens page.
    let api = Api::new(&berth);
    let r = api
        .send(
            "POST",
            "/ui/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=root&password=root-pw",
        )
        .await;
    r.assert_status(303);
    let cookie = r.header("set-cookie").split(';').next().unwrap().to_owned();
    let r = api
        .send("GET", "/ui/tokens", &[("cookie", &cookie)], Vec::new())
        .await;
    r.assert_status(404);
}

#[tokio::test]
async fn es256_id_tokens_are_verified_too() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry_for("berth-es256", &idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let b = Browser::new();
    let back = to_callback(&b, &berth, &idp, "bob", "bob-pw").await;
    let done = b.get(&back).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(listed(&b, &berth).await, ["team-b/app"]);
    // A forged ES256-client token (RS256, another key, the provider's RSA key id): refused.
    let b2 = Browser::new();
    idp.tamper("forged").await;
    let r = sign_in(&b2, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_clear_error() {
    let Some(idp) = Idp::start() else { return };
    let (server, _dir) = registry_with("berth", "not-the-secret", &idp.issuer, "").await;
    let berth = server.url.trim_end_matches('/').to_owned();
    let b = Browser::new();
    let r = sign_in(&b, &berth, &idp, "alice", "alice-pw").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.body.contains("refused the sign-in: invalid_client"),
        "{}",
        r.body
    );
    assert!(listed(&b, &berth).await.is_empty());
}
