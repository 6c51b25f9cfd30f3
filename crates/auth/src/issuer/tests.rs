use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::*;
use crate::token::testkit::{ISSUER, SERVICE};
use crate::token::unix_now;
use crate::{AccessController, Action, Grant};

mod login;

const CI_SECRET: &str = "ci-secret-0123456789";

/// An issuer with users alice and bob (htpasswd), service account ci, and rules.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = [
            crate::htpasswd::entry("alice", "alice-pw", 4).expect("entry"),
            crate::htpasswd::entry("bob", "bob-pw", 4).expect("entry"),
            crate::htpasswd::entry("ci", "htpasswd-ci-pw", 4).expect("entry"),
            crate::htpasswd::entry("root", "root-pw", 4).expect("entry"),
        ];
        std::fs::write(dir.path().join("htpasswd"), htpasswd.join("\n")).expect("write");
        std::fs::write(dir.path().join("ci.token"), format!("  {CI_SECRET}\n")).expect("write");
        Fixture { dir }
    }

    fn yaml(&self) -> String {
        let d = self.dir.path().display();
        format!(
            r#"
htpasswd: {d}/htpasswd
signingkey: {d}/signing.pem
ttl: 10m
serviceaccounts:
  - name: ci
    tokenfile: {d}/ci.token
rules:
  - repositories: ["team-a/*"]
    users: [alice, ci]
    actions: [pull, push]
  - repositories: ["team-a/**"]
    users: [bob]
    actions: [delete]
  - repositories: ["public/**"]
    users: [anonymous]
    actions: [pull]
admins: [root]
"#
        )
    }

    fn config(&self) -> BuiltinConfig {
        serde_yaml::from_str(&self.yaml()).expect("config")
    }

    fn issuer(&self) -> TokenIssuer {
        TokenIssuer::new(self.config(), SERVICE, ISSUER).expect("issuer")
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn controller(issuer: &TokenIssuer) -> TokenController {
    issuer
        .controller(TokenOptions {
            realm: "https://reg.test/auth/token".into(),
            ..TokenOptions::default()
        })
        .expect("controller")
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn request<'a>(authorization: Option<&'a str>, ip: &str) -> AuthRequest<'a> {
    AuthRequest {
        authorization,
        client: Some(ip.parse().expect("ip")),
        origin: None,
    }
}

/// GET with Basic credentials (or none) and the given scopes.
async fn get(
    issuer: &TokenIssuer,
    login: Option<(&str, &str)>,
    scopes: &[&str],
) -> Result<TokenResponse, Denied> {
    let header = login.map(|(u, p)| basic(u, p));
    let mut query = params(&[("service", SERVICE), ("account", "ignored")]);
    query.extend(scopes.iter().map(|s| ("scope".to_owned(), (*s).to_owned())));
    issuer
        .issue(&request(header.as_deref(), "10.0.0.1"), &query)
        .await
}

fn granted(issuer: &TokenIssuer, response: &TokenResponse) -> Vec<Access> {
    controller(issuer)
        .verify(&response.token, unix_now())
        .expect("valid token")
        .granted()
}

async fn use_token(c: &TokenController, token: &str, needed: &[Access]) -> Result<Grant, Denied> {
    let header = format!("Bearer {token}");
    let request = AuthRequest {
        authorization: Some(&header),
        ..AuthRequest::default()
    };
    c.authorize(&request, needed).await
}

#[test]
fn config_shape() {
    let f = Fixture::new();
    let config = f.config();
    assert_eq!(config.ttl, Duration::from_secs(600));
    assert_eq!(config.serviceaccounts[0].name, "ci");
    assert_eq!(config.rules.len(), 3);
    assert_eq!(config.admins, vec!["root".to_owned()]);
    let minimal: BuiltinConfig = serde_yaml::from_str("signingkey: /k.pem").expect("minimal");
    assert_eq!(minimal.ttl, DEFAULT_TTL);
    assert_eq!(minimal.htpasswd, None);
    let seconds: BuiltinConfig = serde_yaml::from_str("signingkey: k\nttl: 90").expect("seconds");
    assert_eq!(seconds.ttl, Duration::from_secs(90));
    for bad in [
        "signingkey: k\nsigningKey: k",
        "signingkey: k\nttl: soon",
        "htpasswd: h",
        "signingkey: k\nserviceaccounts: [{name: a}]",
        "signingkey: k\nrules: [{repositories: [a], users: [b], actions: [fly]}]",
    ] {
        assert!(serde_yaml::from_str::<BuiltinConfig>(bad).is_err(), "{bad}");
    }
}

