use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;

use super::testkit::{
    authorize, challenge, claims, controller, options, pull, raw_token, Signer, ISSUER, SERVICE,
};
use super::*;
use crate::{Action, Grant};

const REALM: &str = "https://auth.test/token";

fn invalid(scope: &str) -> String {
    format!(r#"Bearer realm="{REALM}",service="{SERVICE}",scope="{scope}",error="invalid_token""#)
}

/// The P-256 SPKI DER for JWK coordinates.
fn p256_spki(x: &str, y: &str) -> Vec<u8> {
    let mut sec1 = vec![4u8];
    sec1.extend(URL_SAFE_NO_PAD.decode(x).expect("x"));
    sec1.extend(URL_SAFE_NO_PAD.decode(y).expect("y"));
    let key = p256::PublicKey::from_sec1_bytes(&sec1).expect("point");
    key.to_public_key_der().expect("der").into_vec()
}

#[test]
fn libtrust_key_id_matches_distribution_vector() {
    // The key and kid of the signed manifest example in distribution's
    // docs/spec/manifest-v2-1.md (signed by libtrust, which wrote the kid).
    let spki = p256_spki(
        "3gAwX48IQ5oaYQAYSxor6rYYc_6yjuLCjtQ9LUakg4A",
        "t72ge6kIA1XOjqjVoEOiPPAURltJFBMGDSQvEGVB010",
    );
    assert_eq!(
        libtrust_key_id(&spki),
        "OD6I:6DRK:JXEJ:KBM4:255X:NSAA:MUSF:E4VM:ZI6W:CUN2:L4Z6:LSF4"
    );
    let kid = libtrust_key_id(b"anything");
    assert_eq!(kid.len(), 12 * 4 + 11);
    assert_eq!(kid.split(':').count(), 12);
}

#[tokio::test]
async fn round_trip_for_every_algorithm_and_action() {
    let signers = [
        Signer::es256(),
        Signer::es384(),
        Signer::ed25519(),
        Signer::rsa(Algorithm::RS256),
        Signer::rsa(Algorithm::RS384),
        Signer::rsa(Algorithm::RS512),
        Signer::rsa(Algorithm::PS256),
    ];
    for signer in &signers {
        let c = controller(vec![signer.trusted()]);
        for action in [Action::Pull, Action::Push, Action::Delete] {
            let needed = [Access::repository("team/app", &[action])];
            let grant = authorize(&c, &signer.token(&needed), &needed)
                .await
                .unwrap_or_else(|e| panic!("{:?} {action:?}: {e:?}", signer.alg));
            assert_eq!(grant.subject.as_deref(), Some("alice"));
            // The same token does not grant the other actions.
            for other in [Action::Pull, Action::Push, Action::Delete] {
                let other_needed = [Access::repository("team/app", &[other])];
                let result = authorize(&c, &signer.token(&needed), &other_needed).await;
                assert_eq!(
                    result.is_ok(),
                    other == action,
                    "{:?} {other:?}",
                    signer.alg
                );
            }
        }
        let catalog = [Access::catalog()];
        assert!(authorize(&c, &signer.token(&catalog), &catalog)
            .await
            .is_ok());
    }
}

#[tokio::test]
async fn challenges_are_registry2s() {
    let signer = Signer::es256();
    let c = controller(vec![signer.trusted()]);
    let none = AuthRequest::default();
    let needed = [
        Access::repository("a/b", &[Action::Push]),
        Access::repository("a/b", &[Action::Pull]),
        pull("base"),
    ];
    assert_eq!(
        challenge(c.authorize(&none, &needed).await),
        r#"Bearer realm="https://auth.test/token",service="registry.test",scope="repository:a/b:pull,push repository:base:pull""#
    );
    // GET /v2/: no scope at all.
    assert_eq!(
        challenge(c.authorize(&none, &[]).await),
        r#"Bearer realm="https://auth.test/token",service="registry.test""#
    );
    // Basic credentials or an empty bearer are no token: no error attribute.
    for header in ["Basic YTpi", "Bearer ", "Bearer", "Bearer a b"] {
        let request = AuthRequest {
            authorization: Some(header),
            ..AuthRequest::default()
        };
        let got = challenge(c.authorize(&request, &[pull("x")]).await);
        assert!(!got.contains("error="), "{header}: {got}");
    }
    // A valid token without the scope: insufficient_scope, still 401.
    let token = signer.token(&[pull("other")]);
    assert_eq!(
        challenge(authorize(&c, &token, &[pull("x")]).await),
        r#"Bearer realm="https://auth.test/token",service="registry.test",scope="repository:x:pull",error="insufficient_scope""#
    );
    // The scheme is case-insensitive.
    let request = AuthRequest {
        authorization: Some(&format!("bearer {}", signer.token(&[pull("x")]))),
        ..AuthRequest::default()
    };
    assert!(c.authorize(&request, &[pull("x")]).await.is_ok());
}

#[tokio::test]
async fn autoredirect_builds_the_realm_from_the_request() {
    let signer = Signer::es256();
    let mut opts = options();
    opts.autoredirect = true;
    let c = TokenController::with_keys(opts.clone(), vec![signer.trusted()]).expect("controller");
    let request = AuthRequest {
        origin: Some("https://reg.lan:5000"),
        ..AuthRequest::default()
    };
    assert_eq!(
        challenge(c.authorize(&request, &[]).await),
        r#"Bearer realm="https://reg.lan:5000/auth/token",service="registry.test""#
    );
    // Without an origin, the configured realm.
    assert!(challenge(c.authorize(&AuthRequest::default(), &[]).await).contains(REALM));
    opts.autoredirectpath = Some("/token".into());
    let c = TokenController::with_keys(opts, vec![signer.trusted()]).expect("controller");
    assert!(challenge(c.authorize(&request, &[]).await)
        .starts_with(r#"Bearer realm="https://reg.lan:5000/token""#));
}

#[tokio::test]
async fn tampered_tokens_are_invalid() {
    let signer = Signer::es256();
    let c = controller(vec![signer.trusted()]);
    let token = signer.token(&[pull("x")]);
    assert!(authorize(&c, &token, &[pull("x")]).await.is_ok());
    let (message, signature) = token.rsplit_once('.').expect("jwt");
    // A flipped signature byte.
    let mut sig = URL_SAFE_NO_PAD.decode(signature).expect("sig");
    sig[10] ^= 1;
    let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        challenge(authorize(&c, &forged, &[pull("x")]).await),
        invalid("repository:x:pull")
    );
    // Claims swapped for more access, signature kept.
    let (header, _) = message.split_once('.').expect("jwt");
    let more = URL_SAFE_NO_PAD.encode(claims(&[pull("secret")]).to_string());
    let forged = format!("{header}.{more}.{signature}");
    assert!(challenge(authorize(&c, &forged, &[pull("secret")]).await).contains("invalid_token"));
    // Garbage of every kind.
    for junk in [
        "x",
        "a.b.c",
        "....",
        &"a".repeat(70_000),
        &format!("{token}.x"),
    ] {
        assert!(c.verify(junk, unix_now()).is_err(), "{junk:.20}");
    }
}

/// An edit of a token's claims.
type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);

#[tokio::test]
async fn time_issuer_and_audience_are_checked() {
    let signer = Signer::es256();
    let c = controller(vec![signer.trusted()]);
    let needed = [pull("x")];
    let now = unix_now();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut cl = claims(&needed);
        edit(&mut cl);
        signer.sign(&signer.header(), &cl)
    };
    let cases: [(&str, Edit<'_>, bool); 9] = [
        ("expired", &|c| c["exp"] = json!(now - 120), false),
        (
            "expired within leeway",
            &|c| c["exp"] = json!(now - 30),
            true,
        ),
        (
            "no exp",
            &|c| drop(c.as_object_mut().map(|o| o.remove("exp"))),
            false,
        ),
        ("not yet valid", &|c| c["nbf"] = json!(now + 120), false),
        ("nbf within leeway", &|c| c["nbf"] = json!(now + 30), true),
        ("wrong issuer", &|c| c["iss"] = json!("evil"), false),
        (
            "wrong audience",
            &|c| c["aud"] = json!("other.registry"),
            false,
        ),
        ("audience list", &|c| c["aud"] = json!(["x", SERVICE]), true),
        ("string exp", &|c| c["exp"] = json!("9999999999"), false),
    ];
    for (name, edit, ok) in cases {
        let result = authorize(&c, &with(edit), &needed).await;
        assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
        if !ok {
            assert!(
                challenge(result).ends_with(r#"error="invalid_token""#),
                "{name}"
            );
        }
    }
    // An empty subject is anonymous.
    let anon = with(&|c| c["sub"] = json!(""));
    let grant = authorize(&c, &anon, &needed)
        .await
        .expect("anonymous token");
    assert_eq!(grant.subject, None);
}

#[tokio::test]
async fn scope_must_cover_every_needed_access() {
    let signer = Signer::es256();
    let c = controller(vec![signer.trusted()]);
    let token = signer.token(&[
        Access::repository("a", &[Action::Pull]),
        Access::repository("b", &[Action::All]),
    ]);
    assert!(authorize(&c, &token, &[pull("a")]).await.is_ok());
    let push_a = [Access::repository("a", &[Action::Pull, Action::Push])];
    assert!(challenge(authorize(&c, &token, &push_a).await).contains("insufficient_scope"));
    assert!(authorize(&c, &token, &[pull("a2")]).await.is_err());
    assert!(authorize(&c, &token, &[pull("a/b")]).await.is_err());
    assert!(authorize(&c, &token, &[Access::catalog()]).await.is_err());
    // `*` covers everything on that repository; both resources at once.
    let delete_b = Access::repository("b", &[Action::Delete, Action::Push]);
    assert!(authorize(&c, &token, &[pull("a"), delete_b.clone()])
        .await
        .is_ok());
    // One missing entry spoils the whole request.
    assert!(authorize(&c, &token, &[delete_b, pull("c")]).await.is_err());
    // No needed access (GET /v2/): any valid token.
    assert!(authorize(&c, &signer.token(&[]), &[]).await.is_ok());
}

#[tokio::test]
async fn unknown_keys_none_and_hmac_are_refused() {
    let trusted = Signer::es256();
    let stranger = Signer::es256();
    let c = controller(vec![trusted.trusted()]);
    let needed = [pull("x")];
    // Another key under its own kid, and under the trusted key's kid.
    assert!(authorize(&c, &stranger.token(&needed), &needed)
        .await
        .is_err());
    let spoofed = stranger.sign(&trusted.header(), &claims(&needed));
    assert!(authorize(&c, &spoofed, &needed).await.is_err());
    // No kid at all.
    let bare = trusted.sign(
        &jsonwebtoken::Header::new(Algorithm::ES256),
        &claims(&needed),
    );
    assert!(authorize(&c, &bare, &needed).await.is_err());
    // alg none, with and without a signature.
    let kid = trusted.kid();
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        for sig in [&b""[..], b"x"] {
            let token = raw_token(&header, &claims(&needed), sig);
            assert!(c.verify(&token, unix_now()).is_err(), "{alg}");
        }
    }
    // HS256 keyed with the trusted public key (algorithm confusion).
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hmac = jsonwebtoken::encode(
        &header,
        &claims(&needed),
        &jsonwebtoken::EncodingKey::from_secret(&trusted.spki),
    )
    .expect("hs256");
    let result = c.verify(&hmac, unix_now());
    assert!(
        matches!(&result, Err(InvalidToken::Invalid(m)) if m.contains("HS256 is not accepted")),
        "{result:?}"
    );
    // An algorithm that does not fit the key.
    let mut wrong = trusted.header();
    wrong.alg = Algorithm::ES384;
    let token = Signer::es384().sign(&wrong, &claims(&needed));
    assert!(c.verify(&token, unix_now()).is_err());
    assert!(authorize(&c, &trusted.token(&needed), &needed)
        .await
        .is_ok());
}

#[test]
fn may_list_follows_the_rules_when_given() {
    let signer = Signer::es256();
    let grant = Grant {
        subject: Some("alice".into()),
        groups: Vec::new(),
    };
    assert!(controller(vec![signer.trusted()]).may_list(&grant, "anything"));
    let rules: crate::rules::AccessRules = serde_json::from_value(json!({
        "rules": [{"repositories": ["mine/*"], "users": ["alice"], "actions": ["pull"]}]
    }))
    .expect("rules");
    let c = controller(vec![signer.trusted()]).with_rules(std::sync::Arc::new(rules));
    assert!(c.may_list(&grant, "mine/app"));
    assert!(!c.may_list(&grant, "theirs/app"));
    assert!(!c.may_list(&Grant::default(), "mine/app"));
}

#[test]
fn scope_param_merges_resources_and_quote_escapes() {
    assert_eq!(scope_param(&[]), "");
    assert_eq!(
        scope_param(&[
            Access::catalog(),
            pull("a"),
            Access::repository("a", &[Action::Push, Action::Pull])
        ]),
        "registry:catalog:* repository:a:pull,push"
    );
    assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(quote("a\r\nb"), r#""ab""#);
}

proptest::proptest! {
    #[test]
    fn verification_never_panics_on_junk(s in ".{0,400}") {
        let c = controller(vec![Signer::es256().trusted()]);
        proptest::prop_assert!(c.verify(&s, unix_now()).is_err());
    }

    #[test]
    fn verification_never_panics_on_odd_headers(
        alg in "(ES256|ES384|RS256|EdDSA|HS256|none|PS512|[A-Z]{2,5})",
        kid in proptest::option::of(".{0,60}"),
        x5c in proptest::option::of(proptest::collection::vec("[A-Za-z0-9+/=]{0,40}", 0..4)),
        body in ".{0,100}",
        sig in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
    ) {
        let c = controller(vec![Signer::es256().trusted()]);
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid { header["kid"] = json!(kid); }
        if let Some(x5c) = x5c { header["x5c"] = json!(x5c); }
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(body),
            URL_SAFE_NO_PAD.encode(sig)
        );
        proptest::prop_assert!(c.verify(&token, unix_now()).is_err());
    }
}

#[test]
fn issuer_constant_is_used_in_tokens() {
    // Guards the fixture itself: tokens carry the issuer the options expect.
    let signer = Signer::es256();
    let c = controller(vec![signer.trusted()]);
    let claims = c.verify(&signer.token(&[]), unix_now()).expect("valid");
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud.0, vec![SERVICE.to_owned()]);
}
