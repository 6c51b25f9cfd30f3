//! The authorization matrix with pull-through routing: every name a request can be routed
//! by (`?ns=`, a host prefix, the default upstream, a mount's `from`) is authorized as the
//! repository actually read, written or fetched. The upstreams are a second, open `berth
//! serve` holding `b/secret` and `library/alpine`, so an allowed cell really fetches (200)
//! and a bypass would show as content.
//!
//! Rules: puller may pull `b/*` (the plain name, which the default upstream owns, so the rule
//! covers nothing that is stored), anonymous may pull `docker.io/library/*`, admins
//! everything. The probe's bypass was puller reading `/v2/b/secret/manifests/v1?ns=evil.io`.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::auth::{
    self, bearer, caller, report, Expect, Fix, Key, Row, Want, DENIED, MU, S200, S201, S202,
    SERVICE,
};
use common::oci::{sha256, Reg};
use Want::X;

const ISSUER: &str = "berth-routing-issuer";
const PULLER: Option<(&str, &str)> = Some(("puller", "pull-pw"));
const PUSHER: Option<(&str, &str)> = Some(("pusher", "push-pw"));
const ROOT: Option<(&str, &str)> = Some(("root", "root-pw"));

/// What each token asks for: the names as clients write them and as they resolve.
const SCOPES: &[&str] = &[
    "repository:b/secret:pull,push,delete",
    "repository:evil.io/b/secret:pull,push,delete",
    "repository:docker.io/b/secret:pull,push,delete",
    "repository:alpine:pull",
    "repository:docker.io/library/alpine:pull",
    "repository:team/app:pull,push,delete",
];

