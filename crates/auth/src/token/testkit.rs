//! Test fixtures: signing keys of every accepted kind, certificates, and tokens built
//! from raw header and claim JSON (so tests can forge anything).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::{unix_now, TokenController, TokenOptions, TrustedKey};
use crate::access::Access;
use crate::token::ResourceActions;
use crate::{AccessController as _, Action, AuthRequest, Denied, Grant};

pub(crate) const ISSUER: &str = "auth.test";
pub(crate) const SERVICE: &str = "registry.test";

/// A test RSA-2048 key (testdata/, generated with openssl for these tests only).
const RSA_PRIVATE: &str = include_str!("testdata/rsa-test-key.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa-test-key.pub.pem");

/// A key that signs tokens.
pub(crate) struct Signer {
    pub(crate) alg: Algorithm,
    pub(crate) encoding: EncodingKey,
    /// DER SubjectPublicKeyInfo.
    pub(crate) spki: Vec<u8>,
    /// Set for the rcgen kinds, to make certificates with.
    pub(crate) pair: Option<rcgen::KeyPair>,
}

impl Signer {
    fn generated(rcgen_alg: &'static rcgen::SignatureAlgorithm, alg: Algorithm) -> Signer {
        let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("generate key");
        let der = pair.serialize_der();
        let encoding = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_der(&der),
            _ => EncodingKey::from_ec_der(&der),
        };
        Signer {
            alg,
            encoding,
            spki: pair.public_key_der(),
            pair: Some(pair),
        }
    }

    pub(crate) fn es256() -> Signer {
        Signer::generated(&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256)
    }

    pub(crate) fn es384() -> Signer {
        Signer::generated(&rcgen::PKCS_ECDSA_P384_SHA384, Algorithm::ES384)
    }

    pub(crate) fn ed25519() -> Signer {
        Signer::generated(&rcgen::PKCS_ED25519, Algorithm::EdDSA)
    }

    pub(crate) fn rsa(alg: Algorithm) -> Signer {
        let public = x509_parser::pem::Pem::iter_from_buffer(RSA_PUBLIC.as_bytes())
            .next()
            .expect("pem")
            .expect("pem block");
        Signer {
            alg,
            encoding: EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key"),
            spki: public.contents,
            pair: None,
        }
    }

    pub(crate) fn trusted(&self) -> TrustedKey {
        TrustedKey::from_spki_der(&self.spki).expect("trusted key")
    }

    pub(crate) fn kid(&self) -> String {
        super::libtrust_key_id(&self.spki)
    }

    /// A header for this key, naming it by libtrust `kid`.
    pub(crate) fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid());
        header
    }

    /// A token with `header` and `claims`.
    pub(crate) fn sign(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign")
    }

    /// A valid token granting `access`, named by `kid`.
    pub(crate) fn token(&self, access: &[Access]) -> String {
        self.sign(&self.header(), &claims(access))
    }

    /// A self-signed CA certificate for this key.
    pub(crate) fn ca_cert(&self, name: &str) -> rcgen::Certificate {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params
            .self_signed(self.pair.as_ref().expect("rcgen key"))
            .expect("self-signed")
    }

    /// A certificate for this key issued by `issuer` (with `issuer_key`).
    pub(crate) fn cert_signed_by(
        &self,
        name: &str,
        ca: bool,
        issuer: &rcgen::Certificate,
        issuer_key: &Signer,
    ) -> rcgen::Certificate {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params
            .signed_by(
                self.pair.as_ref().expect("rcgen key"),
                issuer,
                issuer_key.pair.as_ref().expect("rcgen key"),
            )
            .expect("signed")
    }
}

/// Base64 DER of a certificate, as `x5c` holds it.
pub(crate) fn x5c(cert: &rcgen::Certificate) -> String {
    STANDARD.encode(cert.der())
}

/// Valid claims granting `access`, for subject `alice`.
pub(crate) fn claims(access: &[Access]) -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "test",
        "access": access.iter().map(ResourceActions::from_access).collect::<Vec<_>>(),
    })
}

/// A token from raw header and claims JSON with an arbitrary signature.
pub(crate) fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// registry:2-style options with no key files.
pub(crate) fn options() -> TokenOptions {
    TokenOptions {
        realm: "https://auth.test/token".into(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        ..TokenOptions::default()
    }
}

/// A controller with [`options`] trusting `keys`.
pub(crate) fn controller(keys: Vec<TrustedKey>) -> TokenController {
    TokenController::with_keys(options(), keys).expect("controller")
}

/// Pull access to `repo`.
pub(crate) fn pull(repo: &str) -> Access {
    Access::repository(repo, &[Action::Pull])
}

/// Authorizes `needed` with `Authorization: Bearer <token>`.
pub(crate) async fn authorize(
    c: &TokenController,
    token: &str,
    needed: &[Access],
) -> Result<Grant, Denied> {
    let header = format!("Bearer {token}");
    let request = AuthRequest {
        authorization: Some(&header),
        ..AuthRequest::default()
    };
    c.authorize(&request, needed).await
}

/// The challenge of a refusal (panics on success).
pub(crate) fn challenge(result: Result<Grant, Denied>) -> String {
    match result {
        Err(Denied::Unauthorized { challenge, .. }) => challenge,
        other => panic!("expected 401, got {other:?}"),
    }
}

/// The public JWK of a P-256 SPKI.
pub(crate) fn p256_jwk(spki: &[u8]) -> Value {
    use p256::pkcs8::DecodePublicKey as _;
    let key = p256::PublicKey::from_public_key_der(spki).expect("p256");
    let point = p256::EncodedPoint::from(&key);
    json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
        "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
    })
}
