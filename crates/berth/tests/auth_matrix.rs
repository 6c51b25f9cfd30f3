//! Zero bypasses: an authorization matrix of callers × every API endpoint against the real
//! `berth serve`, in the built-in token mode (`auth.token.builtin` with rules and admins)
//! and in registry:2's `auth.htpasswd` mode. Every cell asserts the exact status, the OCI
//! error code (not for HEAD, which has no body) and, for 401, the exact `WWW-Authenticate`.
//!
//! The matrix is data: [`ROWS`] has one line per request with the scope registry:2 asks for
//! and the answer for each caller with a valid token; callers without a bearer token, with
//! an invalid token, or without valid htpasswd credentials follow from the row. Adding an
//! endpoint is one row, adding a caller one line in its test. The machinery is in
//! `common/auth.rs`.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::auth::{
    self, bearer, caller, report, token, Caller, Expect, Fix, Key, Row, Want, BU, MU, NU, S200,
    S201, S202, S204, SERVICE,
};
use common::oci::{raw_request, sha256};
use serde_json::{json, Value};
use Want::X;

const ISSUER: &str = "berth-matrix-issuer";
/// What every valid token of the matrix asks the token server for.
const ALL_SCOPES: &[&str] = &[
    "repository:team/app:pull,push,delete",
    "repository:public/base:pull,push,delete",
    "repository:team/secret:pull,push,delete",
    "repository:team/nothing:pull,push,delete",
    "registry:catalog:*",
];
const PULLER: Option<(&str, &str)> = Some(("puller", "pull-pw"));
const PUSHER: Option<(&str, &str)> = Some(("pusher", "push-pw"));
const ROOT: Option<(&str, &str)> = Some(("root", "root-pw"));

/// Columns of a row's answers: which valid token.
const ANON: usize = 0;
const PULL: usize = 1;
const PUSH: usize = 2;
const ADMIN: usize = 3;
const SCOPED: usize = 4;

