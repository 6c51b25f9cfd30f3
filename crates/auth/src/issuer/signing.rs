//! The built-in issuer's ES256 signing key: a P-256 private key in a PEM file (PKCS#8
//! `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), created on first start if missing.
//!
//! Creation is atomic and first-writer-wins, so that several Berth nodes sharing one key
//! file (e.g. on NFS) all end up with the same key: the key is written to a private
//! temporary file (mode 0600) and hard-linked to the final name, which fails if another
//! node got there first; then the file is read back, whoever wrote it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use p256::SecretKey;

use crate::files::Publish;
use crate::token::{libtrust_key_id, TokenError, TrustedKey};

/// Why the signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// The key file could not be read or created.
    #[error("signing key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds something other than a P-256 private key.
    #[error("signing key {path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A loaded signing key.
pub(crate) struct SigningKey {
    pub(crate) encoding: EncodingKey,
    /// libtrust key ID of the public key: the token header's `kid`.
    pub(crate) kid: String,
    /// DER `SubjectPublicKeyInfo` of the public key.
    pub(crate) public_der: Vec<u8>,
    /// The public point's coordinates, base64url, for the JWK.
    pub(crate) xy: (String, String),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// Reads the key at `path`, creating it first if the file does not exist.
    pub(crate) fn load_or_create(path: &Path) -> Result<SigningKey, SigningKeyError> {
        let io = |source| SigningKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let pem = match std::fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create(path).map_err(io)?;
                std::fs::read_to_string(path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the token signing key is readable by other users; chmod 600 it");
            }
        }
        SigningKey::from_pem(&pem).map_err(|message| SigningKeyError::Format {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a P-256 private key PEM.
    pub(crate) fn from_pem(pem: &str) -> Result<SigningKey, String> {
        let secret = if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            SecretKey::from_sec1_pem(pem).map_err(|e| format!("not a P-256 EC private key: {e}"))?
        } else {
            SecretKey::from_pkcs8_pem(pem)
                .map_err(|e| format!("not a P-256 private key in PKCS#8 PEM: {e}"))?
        };
        let pkcs8 = secret
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        let public = secret.public_key();
        let public_der = public
            .to_public_key_der()
            .map_err(|e| format!("cannot encode the public key: {e}"))?
            .into_vec();
        let point = p256::EncodedPoint::from(&public);
        let (x, y) = match (point.x(), point.y()) {
            (Some(x), Some(y)) => (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
            _ => return Err("the public key is the identity point".into()),
        };
        Ok(SigningKey {
            encoding: EncodingKey::from_ec_der(pkcs8.as_bytes()),
            kid: libtrust_key_id(&public_der),
            public_der,
            xy: (x, y),
        })
    }

    /// The public key, for a token controller to trust.
    pub(crate) fn trusted(&self) -> Result<TrustedKey, TokenError> {
        TrustedKey::from_spki_der(&self.public_der)
    }
}

/// Generates a key and links it to `path` unless another process created `path` meanwhile.
fn create(path: &Path) -> std::io::Result<()> {
    let secret = SecretKey::random(&mut rand_core::OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // Another node may be faster: then its key is used.
    if crate::files::write_atomically(path, pem.as_bytes(), 0o600, Publish::CreateOnly)? {
        tracing::info!(path = %path.display(), "created a new token signing key");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_once_and_reads_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys").join("signing.pem");
        // A missing directory is an error, not a panic.
        assert!(SigningKey::load_or_create(&path).is_err());
        std::fs::create_dir(dir.path().join("keys")).expect("mkdir");
        let first = SigningKey::load_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = SigningKey::load_or_create(&path).expect("load");
        assert_eq!(first.kid, again.kid);
        assert_eq!(first.public_der, again.public_der);
        // No temporary files are left behind.
        let entries = std::fs::read_dir(dir.path().join("keys"))
            .expect("ls")
            .count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn concurrent_creators_agree_on_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        let kids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| SigningKey::load_or_create(&path).map(|k| k.kid)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("key"))
                .collect()
        });
        assert!(kids.windows(2).all(|w| w[0] == w[1]), "{kids:?}");
    }

    #[test]
    fn accepts_sec1_and_refuses_other_keys() {
        let secret = SecretKey::random(&mut rand_core::OsRng);
        let sec1 = secret.to_sec1_pem(LineEnding::LF).expect("sec1");
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).expect("pkcs8");
        let a = SigningKey::from_pem(&sec1).expect("sec1 key");
        let b = SigningKey::from_pem(&pkcs8).expect("pkcs8 key");
        assert_eq!(a.kid, b.kid);
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        assert!(SigningKey::from_pem(&p384.serialize_pem()).is_err());
        assert!(SigningKey::from_pem("garbage").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, "not a key").expect("write");
        assert!(matches!(
            SigningKey::load_or_create(&path),
            Err(SigningKeyError::Format { .. })
        ));
    }
}
