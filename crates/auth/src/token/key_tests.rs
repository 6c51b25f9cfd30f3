//! Where signing keys come from: `rootcertbundle` (x5c chains, kid), `jwks`, header JWKs.

use std::io::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::testkit::{authorize, claims, options, p256_jwk, pull, x5c, Signer};
use super::*;
use x509_parser::prelude::FromDer as _;

fn bundle(dir: &std::path::Path, certs: &[&rcgen::Certificate]) -> std::path::PathBuf {
    let path = dir.join("bundle.pem");
    let mut f = std::fs::File::create(&path).expect("create");
    for cert in certs {
        f.write_all(cert.pem().as_bytes()).expect("write");
    }
    path
}

fn with_bundle(path: &std::path::Path) -> TokenController {
    let mut opts = options();
    opts.rootcertbundle = Some(path.to_owned());
    TokenController::new(opts).expect("controller")
}

#[tokio::test]
async fn rootcertbundle_x5c_chains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root_key = Signer::es256();
    let root = root_key.ca_cert("root");
    let c = with_bundle(&bundle(dir.path(), &[&root]));
    let needed = [pull("x")];
    let signed_with_chain = |signer: &Signer, chain: Vec<String>| {
        let mut header = jsonwebtoken::Header::new(signer.alg);
        header.x5c = Some(chain);
        signer.sign(&header, &claims(&needed))
    };

    // Leaf signed by the root.
    let leaf_key = Signer::es256();
    let leaf = leaf_key.cert_signed_by("leaf", false, &root, &root_key);
    let ok = signed_with_chain(&leaf_key, vec![x5c(&leaf)]);
    assert!(authorize(&c, &ok, &needed).await.is_ok());
    // The root itself as the leaf.
    let ok = signed_with_chain(&root_key, vec![x5c(&root)]);
    assert!(authorize(&c, &ok, &needed).await.is_ok());
    // Through an intermediate CA (an EdDSA leaf, to vary the algorithm).
    let mid_key = Signer::es384();
    let mid = mid_key.cert_signed_by("mid", true, &root, &root_key);
    let deep_key = Signer::ed25519();
    let deep = deep_key.cert_signed_by("deep", false, &mid, &mid_key);
    let ok = signed_with_chain(&deep_key, vec![x5c(&deep), x5c(&mid)]);
    assert!(authorize(&c, &ok, &needed).await.is_ok());
    // The intermediate missing.
    let bad = signed_with_chain(&deep_key, vec![x5c(&deep)]);
    assert!(refusal(&c, &bad).contains("does not lead"));
    // An "intermediate" that is not a CA.
    let fake_mid = mid_key.cert_signed_by("mid", false, &root, &root_key);
    let deep2 = deep_key.cert_signed_by("deep", false, &fake_mid, &mid_key);
    let bad = signed_with_chain(&deep_key, vec![x5c(&deep2), x5c(&fake_mid)]);
    assert!(refusal(&c, &bad).contains("does not lead"));
    // A self-signed certificate not in the bundle, even with the root's name.
    let stranger = Signer::es256();
    let fake_root = stranger.ca_cert("root");
    let bad = signed_with_chain(&stranger, vec![x5c(&fake_root)]);
    assert!(refusal(&c, &bad).contains("does not lead"));
    let fake_leaf = Signer::es256();
    let fake = fake_leaf.cert_signed_by("leaf", false, &fake_root, &stranger);
    let bad = signed_with_chain(&fake_leaf, vec![x5c(&fake)]);
    assert!(refusal(&c, &bad).contains("does not lead"));
    // A good chain, but the token signed by another key than the leaf's.
    let bad = signed_with_chain(&stranger, vec![x5c(&leaf)]);
    assert!(refusal(&c, &bad).contains("InvalidSignature"));
    // Not base64, not a certificate, too long.
    for chain in [
        vec!["%%%".to_owned()],
        vec!["AAAA".to_owned()],
        vec![x5c(&leaf); 9],
    ] {
        assert!(c
            .verify(&signed_with_chain(&leaf_key, chain), unix_now())
            .is_err());
    }
    // The same chain inside a header JWK.
    let mut jwk = p256_jwk(&leaf_key.spki);
    jwk["x5c"] = json!([x5c(&leaf)]);
    let header = json!({"alg": "ES256", "typ": "JWT", "jwk": jwk});
    let token = jsonwebtoken::encode(
        &serde_json::from_value::<jsonwebtoken::Header>(header).expect("header"),
        &claims(&needed),
        &leaf_key.encoding,
    )
    .expect("sign");
    assert!(authorize(&c, &token, &needed).await.is_ok());
}

