//! `http.tls`: TLS with rustls. The certificate and key are re-read when their files change
//! (a certbot renewal replaces them), checked at most once a second on new handshakes, so
//! renewals need no restart and open connections are never dropped. A broken renewal is
//! logged and the last good certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use berth_config::TlsConfig;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Builds the TLS acceptor for `http.tls`; every problem with the files is an error naming
/// the key and the file.
pub fn acceptor(tls: &TlsConfig, http2: bool) -> anyhow::Result<TlsAcceptor> {
    let (Some(cert), Some(key)) = (&tls.certificate, &tls.key) else {
        if tls.letsencrypt.is_some() {
            bail!("http.tls.letsencrypt is not supported by Berth; obtain a certificate with certbot and set http.tls.certificate and http.tls.key (Berth reloads them when certbot renews)");
        }
        bail!("http.tls needs both certificate and key");
    };
    let provider = Arc::new(default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.minimumtls.as_deref() {
        None | Some("tls1.0" | "tls1.1" | "tls1.2") => {
            &[&rustls::version::TLS12, &rustls::version::TLS13]
        }
        Some("tls1.3") => &[&rustls::version::TLS13],
        Some(other) => bail!("http.tls.minimumtls: {other:?} is not one of tls1.2, tls1.3"),
    };
    if matches!(tls.minimumtls.as_deref(), Some("tls1.0" | "tls1.1")) {
        tracing::warn!("http.tls.minimumtls: TLS 1.0 and 1.1 are insecure and not offered; the minimum is TLS 1.2");
    }
    if !tls.ciphersuites.is_empty() {
        tracing::warn!(
            "http.tls.ciphersuites is ignored: Berth offers rustls's safe default suites"
        );
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?;
    let builder = if tls.clientcas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for ca in &tls.clientcas {
            for cert in
                read_certs(ca).with_context(|| format!("http.tls.clientcas: {}", ca.display()))?
            {
                roots.add(cert).with_context(|| {
                    format!(
                        "http.tls.clientcas: {} holds an unusable certificate",
                        ca.display()
                    )
                })?;
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("http.tls.clientcas")?;
        builder.with_client_cert_verifier(verifier)
    };
    let resolver = ReloadingCert::new(cert.clone(), key.clone())?;
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Loads the pair and checks that the key belongs to the certificate.
fn load_pair(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain =
        read_certs(cert).with_context(|| format!("http.tls.certificate: {}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "http.tls.key: cannot read a PEM private key from {}",
            key.display()
        )
    })?;
    let signing = default_provider()
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("http.tls.key: unsupported private key in {}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| {
        format!(
            "http.tls.key {} does not belong to http.tls.certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A certificate resolver that reloads the files when they change.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    current: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl ReloadingCert {
    fn new(cert: PathBuf, key: PathBuf) -> anyhow::Result<ReloadingCert> {
        let current = load_pair(&cert, &key)?;
        let stamps = (modified(&cert), modified(&key));
        Ok(ReloadingCert {
            cert,
            key,
            state: Mutex::new(CertState {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let stamps = (modified(&self.cert), modified(&self.key));
            if stamps != state.stamps {
                match load_pair(&self.cert, &self.key) {
                    Ok(pair) => {
                        tracing::info!(certificate = %self.cert.display(), "TLS certificate reloaded");
                        state.current = pair;
                        state.stamps = stamps;
                    }
                    // Half-written renewals (certificate replaced, key not yet) land here;
                    // the next check after both files are in place picks them up.
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        "TLS certificate changed but cannot be loaded; keeping the previous one"
                    ),
                }
            }
        }
        Some(state.current.clone())
    }
}