#[test]
fn startup_errors() {
    let f = Fixture::new();
    let mut short = f.config();
    short.ttl = Duration::from_secs(30);
    assert!(matches!(
        TokenIssuer::new(short, SERVICE, ISSUER),
        Err(IssuerError::Config(_))
    ));
    assert!(TokenIssuer::new(f.config(), "", ISSUER).is_err());
    let mut missing = f.config();
    missing.serviceaccounts[0].tokenfile = f.path("nope");
    assert!(matches!(
        TokenIssuer::new(missing, SERVICE, ISSUER),
        Err(IssuerError::ServiceAccount { .. })
    ));
    std::fs::write(f.path("weak.token"), "short\n").expect("write");
    let mut weak = f.config();
    weak.serviceaccounts[0].tokenfile = f.path("weak.token");
    assert!(TokenIssuer::new(weak, SERVICE, ISSUER).is_err());
    let mut no_htpasswd = f.config();
    no_htpasswd.htpasswd = Some(f.path("missing-htpasswd"));
    assert!(matches!(
        TokenIssuer::new(no_htpasswd, SERVICE, ISSUER),
        Err(IssuerError::Htpasswd(_))
    ));
}

#[tokio::test]
async fn issued_tokens_work_for_each_action() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let c = controller(&issuer);
    let cases = [
        ("alice", "alice-pw", Action::Pull),
        ("alice", "alice-pw", Action::Push),
        ("bob", "bob-pw", Action::Delete),
    ];
    for (user, password, action) in cases {
        let scope = format!("repository:team-a/app:{}", action.as_str());
        let response = get(&issuer, Some((user, password)), &[&scope])
            .await
            .expect("token");
        let needed = [Access::repository("team-a/app", &[action])];
        let grant = use_token(&c, &response.token, &needed)
            .await
            .expect("authorized");
        assert_eq!(grant.subject.as_deref(), Some(user));
        // Not valid for another repository.
        let elsewhere = [Access::repository("team-b/app", &[action])];
        match use_token(&c, &response.token, &elsewhere).await {
            Err(Denied::Unauthorized { challenge, .. }) => {
                assert!(
                    challenge.ends_with(r#"error="insufficient_scope""#),
                    "{challenge}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn requested_access_is_cut_down_by_the_rules() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let response = get(
        &issuer,
        Some(("alice", "alice-pw")),
        &[
            "repository:team-a/app:pull,push,delete",
            "repository:team-b/app:pull",
        ],
    )
    .await
    .expect("still 200");
    assert_eq!(
        granted(&issuer, &response),
        vec![
            Access::repository("team-a/app", &[Action::Pull, Action::Push]),
            Access::repository("team-b/app", &[]),
        ]
    );
    // `*` only for those who hold it; the catalog for every logged-in user.
    let scopes = ["repository:x:*", "registry:catalog:*"];
    let response = get(&issuer, Some(("ci", CI_SECRET)), &scopes)
        .await
        .expect("token");
    assert_eq!(
        granted(&issuer, &response),
        vec![Access::repository("x", &[]), Access::catalog()]
    );
    // Admins get what they ask for.
    let response = get(&issuer, Some(("root", "root-pw")), &scopes)
        .await
        .expect("token");
    assert_eq!(
        granted(&issuer, &response),
        vec![Access::repository("x", &[Action::All]), Access::catalog()]
    );
}

#[tokio::test]
async fn get_with_repeated_and_space_separated_scopes() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let response = get(
        &issuer,
        Some(("alice", "alice-pw")),
        &[
            "repository:team-a/one:pull repository:team-a/two:push",
            "repository:team-a/one:push",
            "bogus  repository::pull",
            "repository:public/lib:pull",
        ],
    )
    .await
    .expect("token");
    assert_eq!(
        granted(&issuer, &response),
        vec![
            Access::repository("team-a/one", &[Action::Pull, Action::Push]),
            Access::repository("team-a/two", &[Action::Push]),
            Access::repository("public/lib", &[Action::Pull]),
        ]
    );
    // No scope at all: a token for GET /v2/ with empty access.
    let response = get(&issuer, Some(("alice", "alice-pw")), &[])
        .await
        .expect("token");
    assert_eq!(granted(&issuer, &response), vec![]);
    let grant = use_token(&controller(&issuer), &response.token, &[])
        .await
        .expect("login");
    assert_eq!(grant.subject.as_deref(), Some("alice"));
}

#[tokio::test]
async fn anonymous_gets_only_anonymous_access() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let scopes = [
        "repository:public/lib:pull,push",
        "repository:team-a/app:pull",
        "registry:catalog:*",
    ];
    let response = get(&issuer, None, &scopes).await.expect("token");
    assert_eq!(
        granted(&issuer, &response),
        vec![
            Access::repository("public/lib", &[Action::Pull]),
            Access::repository("team-a/app", &[]),
            // Anonymous may pull something, so it may list (filtered) the catalog.
            Access::catalog(),
        ]
    );
    let c = controller(&issuer);
    let grant = use_token(
        &c,
        &response.token,
        &[Access::repository("public/lib", &[Action::Pull])],
    )
    .await
    .expect("anonymous pull");
    assert_eq!(grant.subject, None);
    assert!(c.may_list(&grant, "public/lib"));
    assert!(!c.may_list(&grant, "team-a/app"));
    // Another scheme on the token endpoint counts as no credentials; so does ":".
    for header in ["Bearer abc", &basic("", "")] {
        let r = issuer
            .issue(&request(Some(header), "10.0.0.9"), &[])
            .await
            .expect("anonymous");
        let claims = c.verify(&r.token, unix_now()).expect("valid");
        assert_eq!(claims.sub, "");
    }
    // A malformed Basic header is not.
    assert!(issuer
        .issue(&request(Some("Basic !!!"), "10.0.0.9"), &[])
        .await
        .is_err());
}

#[tokio::test]
async fn service_parameter_must_match() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let other = params(&[
        ("service", "other.registry"),
        ("scope", "repository:public/x:pull"),
    ]);
    assert!(matches!(
        issuer.issue(&request(None, "10.2.0.1"), &other).await,
        Err(Denied::Unauthorized { .. })
    ));
    let none = params(&[("scope", "repository:public/x:pull")]);
    assert!(issuer
        .issue(&request(None, "10.2.0.1"), &none)
        .await
        .is_ok());
}