/// The matrix: (method, path, challenge scope, answers for [anon, pull, push, admin,
/// scoped]). Placeholders are described at [`Fix`]; `{u}` rows get a fresh upload session
/// in team/app per cell, created by the push user (token mode) or alice (htpasswd).
#[rustfmt::skip]
const ROWS: &[Row] = &[
    //  method    path                                                    challenge scope                                                     anon  pull  push  admin scoped
    Row("GET",    "/v2/",                                                 "",                                                                 [S200, S200, S200, S200, S200]),
    Row("GET",    "/v2/_catalog",                                         "registry:catalog:*",                                               [S200, S200, S200, S200, X]),
    Row("GET",    "/v2/team/app/tags/list",                               "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("GET",    "/v2/team/app/manifests/v1",                            "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("HEAD",   "/v2/team/app/manifests/v1",                            "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("GET",    "/v2/team/app/manifests/{m}",                           "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("HEAD",   "/v2/team/app/manifests/{m}",                           "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("GET",    "/v2/team/app/manifests/nope",                          "repository:team/app:pull",                                         [X,    MU,   MU,   MU,   X]),
    Row("PUT",    "/v2/team/app/manifests/v2",                            "repository:team/app:pull,push",                                    [X,    X,    S201, S201, X]),
    Row("DELETE", "/v2/team/app/manifests/{nm}",                          "repository:team/app:delete",                                       [X,    X,    X,    MU,   X]),
    Row("GET",    "/v2/team/app/blobs/{l}",                               "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("HEAD",   "/v2/team/app/blobs/{l}",                               "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("DELETE", "/v2/team/app/blobs/{nb}",                              "repository:team/app:delete",                                       [X,    X,    X,    BU,   X]),
    Row("POST",   "/v2/team/app/blobs/uploads/",                          "repository:team/app:pull,push",                                    [X,    X,    S202, S202, X]),
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={pl}&from=public/base", "repository:team/app:pull,push repository:public/base:pull",     [X,    X,    S201, S201, X]),
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={sl}&from=team/secret", "repository:team/app:pull,push repository:team/secret:pull",     [X,    X,    X,    S201, X]),
    // A mount that names no source is never tried with auth on: 202, never 201, whoever
    // asks and whether or not the digest is stored (no oracle, no read of unnamed content).
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={sl}",               "repository:team/app:pull,push",                                    [X,    X,    S202, S202, X]),
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={sl}&from=",         "repository:team/app:pull,push",                                    [X,    X,    S202, S202, X]),
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={nb}",               "repository:team/app:pull,push",                                    [X,    X,    S202, S202, X]),
    Row("POST",   "/v2/public/base/blobs/uploads/?mount={sl}",            "repository:public/base:pull,push",                                 [X,    X,    X,    S202, S202]),
    Row("GET",    "/v2/team/app/blobs/uploads/{u}",                       "repository:team/app:pull",                                         [X,    S204, S204, S204, X]),
    Row("PATCH",  "/v2/team/app/blobs/uploads/{u}",                       "repository:team/app:pull,push",                                    [X,    X,    S202, S202, X]),
    Row("PUT",    "/v2/team/app/blobs/uploads/{u}?digest={cd}",           "repository:team/app:pull,push",                                    [X,    X,    S201, S201, X]),
    Row("DELETE", "/v2/team/app/blobs/uploads/{u}",                       "repository:team/app:delete",                                       [X,    X,    X,    S204, X]),
    Row("GET",    "/v2/team/app/referrers/{m}",                           "repository:team/app:pull",                                         [X,    S200, S200, S200, X]),
    Row("GET",    "/v2/public/base/tags/list",                            "repository:public/base:pull",                                      [S200, S200, S200, S200, S200]),
    Row("GET",    "/v2/public/base/manifests/v1",                         "repository:public/base:pull",                                      [S200, S200, S200, S200, S200]),
    Row("HEAD",   "/v2/public/base/manifests/{m}",                        "repository:public/base:pull",                                      [S200, S200, S200, S200, S200]),
    Row("GET",    "/v2/public/base/blobs/{l}",                            "repository:public/base:pull",                                      [S200, S200, S200, S200, S200]),
    Row("GET",    "/v2/public/base/referrers/{m}",                        "repository:public/base:pull",                                      [S200, S200, S200, S200, S200]),
    Row("PUT",    "/v2/public/base/manifests/v2",                         "repository:public/base:pull,push",                                 [X,    X,    X,    S201, S201]),
    Row("POST",   "/v2/public/base/blobs/uploads/",                       "repository:public/base:pull,push",                                 [X,    X,    X,    S202, S202]),
    Row("DELETE", "/v2/public/base/manifests/{nm}",                       "repository:public/base:delete",                                    [X,    X,    X,    MU,   MU]),
    Row("DELETE", "/v2/public/base/blobs/{nb}",                           "repository:public/base:delete",                                    [X,    X,    X,    BU,   BU]),
    Row("GET",    "/v2/team/secret/tags/list",                            "repository:team/secret:pull",                                      [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/team/secret/manifests/v1",                         "repository:team/secret:pull",                                      [X,    X,    X,    S200, X]),
    Row("HEAD",   "/v2/team/secret/manifests/{sm}",                       "repository:team/secret:pull",                                      [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/team/secret/blobs/{sl}",                           "repository:team/secret:pull",                                      [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/team/secret/manifests/nope",                       "repository:team/secret:pull",                                      [X,    X,    X,    MU,   X]),
    Row("PUT",    "/v2/team/secret/manifests/v2",                         "repository:team/secret:pull,push",                                 [X,    X,    X,    S201, X]),
    Row("POST",   "/v2/team/secret/blobs/uploads/",                       "repository:team/secret:pull,push",                                 [X,    X,    X,    S202, X]),
    Row("GET",    "/v2/team/nothing/tags/list",                           "repository:team/nothing:pull",                                     [X,    X,    X,    NU,   X]),
];

/// Token mode: users puller (pull on team/app), pusher (pull,push on team/app), root
/// (admin); anonymous may pull public/**. The fixtures are pushed by root. Returns the
/// registry and its signing key (written by the test, so tokens can be forged with it).
async fn token_fixture() -> (Fix, Key) {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate();
    let (htpasswd, keyfile) = (dir.path().join("htpasswd"), dir.path().join("signing.pem"));
    key.write(&keyfile);
    for (user, password) in [PULLER, PUSHER, ROOT].map(Option::unwrap) {
        auth::add_user(&htpasswd, user, password);
    }
    let extra = auth::builtin_token_auth(
        ISSUER,
        &htpasswd,
        &keyfile,
        "ttl: 5m
admins: [root]
rules:
  - {repositories: [team/app], users: [puller], actions: [pull]}
  - {repositories: [team/app], users: [pusher], actions: [pull, push]}
  - {repositories: [\"public/**\"], users: [anonymous], actions: [pull]}",
    );
    let fix = Fix::start(&extra, dir, async |url: &str| {
        bearer(url, ROOT, ALL_SCOPES).await
    })
    .await;
    (fix, key)
}

const REPOS: &[&str] = &["team/app", "public/base", "team/secret", "team/nothing"];

#[tokio::test]
async fn token_mode_valid_tokens_get_exactly_what_the_rules_grant() {
    let (fix, key) = token_fixture().await;
    let url = fix.url();
    let crafted = key.sign(&key.kid, &auth::full_claims(ISSUER, SERVICE, "root", REPOS));
    let public = ["repository:public/base:pull,push,delete"];
    use Expect::Column;
    #[rustfmt::skip]
    let callers = [
        caller("anonymous token", Some(bearer(url, None, ALL_SCOPES).await), Column(ANON)),
        caller("puller", Some(bearer(url, PULLER, ALL_SCOPES).await), Column(PULL)),
        caller("pusher", Some(bearer(url, PUSHER, ALL_SCOPES).await), Column(PUSH)),
        caller("admin", Some(bearer(url, ROOT, ALL_SCOPES).await), Column(ADMIN)),
        // A valid token for another repository (even an admin's) is only good there.
        caller("admin token for public/base", Some(bearer(url, ROOT, &public).await), Column(SCOPED)),
        // The control for the invalid tokens: made by hand like them, valid, accepted.
        caller("hand-made valid token", Some(format!("Bearer {crafted}")), Column(ADMIN)),
    ];
    let (cells, failures) = fix.run(ROWS, &callers).await;
    report("token mode, valid tokens", cells, &failures);
}

/// Personal access tokens of OIDC users (`auth.oidc` beside the built-in token server; its
/// provider is not needed to use a token, so it is a loopback port nobody listens on): the
/// rules grant team/app by group, and a token gets its user's groups cut to its scope. The
/// records are written where the web UI's "Create token" writes them (tested through the UI
/// in ui_oidc.rs): the SHA-256 of the user and of the token name the file.
#[cfg(feature = "ui")]
#[tokio::test]
async fn token_mode_oidc_access_tokens_get_what_their_groups_and_scope_allow() {
    use sha2::{Digest as _, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate();
    let (htpasswd, keyfile) = (dir.path().join("htpasswd"), dir.path().join("signing.pem"));
    key.write(&keyfile);
    let (root, root_pw) = ROOT.unwrap();
    auth::add_user(&htpasswd, root, root_pw);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut extra = auth::builtin_token_auth(
        ISSUER,
        &htpasswd,
        &keyfile,
        "ttl: 5m
admins: [root]
rules:
  - {repositories: [team/app], groups: [pullers], actions: [pull]}
  - {repositories: [team/app], groups: [pushers], actions: [pull, push]}
  - {repositories: [\"public/**\"], users: [anonymous], actions: [pull]}",
    );
    extra.push_str(&format!(
        "  oidc: {{realm: \"http://127.0.0.1:{dead}\", client_id: berth}}\n"
    ));
    let fix = Fix::start(&extra, dir, async |url: &str| {
        bearer(url, ROOT, ALL_SCOPES).await
    })
    .await;
    let hex = |s: &str| {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let pat = |user: &str, groups: &[&str], push: bool, expires: u64| {
        let token = format!("berth_pat_{}_{}", user, if push { "push" } else { "pull" });
        let dir = fix
            .dir
            .path()
            .join("data/docker/registry/v2/_berth/tokens")
            .join(hex(user));
        std::fs::create_dir_all(&dir).unwrap();
        let record = json!({"name": "matrix", "user": user, "groups": groups, "push": push,
            "created": now, "expires": expires});
        std::fs::write(dir.join(hex(&token)), record.to_string()).unwrap();
        token
    };
    let later = now + 3600;
    let pull_of_puller = pat("gina", &["pullers"], false, later);
    let push_of_puller = pat("gina", &["pullers"], true, later);
    let pull_of_pusher = pat("gus", &["pushers", "other"], false, later);
    let push_of_pusher = pat("gus", &["pushers", "other"], true, later);
    let expired = pat("gail", &["pushers"], true, now - 1);
    let url = fix.url();
    let t =
        async |user: &str, token: &str| Some(bearer(url, Some((user, token)), ALL_SCOPES).await);
    use Expect::Column;
    #[rustfmt::skip]
    let callers = [
        caller("gina (pullers), pull token", t("gina", &pull_of_puller).await, Column(PULL)),
        // A push token does not lift the group's pull-only rule.
        caller("gina (pullers), push token", t("gina", &push_of_puller).await, Column(PULL)),
        // A pull token cuts the group's push.
        caller("gus (pushers), pull token", t("gus", &pull_of_pusher).await, Column(PULL)),
        caller("gus (pushers), push token", t("gus", &push_of_pusher).await, Column(PUSH)),
    ];
    let (cells, failures) = fix.run(ROWS, &callers).await;
    report("token mode, OIDC access tokens", cells, &failures);
    // Refused at the token endpoint: an expired token, a token under another user's name,
    // a made-up one (no token, so those callers never reach the matrix).
    for (user, token) in [
        ("gail", expired.as_str()),
        ("gus", &pull_of_puller),
        ("gina", "berth_pat_made_up"),
    ] {
        let path = format!("/auth/token?service={SERVICE}&scope=repository:team/app:pull");
        let r = auth::send(
            url,
            "GET",
            &path,
            Some(&auth::basic(user, token)),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{user}");
    }
}

#[tokio::test]
async fn token_mode_requests_without_a_bearer_token_are_challenged() {
    let (fix, _) = token_fixture().await;
    #[rustfmt::skip]
    let callers = [
        caller("no credentials", None, Expect::NoToken),
        caller("Basic, wrong password", Some(auth::basic("puller", "wrong")), Expect::NoToken),
        caller("Basic, admin's password", Some(auth::basic("root", "root-pw")), Expect::NoToken),
        caller("other scheme", Some("Digest username=\"root\"".into()), Expect::NoToken),
    ];
    let (cells, failures) = fix.run(ROWS, &callers).await;
    report("token mode, no bearer token", cells, &failures);
}

/// Tokens with full access on everything, each with one defect, are refused everywhere
/// (even on `GET /v2/`) with `error="invalid_token"`.
#[tokio::test]
async fn token_mode_invalid_tokens_are_refused_everywhere() {
    let (fix, key) = token_fixture().await;
    let claims = |iss: &str, aud: &str| auth::full_claims(iss, aud, "root", REPOS);
    let good = claims(ISSUER, SERVICE);
    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        c
    };
    let (t, foreign) = (auth::now(), Key::generate());
    let puller = token(fix.url(), PULLER, ALL_SCOPES).await;
    let admin = token(fix.url(), ROOT, ALL_SCOPES).await;
    let unsigned = &admin[..=admin.rfind('.').unwrap()];
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let k = key.kid.as_str();
    #[rustfmt::skip]
    let tokens = [
        ("expired", key.sign(k, &with("exp", json!(t - 3600)))),
        ("not yet valid", key.sign(k, &with("nbf", json!(t + 3600)))),
        ("without exp", key.sign(k, &no_exp)),
        ("other audience", key.sign(k, &claims(ISSUER, "other-registry"))),
        ("audience list without us", key.sign(k, &with("aud", json!(["a", "b"])))),
        ("other issuer", key.sign(k, &claims("someone-else", SERVICE))),
        ("unknown key, its own kid", foreign.sign(&foreign.kid, &good)),
        ("unknown key, the server's kid", foreign.sign(k, &good)),
        ("puller's token, payload replaced", auth::with_payload(&puller, &good)),
        ("admin's token, payload char flipped", auth::flip_payload_char(&admin)),
        ("admin's token, signature removed", unsigned.to_owned()),
        ("alg none", auth::unsigned(k, &good)),
        ("HS256 keyed with the public key", auth::hs256(k, &key.spki_der, &good)),
        ("HS256 keyed with the public key PEM", auth::hs256(k, key.pem.as_bytes(), &good)),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    let callers: Vec<Caller> = tokens
        .into_iter()
        .map(|(name, t)| caller(name, Some(format!("Bearer {t}")), Expect::Invalid))
        .collect();
    let (cells, failures) = fix.run(ROWS, &callers).await;
    report("token mode, invalid tokens", cells, &failures);
}

/// The catalog lists exactly what the caller may pull, page by page, and its `Link`
/// headers never name a hidden repository.
#[tokio::test]
async fn token_mode_catalog_is_filtered_per_caller() {
    let (fix, key) = token_fixture().await;
    let url = fix.url();
    let forged = key.sign(
        &key.kid,
        &auth::full_claims(ISSUER, SERVICE, "puller", REPOS),
    );
    let (public, app, secret) = ("public/base", "team/app", "team/secret");
    #[rustfmt::skip]
    let cases = [
        ("anonymous token", bearer(url, None, ALL_SCOPES).await, vec![public]),
        ("puller", bearer(url, PULLER, ALL_SCOPES).await, vec![public, app]),
        ("pusher", bearer(url, PUSHER, ALL_SCOPES).await, vec![public, app]),
        ("admin", bearer(url, ROOT, ALL_SCOPES).await, vec![public, app, secret]),
        // The list follows the rules for the subject, not the token's access claim.
        ("puller's token granting everything", format!("Bearer {forged}"), vec![public, app]),
    ];
    let mut cells = 0;
    for (name, authorization, want) in cases {
        for n in ["", "?n=1", "?n=2"] {
            let (mut seen, mut next) = (Vec::new(), Some(format!("/v2/_catalog{n}")));
            while let Some(path) = next.take() {
                let r = auth::send(url, "GET", &path, Some(&authorization), None, None).await;
                assert_eq!(r.status, 200, "{name} {path}: {}", r.text());
                let page = r.json()["repositories"].as_array().unwrap().clone();
                seen.extend(page.into_iter().map(|v| v.as_str().unwrap().to_owned()));
                let link = r.header("link");
                assert!(
                    !link.contains("secret") || want.contains(&secret),
                    "{name}: {link}"
                );
                let target = link.split_once('<').and_then(|(_, l)| l.split_once('>'));
                next = target.map(|(u, _)| u.strip_prefix(url).unwrap_or(u).to_owned());
                cells += 1;
            }
            assert_eq!(seen, want, "{name} /v2/_catalog{n}");
        }
    }
    report("token mode, catalog pages", cells, &[]);
}

/// Wrong logins are refused by the token endpoint itself; right ones get tokens signed with
/// the configured key whose `access` is the request cut down by the rules.
#[tokio::test]
async fn token_endpoint_refuses_wrong_logins_and_grants_only_the_rules() {
    let (fix, key) = token_fixture().await;
    let url = fix.url();
    let scopes: String = ALL_SCOPES.iter().map(|s| format!("&scope={s}")).collect();
    let get = format!("/auth/token?service={SERVICE}{scopes}");
    let form = |user: &str, pw: &str| {
        let body = format!("grant_type=password&username={user}&password={pw}&service={SERVICE}&scope=repository:team/app:pull");
        Some(("application/x-www-form-urlencoded", body.into_bytes()))
    };
    let (basic, other) = (auth::basic, get.replace(SERVICE, "other-registry"));
    #[rustfmt::skip]
    let refused = [
        ("GET", get.as_str(), Some(basic("puller", "wrong")), None),
        ("GET", &get, Some(basic("nobody", "pull-pw")), None),
        ("GET", &get, Some(basic("root", "")), None),
        ("GET", &get, Some("Basic !!!".to_owned()), None),
        ("GET", &other, Some(basic("root", "root-pw")), None),
        ("POST", "/auth/token", None, form("puller", "wrong")),
        ("POST", "/auth/token", None, form("nobody", "x")),
    ];
    let mut failures = Vec::new();
    for (method, path, authorization, body) in &refused {
        let from = Some(auth::fresh_loopback());
        let r = auth::send(
            url,
            method,
            path,
            authorization.as_deref(),
            body.clone(),
            from,
        )
        .await;
        let challenge = Some("Basic realm=\"berth token service\"");
        if let Err(e) = auth::check(&r, method, 401, Some("UNAUTHORIZED"), challenge) {
            failures.push(format!("{method} {path} {authorization:?}: {e}"));
        }
    }
    let r = auth::send(
        url,
        "POST",
        "/auth/token",
        None,
        form("pusher", "push-pw"),
        None,
    )
    .await;
    r.assert_status(200);
    let claims = auth::jwt_part(r.json()["access_token"].as_str().unwrap(), 1);
    let repo = |name: &str, actions: &[&str]| json!({"type": "repository", "name": name, "actions": actions});
    assert_eq!(claims["access"], json!([repo("team/app", &["pull"])]));
    assert_eq!(
        [&claims["aud"], &claims["iss"], &claims["sub"]],
        [SERVICE, ISSUER, "pusher"]
    );
    let puller = token(url, PULLER, ALL_SCOPES).await;
    assert_eq!(
        auth::jwt_part(&puller, 0)["kid"],
        key.kid,
        "signed with the configured key"
    );
    let catalog = json!({"type": "registry", "name": "catalog", "actions": ["*"]});
    #[rustfmt::skip]
    let want = json!([repo("team/app", &["pull"]), repo("public/base", &["pull"]), repo("team/secret", &[]), repo("team/nothing", &[]), catalog]);
    assert_eq!(auth::jwt_part(&puller, 1)["access"], want);
    let anonymous = token(url, None, ALL_SCOPES).await;
    #[rustfmt::skip]
    let want = json!([repo("team/app", &[]), repo("public/base", &["pull"]), repo("team/secret", &[]), repo("team/nothing", &[]), catalog]);
    assert_eq!(auth::jwt_part(&anonymous, 1)["access"], want);
    assert_eq!(auth::jwt_part(&anonymous, 1)["sub"], "");
    report("token endpoint", refused.len() + 4, &failures);
}

/// `..`, dot segments and percent-encoded separators never carry a pull-only token (or a
/// push token) from team/app into team/secret: such names are refused as invalid before
/// anything is looked up. Sent raw, as no HTTP client library would send them.
#[tokio::test]
async fn token_mode_path_tricks_never_reach_the_denied_repository() {
    let (fix, _) = token_fixture().await;
    let puller = bearer(fix.url(), PULLER, ALL_SCOPES).await;
    let pusher = bearer(fix.url(), PUSHER, ALL_SCOPES).await;
    let secret_config = sha256(br#"{"architecture":"amd64","os":"linux","seed":"secret"}"#);
    let name = "NAME_INVALID";
    // (method, path, caller, status, code); GET rows are also sent as HEAD.
    #[rustfmt::skip]
    let tricks = [
        ("GET", "/v2/team/app/../secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app/%2e%2e/secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app/%2E%2E/secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app/.%2e/secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app/..%2fsecret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app%2f..%2fsecret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app%2F..%2Fsecret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team%2fsecret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app/./../secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app//../secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app/manifests/../../secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/app/manifests/v1/../../../secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/./secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2//team/secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team//secret/manifests/v1", &puller, 400, name),
        ("GET", "/v2/team/secret%00/manifests/v1", &puller, 400, name),
        ("GET", "/v2/Team/secret/manifests/v1", &puller, 400, name),
        // Not a tag at all: no manifest (the spec's conformance suite wants 404 on reads).
        ("GET", "/v2/team/secret/manifests/v1%00", &puller, 404, "MANIFEST_UNKNOWN"),
        ("GET", "/v2/team/app/../secret/tags/list", &puller, 400, name),
        ("GET", "/v2/team/app/%2e%2e/secret/tags/list", &puller, 400, name),
        ("GET", "/v2/team/app/../secret/blobs/{sl}", &puller, 400, name),
        ("GET", "/v2/team/app/%2e%2e/secret/blobs/{sl}", &puller, 400, name),
        ("PUT", "/v2/team/app/../secret/manifests/v2", &pusher, 400, name),
        ("PUT", "/v2/team/app/%2e%2e/secret/manifests/v2", &pusher, 400, name),
        ("POST", "/v2/team/app/../secret/blobs/uploads/", &pusher, 400, name),
        ("POST", "/v2/team/app%2f..%2fsecret/blobs/uploads/", &pusher, 400, name),
        // Controls: raw requests with these tokens work on team/app, and are refused on
        // team/secret by name.
        ("GET", "/v2/team/app/manifests/v1", &puller, 200, ""),
        ("GET", "/v2/team/secret/manifests/v1", &puller, 401, "UNAUTHORIZED"),
        ("PUT", "/v2/team/secret/manifests/v2", &pusher, 401, "UNAUTHORIZED"),
    ];
    let (mut cells, mut failures) = (0, Vec::new());
    for (method, path, authorization, status, code) in tricks {
        let path = path.replace("{sl}", &fix.vars["{sl}"]);
        let auth = format!("Authorization: {authorization}");
        let methods: &[&str] = if method == "GET" {
            &["GET", "HEAD"]
        } else {
            &[method]
        };
        for &m in methods {
            let (got, body) = raw_request(fix.url(), m, &path, &[&auth], &[]).await;
            let code_ok = m == "HEAD" || code.is_empty() || body.contains(&format!("\"{code}\""));
            cells += 1;
            if got != status || !code_ok || (status != 200 && body.contains(&secret_config)) {
                failures.push(format!(
                    "{m} {path}: want {status} {code}, got {got} {body}"
                ));
            }
        }
    }
    report("token mode, path tricks", cells, &failures);
}

/// registry:2's htpasswd semantics: every valid user may do everything (the admin column);
/// anything else is 401 `UNAUTHORIZED` with the Basic challenge.
#[tokio::test]
async fn htpasswd_mode_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    auth::add_user(&htpasswd, "alice", "alice-pw");
    auth::add_user(&htpasswd, "bob", "bob-pw");
    let realm = auth::REALM;
    // Wrong passwords for alice are sent in every row: lift the per-account limit, which
    // tests/adversarial.rs checks on its own.
    let extra = format!(
        "auth:\n  htpasswd: {{realm: {realm}, path: {}}}\nlimits: {{login: {{accountfailures: 100000}}}}\n",
        htpasswd.display()
    );
    let fix = Fix::start(&extra, dir, async |_: &str| {
        auth::basic("alice", "alice-pw")
    })
    .await;
    let fresh = |name, authorization: String| Caller {
        fresh_ip: true,
        ..caller(name, Some(authorization), Expect::Basic)
    };
    #[rustfmt::skip]
    let callers = [
        caller("no credentials", None, Expect::Basic),
        fresh("wrong password", auth::basic("alice", "wrong")),
        fresh("unknown user", auth::basic("mallory", "alice-pw")),
        fresh("empty password", auth::basic("alice", "")),
        fresh("bearer token", "Bearer eyJhbGciOiJub25lIn0.e30.".to_owned()),
        caller("alice", Some(auth::basic("alice", "alice-pw")), Expect::Column(ADMIN)),
        caller("bob", Some(auth::basic("bob", "bob-pw")), Expect::Column(ADMIN)),
    ];
    let (cells, failures) = fix.run(ROWS, &callers).await;
    let bob = auth::basic("bob", "bob-pw");
    let r = auth::send(fix.url(), "GET", "/v2/_catalog", Some(&bob), None, None).await;
    assert_eq!(
        r.json()["repositories"],
        json!(["public/base", "team/app", "team/secret"])
    );
    assert!(fix.dir.path().exists());
    report("htpasswd mode", cells, &failures);
}