/// A certificate valid only in 2000.
fn old_cert(
    name: &str,
    key: &Signer,
    ca: bool,
    issuer: &rcgen::Certificate,
    issuer_key: &Signer,
) -> rcgen::Certificate {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let pair = key.pair.as_ref().expect("rcgen key");
    let issuer_pair = issuer_key.pair.as_ref().expect("rcgen key");
    params.signed_by(pair, issuer, issuer_pair).expect("cert")
}

/// Why `token` is refused.
fn refusal(c: &TokenController, token: &str) -> String {
    match c.verify(token, unix_now()) {
        Err(InvalidToken::Invalid(m) | InvalidToken::Malformed(m)) => m,
        Ok(_) => panic!("token accepted"),
    }
}

#[tokio::test]
async fn a_bundle_certificate_is_trusted_as_a_leaf_whoever_issued_it() {
    // As Go's x509.Verify: a leaf that is in the root pool is a chain by itself.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = Signer::es256();
    let ca = ca_key.ca_cert("outside ca");
    let leaf_key = Signer::es256();
    let leaf = leaf_key.cert_signed_by("pinned leaf", false, &ca, &ca_key);
    let c = with_bundle(&bundle(dir.path(), &[&leaf]));
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.x5c = Some(vec![x5c(&leaf)]);
    assert!(c
        .verify(&leaf_key.sign(&header, &claims(&[])), unix_now())
        .is_ok());
    // The CA that issued it is not trusted for other leaves.
    let other_key = Signer::es256();
    let other = other_key.cert_signed_by("other leaf", false, &ca, &ca_key);
    header.x5c = Some(vec![x5c(&other)]);
    assert!(refusal(&c, &other_key.sign(&header, &claims(&[]))).contains("does not lead"));
}

#[tokio::test]
async fn expired_certificates_break_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root_key = Signer::es256();
    let root = root_key.ca_cert("root");
    let c = with_bundle(&bundle(dir.path(), &[&root]));
    let leaf_key = Signer::es256();
    let sign = |chain: Vec<String>| {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.x5c = Some(chain);
        leaf_key.sign(&header, &claims(&[]))
    };
    let old = old_cert("leaf", &leaf_key, false, &root, &root_key);
    assert!(refusal(&c, &sign(vec![x5c(&old)])).contains("leaf certificate expired"));
    // A current leaf under an expired intermediate.
    let mid_key = Signer::es256();
    let mid = old_cert("mid", &mid_key, true, &root, &root_key);
    let leaf = leaf_key.cert_signed_by("leaf", false, &mid, &mid_key);
    assert!(refusal(&c, &sign(vec![x5c(&leaf), x5c(&mid)])).contains("does not lead"));
    // The same chain with a current intermediate passes.
    let mid = mid_key.cert_signed_by("mid", true, &root, &root_key);
    assert!(c
        .verify(&sign(vec![x5c(&leaf), x5c(&mid)]), unix_now())
        .is_ok());
}

#[tokio::test]
async fn rootcertbundle_kid_by_libtrust_id_and_thumbprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Signer::es256();
    let other = Signer::ed25519();
    let c = with_bundle(&bundle(
        dir.path(),
        &[&other.ca_cert("o"), &key.ca_cert("k")],
    ));
    let needed = [pull("x")];
    // libtrust kid (registry:2 v2.x).
    assert!(authorize(&c, &key.token(&needed), &needed).await.is_ok());
    assert!(authorize(&c, &other.token(&needed), &needed).await.is_ok());
    // RFC 7638 thumbprint (distribution v3).
    let jwk = p256_jwk(&key.spki);
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().expect("x"),
        jwk["y"].as_str().expect("y")
    );
    let thumb = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some(thumb);
    assert!(authorize(&c, &key.sign(&header, &claims(&needed)), &needed)
        .await
        .is_ok());
    // A trusted key in the header's jwk (no x5c) is found by its thumbprint.
    let header: jsonwebtoken::Header =
        serde_json::from_value(json!({"alg": "ES256", "jwk": jwk})).expect("header");
    assert!(authorize(&c, &key.sign(&header, &claims(&needed)), &needed)
        .await
        .is_ok());
    // An untrusted one is not, whatever kid it claims.
    let stranger = Signer::es256();
    let mut jwk = p256_jwk(&stranger.spki);
    jwk["kid"] = json!(key.kid());
    let header: jsonwebtoken::Header =
        serde_json::from_value(json!({"alg": "ES256", "jwk": jwk})).expect("header");
    // Named by a trusted kid, it is checked with the trusted key, and fails.
    let token = stranger.sign(&header, &claims(&needed));
    assert!(refusal(&c, &token).contains("InvalidSignature"));
    let header: jsonwebtoken::Header =
        serde_json::from_value(json!({"alg": "ES256", "jwk": p256_jwk(&stranger.spki)}))
            .expect("header");
    let token = stranger.sign(&header, &claims(&needed));
    assert!(refusal(&c, &token).contains("untrusted JWK"));
}