/// (method, path, challenge scope naming the resolved repository, [anon, puller, pusher,
/// admin, unused]). `{ul}` is b/secret's layer at the upstream.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    //  method    path                                                   challenge scope                                                         anon  pull  push  admin unused
    Row("GET",    "/v2/b/secret/manifests/v1?ns=evil.io",                "repository:evil.io/b/secret:pull",                                    [X,    X,    X,    S200, X]),
    Row("HEAD",   "/v2/b/secret/manifests/v1?ns=evil.io",                "repository:evil.io/b/secret:pull",                                    [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/b/secret/tags/list?ns=evil.io",                   "repository:evil.io/b/secret:pull",                                    [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/b/secret/blobs/{ul}?ns=evil.io",                  "repository:evil.io/b/secret:pull",                                    [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/b/secret/referrers/{um}?ns=evil.io",              "repository:evil.io/b/secret:pull",                                    [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/evil.io/b/secret/manifests/v1",                   "repository:evil.io/b/secret:pull",                                    [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/evil.io/b/secret/blobs/{ul}",                     "repository:evil.io/b/secret:pull",                                    [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/b/secret/manifests/v1",                           "repository:docker.io/b/secret:pull",                                  [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/docker.io/b/secret/manifests/v1",                 "repository:docker.io/b/secret:pull",                                  [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/b/secret/manifests/v1?ns=docker.io",              "repository:docker.io/b/secret:pull",                                  [X,    X,    X,    S200, X]),
    Row("GET",    "/v2/alpine/manifests/v1",                             "repository:docker.io/library/alpine:pull",                            [S200, S200, S200, S200, X]),
    Row("GET",    "/v2/library/alpine/manifests/v1?ns=docker.io",        "repository:docker.io/library/alpine:pull",                            [S200, S200, S200, S200, X]),
    Row("GET",    "/v2/alpine/manifests/nope",                           "repository:docker.io/library/alpine:pull",                            [MU,   MU,   MU,   MU,   X]),
    // Writes into an upstream's namespace are refused whoever asks, after authorization
    // on the resolved name.
    Row("PUT",    "/v2/b/secret/manifests/v2?ns=evil.io",                "repository:evil.io/b/secret:pull,push",                               [X,    X,    X,    DENIED, X]),
    Row("DELETE", "/v2/b/secret/manifests/{nm}?ns=evil.io",              "repository:evil.io/b/secret:delete",                                  [X,    X,    X,    DENIED, X]),
    Row("POST",   "/v2/b/secret/blobs/uploads/?ns=evil.io",              "repository:evil.io/b/secret:pull,push",                               [X,    X,    X,    DENIED, X]),
    Row("DELETE", "/v2/b/secret/blobs/{ul}",                             "repository:docker.io/b/secret:delete",                                [X,    X,    X,    DENIED, X]),
    // A mount's source is resolved like a pull of it, and needs pull there.
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={l}&from=alpine",   "repository:team/app:pull,push repository:docker.io/library/alpine:pull", [X, X,   S202, S202, X]),
    // The admin's earlier pulls fetched b/secret's layer through evil.io only: docker.io/b/secret
    // names it in its cached manifest, which does not link it (naming is no proof).
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={ul}&from=b/secret", "repository:team/app:pull,push repository:docker.io/b/secret:pull",    [X,    X,    X,    S202, X]),
    Row("POST",   "/v2/team/app/blobs/uploads/?mount={ul}&from=evil.io/b/secret", "repository:team/app:pull,push repository:evil.io/b/secret:pull", [X, X, X, S201, X]),
    // Private names are what they say.
    Row("GET",    "/v2/team/app/manifests/v1",                           "repository:team/app:pull",                                            [X,    X,    S200, S200, X]),
];

/// The upstream: an open registry holding `b/secret:v1` and `library/alpine:v1`. Returns it
/// with b/secret's manifest and layer digests.
async fn upstream() -> (Reg, String, String) {
    let up = Reg::start("");
    up.push_image("library/alpine", "v1", "alpine").await;
    let (_, manifest) = up.push_image("b/secret", "v1", "upstream secret").await;
    up.push_image("b/secret", "v2", "a second tag").await;
    (up, manifest, sha256(b"layer of upstream secret"))
}

async fn fixture(upstream_url: &str, key: &Key) -> Fix {
    let dir = tempfile::tempdir().unwrap();
    let (htpasswd, keyfile) = (dir.path().join("htpasswd"), dir.path().join("signing.pem"));
    key.write(&keyfile);
    for (user, password) in [PULLER, PUSHER, ROOT].map(Option::unwrap) {
        auth::add_user(&htpasswd, user, password);
    }
    let mut extra = auth::builtin_token_auth(
        ISSUER,
        &htpasswd,
        &keyfile,
        "admins: [root]
rules:
  - {repositories: [team/app], users: [pusher], actions: [pull, push]}
  - {repositories: [\"b/*\"], users: [puller], actions: [pull, push, delete]}
  - {repositories: [\"docker.io/library/*\"], users: [anonymous], actions: [pull]}",
    );
    extra.push_str(&format!(
        "proxy:
  upstreams:
    - {{host: evil.io, url: \"{upstream_url}\"}}
    - {{host: docker.io, url: \"{upstream_url}\"}}
  default: docker.io
  private: [team, public]
"
    ));
    // The fixture images Fix pushes (as root) live in these private repositories.
    let owner = [
        "repository:team/app:pull,push",
        "repository:public/base:pull,push",
        "repository:team/secret:pull,push",
    ];
    Fix::start(&extra, dir, async |url: &str| {
        bearer(url, ROOT, &owner).await
    })
    .await
}

#[tokio::test]
async fn routed_names_are_authorized_as_the_repository_actually_read() {
    let (up, manifest, layer) = upstream().await;
    let key = Key::generate();
    let mut fix = fixture(&up.server.url, &key).await;
    // The probe's token: puller holding pull on the plain name b/secret (what the token
    // server granted before names were resolved). It must open nothing stored elsewhere.
    let plain = key.sign(
        &key.kid,
        &auth::full_claims(
            ISSUER,
            SERVICE,
            "puller",
            &["b/secret", "docker.io/library/alpine"],
        ),
    );
    fix.vars.insert("{ul}", layer);
    fix.vars.insert("{um}", manifest);
    let url = fix.url().to_owned();
    use Expect::Column;
    #[rustfmt::skip]
    let callers = [
        caller("anonymous token", Some(bearer(&url, None, SCOPES).await), Column(0)),
        caller("puller", Some(bearer(&url, PULLER, SCOPES).await), Column(1)),
        caller("pusher", Some(bearer(&url, PUSHER, SCOPES).await), Column(2)),
        caller("admin", Some(bearer(&url, ROOT, SCOPES).await), Column(3)),
        caller("puller with a token for plain b/secret", Some(format!("Bearer {plain}")), Column(1)),
    ];
    let (cells, failures) = fix.run(ROWS, &callers).await;
    let (more, no_token) = fix
        .run(ROWS, &[caller("no credentials", None, Expect::NoToken)])
        .await;
    let failures: Vec<String> = failures.into_iter().chain(no_token).collect();
    report("routing matrix (token mode)", cells + more, &failures);
}

/// Docker asks the token server for the name it pulls (`repository:alpine:pull`), not for
/// the challenge's: the built-in token server grants the resolved name, with the rules of
/// that name, so Docker pulls through a default upstream work and grant nothing more.
#[tokio::test]
async fn tokens_for_plain_names_grant_the_resolved_repository() {
    let (up, _, _) = upstream().await;
    let fix = fixture(&up.server.url, &Key::generate()).await;
    let url = fix.url();
    let anonymous = bearer(url, None, &["repository:alpine:pull"]).await;
    let r = auth::send(
        url,
        "GET",
        "/v2/alpine/manifests/v1",
        Some(&anonymous),
        None,
        None,
    )
    .await;
    r.assert_status(200);
    let claims = auth::jwt_part(anonymous.trim_start_matches("Bearer "), 1);
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "docker.io/library/alpine", "actions": ["pull"]}])
    );
    // puller's `b/*` rule names the plain name; what is read is docker.io/b/secret.
    let puller = bearer(url, PULLER, &["repository:b/secret:pull"]).await;
    let r = auth::send(
        url,
        "GET",
        "/v2/b/secret/manifests/v1",
        Some(&puller),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // A tags page through ?ns= links to the next page through the same ?ns=, so the client
    // stays on the same repository.
    let admin = bearer(url, ROOT, SCOPES).await;
    let path = "/v2/b/secret/tags/list?n=1&ns=evil.io";
    let r = auth::send(url, "GET", path, Some(&admin), None, None).await;
    r.assert_status(200);
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));
    assert!(
        r.header("link").contains("last=v1&ns=evil.io"),
        "{}",
        r.header("link")
    );
    // An unconfigured ?ns= is a clear 404 naming it, never the default upstream's content;
    // but only to a caller who may read what the path reads without it
    // (docker.io/library/alpine): others are challenged for that and learn nothing.
    let path = "/v2/team/app/manifests/v1?ns=quay.io";
    let r = auth::send(url, "GET", path, None, None, None).await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .contains("repository:team/app:pull"));
    let path = "/v2/library/alpine/manifests/v1?ns=quay.io";
    let r = auth::send(url, "GET", path, Some(&anonymous), None, None).await;
    r.assert_error(404, "NAME_UNKNOWN");
    assert!(r.text().contains("quay.io"), "{}", r.text());
}