#[tokio::test]
async fn response_and_token_shape() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let before = unix_now();
    let response = get(
        &issuer,
        Some(("alice", "alice-pw")),
        &["repository:team-a/app:pull"],
    )
    .await
    .expect("token");
    let json = serde_json::to_value(&response).expect("json");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["access_token", "expires_in", "issued_at", "token"]);
    assert_eq!(json["token"], json["access_token"]);
    assert_eq!(json["expires_in"], 600);
    let issued = humantime::parse_rfc3339(&response.issued_at).expect("rfc3339");
    assert!(issued.duration_since(UNIX_EPOCH).expect("epoch").as_secs() as i64 >= before);
    assert!(!format!("{response:?}").contains(&response.token));

    let header = jsonwebtoken::decode_header(&response.token).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(issuer.key_id()));
    assert_eq!(issuer.key_id().split(':').count(), 12);
    let payload = response.token.split('.').nth(1).expect("payload");
    let raw: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    assert_eq!(raw["iss"], ISSUER);
    assert_eq!(raw["sub"], "alice");
    // A single string, as registry:2 v2.x requires.
    assert_eq!(raw["aud"], SERVICE);
    let (iat, nbf, exp) = (
        raw["iat"].as_i64(),
        raw["nbf"].as_i64(),
        raw["exp"].as_i64(),
    );
    assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(600));
    assert_eq!(nbf, iat);
    assert_eq!(
        raw["access"],
        json!([{"type": "repository", "name": "team-a/app", "actions": ["pull"]}])
    );
    let again = get(&issuer, Some(("alice", "alice-pw")), &[])
        .await
        .expect("token");
    let jti = |t: &str| {
        let p = t.split('.').nth(1).expect("payload");
        let v: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("b64")).expect("json");
        v["jti"].as_str().expect("jti").to_owned()
    };
    assert_ne!(jti(&response.token), jti(&again.token));
}

#[tokio::test]
async fn nodes_sharing_a_key_trust_each_other_and_jwks_exports_it() {
    let f = Fixture::new();
    let node_a = f.issuer();
    let node_b = f.issuer();
    let response = get(
        &node_a,
        Some(("alice", "alice-pw")),
        &["repository:team-a/x:pull"],
    )
    .await
    .expect("token");
    assert!(controller(&node_b)
        .verify(&response.token, unix_now())
        .is_ok());
    // A registry elsewhere configured with the exported JWK Set.
    let path = f.path("berth.jwks");
    std::fs::write(&path, node_a.jwks().to_string()).expect("write");
    let external = TokenController::new(TokenOptions {
        realm: "r".into(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        jwks: Some(path),
        ..TokenOptions::default()
    })
    .expect("controller");
    assert!(external.verify(&response.token, unix_now()).is_ok());
    // Another key file: not trusted.
    let mut config = f.config();
    config.signingkey = f.path("other.pem");
    let stranger = TokenIssuer::new(config, SERVICE, ISSUER).expect("issuer");
    assert!(controller(&stranger)
        .verify(&response.token, unix_now())
        .is_err());
}

#[test]
fn controller_options_must_agree() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let mismatched = TokenOptions {
        service: "other".into(),
        ..TokenOptions::default()
    };
    assert!(matches!(
        issuer.controller(mismatched),
        Err(TokenError::Options(_))
    ));
    let explicit = TokenOptions {
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        ..TokenOptions::default()
    };
    let c = issuer.controller(explicit).expect("controller");
    assert_eq!(c.options().issuer, ISSUER);
}