#[tokio::test]
async fn jwks_keys_by_kid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Signer::es256();
    let mut jwk = p256_jwk(&key.spki);
    jwk["kid"] = json!("key-1");
    jwk["use"] = json!("sig");
    // The test RSA key, pinned to RS512.
    let rsa = Signer::rsa(Algorithm::RS256);
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&rsa.spki).expect("spki");
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa_key)) = spki.parsed() else {
        panic!("not RSA");
    };
    let strip = |b: &[u8]| URL_SAFE_NO_PAD.encode(&b[b.iter().take_while(|&&x| x == 0).count()..]);
    let pinned = json!({"kty": "RSA", "kid": "pinned", "alg": "RS512",
        "n": strip(rsa_key.modulus), "e": strip(rsa_key.exponent)});
    // A P-256 key that names an algorithm of another family is skipped.
    let mut misfit = p256_jwk(&key.spki);
    misfit["kid"] = json!("misfit");
    misfit["alg"] = json!("RS256");
    let path = dir.path().join("jwks.json");
    let set =
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, jwk, pinned, misfit]});
    std::fs::write(&path, set.to_string()).expect("write");
    let mut opts = options();
    opts.jwks = Some(path.clone());
    let c = TokenController::new(opts).expect("controller");
    let needed = [pull("x")];
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some("key-1".into());
    assert!(authorize(&c, &key.sign(&header, &claims(&needed)), &needed)
        .await
        .is_ok());
    // The libtrust kid is not known for a JWKS key.
    assert!(authorize(&c, &key.token(&needed), &needed).await.is_err());
    header.kid = Some("key-2".into());
    assert!(authorize(&c, &key.sign(&header, &claims(&needed)), &needed)
        .await
        .is_err());
    // The oct key was skipped: HS256 under its kid is refused.
    let mut hs = jsonwebtoken::Header::new(Algorithm::HS256);
    hs.kid = Some("hmac".into());
    let token = jsonwebtoken::encode(
        &hs,
        &claims(&needed),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .expect("hs256");
    assert!(c.verify(&token, unix_now()).is_err());
    // The pinned key verifies RS512 only.
    let mut rs = jsonwebtoken::Header::new(Algorithm::RS512);
    rs.kid = Some("pinned".into());
    let rs512 = Signer::rsa(Algorithm::RS512);
    assert!(c
        .verify(&rs512.sign(&rs, &claims(&needed)), unix_now())
        .is_ok());
    rs.alg = Algorithm::RS256;
    assert!(refusal(&c, &rsa.sign(&rs, &claims(&needed))).contains("does not fit"));
    header.kid = Some("misfit".into());
    assert!(refusal(&c, &key.sign(&header, &claims(&needed))).contains("untrusted key"));
}

#[test]
fn construction_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        TokenController::new(options()),
        Err(TokenError::NoKeys)
    ));
    let mut opts = options();
    opts.rootcertbundle = Some(dir.path().join("missing.pem"));
    assert!(matches!(
        TokenController::new(opts),
        Err(TokenError::Read { .. })
    ));
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").expect("write");
    let mut opts = options();
    opts.rootcertbundle = Some(empty);
    assert!(matches!(
        TokenController::new(opts),
        Err(TokenError::Certificate { .. })
    ));
    for jwks in [
        "{}",
        r#"{"keys":[]}"#,
        r#"{"keys":[{"kty":"oct","k":"eA"}]}"#,
    ] {
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks).expect("write");
        let mut opts = options();
        opts.jwks = Some(path);
        assert!(
            matches!(TokenController::new(opts), Err(TokenError::Jwks { .. })),
            "{jwks}"
        );
    }
    assert!(TrustedKey::from_spki_der(b"junk").is_err());
}