#[test]
fn params_parsing() {
    let p = params(&[
        ("service", "a"),
        ("service", "b"),
        ("scope", "repository:x:pull\trepository:y:push"),
        ("scope", ""),
        ("scope", "registry:catalog:*"),
        ("unknown", "z"),
    ]);
    let parsed = TokenParams::parse(&p);
    assert_eq!(parsed.service, Some("a"));
    assert_eq!(parsed.grant_type, None);
    assert_eq!(
        parsed.scopes,
        vec![
            Access::repository("x", &[Action::Pull]),
            Access::repository("y", &[Action::Push]),
            Access::catalog(),
        ]
    );
}

proptest::proptest! {
    #[test]
    fn params_parsing_never_panics(pairs in proptest::collection::vec(
        ("(scope|service|grant_type|username|password|[a-z]{1,8})", ".{0,80}"), 0..8)) {
        let p: Vec<(String, String)> = pairs;
        let parsed = TokenParams::parse(&p);
        proptest::prop_assert!(parsed.scopes.len() <= p.iter().map(|(_, v)| v.len()).sum::<usize>());
    }
}

#[tokio::test]
async fn issue_futures_are_send() {
    // The HTTP server needs `Send` futures.
    fn send<T: Send>(t: T) -> T {
        t
    }
    let f = Fixture::new();
    let issuer = f.issuer();
    assert!(send(issuer.issue(&AuthRequest::default(), &[]))
        .await
        .is_ok());
}

/// Tokens kept in memory: (user, secret) → grant. The real store (registry storage, hashed)
/// is crates/ui's, tested against the binary in crates/berth/tests/ui_oidc.rs.
struct Tokens(Vec<(String, String, crate::personal::PersonalGrant)>);

#[async_trait::async_trait]
impl PersonalTokens for Tokens {
    async fn check(&self, user: &str, secret: &str) -> Option<crate::personal::PersonalGrant> {
        self.0
            .iter()
            .find(|(u, s, _)| u == user && s == secret)
            .map(|(_, _, g)| g.clone())
    }
}

#[tokio::test]
async fn personal_access_tokens_grant_by_groups_cut_to_their_scope() {
    let f = Fixture::new();
    let yaml = format!(
        "{}\n  - repositories: [\"team-g/**\"]\n    groups: [team-g]\n    actions: [\"*\"]\n",
        f.yaml().replace("admins: [root]\n", "")
    ) + "admins: [root]\n";
    let issuer = TokenIssuer::new(
        serde_yaml::from_str(&yaml).expect("config"),
        SERVICE,
        ISSUER,
    )
    .expect("issuer");
    let grant = |actions: &[Action]| crate::personal::PersonalGrant {
        groups: vec!["team-g".into()],
        actions: actions.to_vec(),
    };
    let pull = "berth_pat_pull-0123456789";
    let push = "berth_pat_push-0123456789";
    issuer.use_personal_tokens(Arc::new(Tokens(vec![
        ("gina".into(), pull.into(), grant(&[Action::Pull])),
        (
            "gina".into(),
            push.into(),
            grant(&[Action::Pull, Action::Push]),
        ),
    ])));
    let scopes = [
        "repository:team-g/app:pull,push,delete",
        "repository:team-a/app:pull",
    ];
    let response = get(&issuer, Some(("gina", pull)), &scopes)
        .await
        .expect("token");
    assert_eq!(
        granted(&issuer, &response),
        vec![
            Access::repository("team-g/app", &[Action::Pull]),
            Access::repository("team-a/app", &[]),
        ]
    );
    let response = get(&issuer, Some(("gina", push)), &scopes)
        .await
        .expect("token");
    assert_eq!(
        granted(&issuer, &response),
        vec![
            Access::repository("team-g/app", &[Action::Pull, Action::Push]),
            Access::repository("team-a/app", &[]),
        ]
    );
    // Another user's token, an unknown one: refused, not anonymous.
    for (user, secret) in [("alice", pull), ("gina", "berth_pat_unknown-000000")] {
        assert!(matches!(
            get(&issuer, Some((user, secret)), &scopes).await,
            Err(Denied::Unauthorized { .. })
        ));
    }
    // Passwords still work beside tokens.
    get(&issuer, Some(("alice", "alice-pw")), &scopes)
        .await
        .expect("password");
}
