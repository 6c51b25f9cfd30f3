//! The HTTP side of talking to one registry: https (or http for insecure and loopback
//! registries, found by probing `/v2/` once), TLS options as skopeo's (`tls-verify`,
//! `cert-dir` with `*.crt` CAs and `*.cert`/`*.key` client pairs), and the `WWW-Authenticate`
//! challenge flow: Basic, or Bearer tokens fetched per scope from the realm, with the token
//! cache and challenge parser of the pull-through cache (`berth_proxy::auth`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proxy::auth::{parse_challenge, Challenge, TokenCache};
pub use berth_proxy::upstream::error_chain;
use bytes::Bytes;
use http::{header, HeaderMap, Method, StatusCode};
use reqwest::{Body, Response, Url};
use tokio::sync::OnceCell;

use crate::Failure;

/// Time allowed to connect, and for a token endpoint to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading an answer: a stalled transfer fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Most of an error answer kept for the message.
const ERROR_READ_TIME: Duration = Duration::from_secs(2);

/// Which end a client serves: its failures are the source's or the target's (exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Images are read from it.
    Source,
    /// Images are written to it.
    Target,
}

impl Side {
    /// A failure of this side.
    pub fn fail(self, message: impl Into<String>) -> Failure {
        match self {
            Side::Source => Failure::Source(message.into()),
            Side::Target => Failure::Target(message.into()),
        }
    }
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Verify TLS certificates (and never fall back to plain http), as skopeo's
    /// `--tls-verify`. Loopback registries may always fall back to http, as docker allows.
    pub tls_verify: bool,
    /// A directory of `*.crt` CA certificates and `*.cert`/`*.key` client certificates.
    pub cert_dir: Option<PathBuf>,
    /// `user:password` for Basic auth and token requests.
    pub credentials: Option<(String, String)>,
}

/// A client of one registry host.
pub struct Client {
    host: String,
    side: Side,
    http: reqwest::Client,
    upload: reqwest::Client,
    base: OnceCell<Url>,
    plain_http_ok: bool,
    tokens: TokenCache,
    credentials: Option<(String, String)>,
}

impl Client {
    /// A client for `host` (`registry-1.docker.io`, `127.0.0.1:5000`).
    pub fn new(host: &str, side: Side, options: &ClientOptions) -> crate::Result<Client> {
        let build = |read_timeout: Option<Duration>| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                // reqwest drops Authorization on redirects to another host (blob CDNs).
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = read_timeout {
                builder = builder.read_timeout(t);
            }
            if !options.tls_verify {
                builder = builder.danger_accept_invalid_certs(true);
            }
            if let Some(dir) = &options.cert_dir {
                builder = with_cert_dir(builder, dir).map_err(Failure::Usage)?;
            }
            builder
                .build()
                .map_err(|e| side.fail(format!("cannot build an HTTP client: {e}")))
        };
        let http = build(Some(READ_TIMEOUT))?;
        // Uploads are watched for progress instead (crate::watchdog): reqwest's read timeout
        // would also count the time spent sending a large body.
        let upload = build(None)?;
        let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback = hostname == "localhost"
            || hostname
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        Ok(Client {
            host: host.to_owned(),
            side,
            http,
            upload,
            base: OnceCell::new(),
            plain_http_ok: loopback || !options.tls_verify,
            tokens: TokenCache::default(),
            credentials: options.credentials.clone(),
        })
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Which end this client serves.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The base URL, found once: https, or http when https does not connect and plain http
    /// is allowed. The probe's 401 challenge is remembered, so later requests send
    /// credentials (or a token) at once.
    async fn base(&self) -> crate::Result<&Url> {
        self.base
            .get_or_try_init(|| async {
                let https = format!("https://{}/", self.host);
                match self.probe(&https).await {
                    Ok(url) => Ok(url),
                    Err(e) if !self.plain_http_ok => Err(self.side.fail(format!(
                        "{}: {e} (for a registry without TLS use --src-tls-verify=false / --dest-tls-verify=false)",
                        self.host
                    ))),
                    Err(_) => {
                        let http = format!("http://{}/", self.host);
                        self.probe(&http)
                            .await
                            .map_err(|e| self.side.fail(format!("{}: {e}", self.host)))
                    }
                }
            })
            .await
    }

    async fn probe(&self, base: &str) -> Result<Url, String> {
        let url = Url::parse(base).map_err(|e| format!("bad registry URL {base}: {e}"))?;
        let v2 = url.join("v2/").map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(v2)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        if let Some(c) = challenge(&response) {
            self.tokens.set_challenge(c);
        }
        Ok(url)
    }

    /// The Authorization header for `scope`, from the challenge seen last.
    async fn authorization(&self, scope: &str, refresh: bool) -> crate::Result<Option<String>> {
        match self.tokens.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.basic()),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if refresh {
                    self.tokens.forget(scope);
                } else if let Some(t) = self.tokens.token(scope) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let creds = self.realm_credentials(&realm);
                let token = self
                    .tokens
                    .fetch(
                        &self.http,
                        &realm,
                        service.as_deref(),
                        scope,
                        creds,
                        CONNECT_TIMEOUT,
                    )
                    .await
                    .map_err(|e| self.side.fail(format!("token from {realm}: {e}")))?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Credentials go to a token realm over https or on the registry's own host only, so a
    /// plain-http realm elsewhere never sees the password.
    fn realm_credentials(&self, realm: &str) -> Option<&(String, String)> {
        let url = Url::parse(realm).ok()?;
        let own = url.host_str().is_some_and(|h| {
            let mine = self
                .host
                .rsplit_once(':')
                .map_or(self.host.as_str(), |(h, _)| h);
            h == mine
        });
        (own || url.scheme() == "https")
            .then_some(self.credentials.as_ref())
            .flatten()
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine;
        self.credentials.as_ref().map(|(u, p)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {encoded}")
        })
    }

    /// The absolute URL of `path` (`/v2/...`) or of a `Location` the registry sent.
    pub async fn url(&self, path: &str) -> crate::Result<Url> {
        let base = self.base().await?;
        base.join(path)
            .map_err(|e| self.side.fail(format!("bad URL {path:?}: {e}")))
    }

    /// Sends a request with a body that can be sent twice (none, or bytes): a 401 with a
    /// challenge is answered once with fresh credentials. Any status is returned.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> crate::Result<Response> {
        let url = self.url(path).await?;
        let mut auth = self.authorization(scope, false).await?;
        for attempt in 0..2 {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(a) = &auth {
                request = request.header(header::AUTHORIZATION, a);
            }
            if let Some(b) = &body {
                request = request.body(b.clone());
            }
            let response = request.send().await.map_err(|e| {
                self.side
                    .fail(format!("{method} {}: {}", self.host, error_chain(&e)))
            })?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            match challenge(&response) {
                Some(Challenge::Basic) if self.credentials.is_none() => return Ok(response),
                Some(c) => self.tokens.set_challenge(c),
                None => return Ok(response),
            }
            auth = self.authorization(scope, true).await?;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Sends a request whose body streams (a blob upload): it cannot be sent twice, so the
    /// caller authenticates `scope` with an earlier request of the same scope. The upload is
    /// watched for progress ([`crate::watchdog`]) rather than timed.
    pub async fn send_stream(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        headers: HeaderMap,
        body: crate::verify::BlobStream,
    ) -> crate::Result<Response> {
        let auth = self.authorization(scope, false).await?;
        let mut request = self.upload.request(method.clone(), url).headers(headers);
        if let Some(a) = auth {
            request = request.header(header::AUTHORIZATION, a);
        }
        let watch = crate::watchdog::Watch::new();
        let body = Body::wrap_stream(crate::watchdog::watched(body, watch.clone()));
        let sent = crate::watchdog::supervise(request.body(body).send(), &watch)
            .await
            .map_err(|why| self.side.fail(format!("{method} {}: {why}", self.host)))?;
        sent.map_err(|e| {
            // The body's own content check failing is the source's content, refused.
            match crate::verify::is_content_error(&e) {
                Some(why) => Failure::Content(why),
                None => self
                    .side
                    .fail(format!("{method} {}: {}", self.host, error_chain(&e))),
            }
        })
    }

    /// A failure for an unexpected answer, with the start of its body (the registry's
    /// error JSON says what went wrong).
    pub async fn unexpected(&self, what: &str, response: Response) -> Failure {
        let status = response.status();
        let detail = berth_proxy::body::error_excerpt(response, ERROR_READ_TIME).await;
        self.side
            .fail(format!("{what} on {}: HTTP {status} {detail}", self.host))
    }
}

/// `repository:NAME:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// `repository:NAME:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn challenge(response: &Response) -> Option<Challenge> {
    if response.status() != StatusCode::UNAUTHORIZED {
        return None;
    }
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_challenge)
}

/// Adds skopeo's `cert-dir` contents: `*.crt` are CAs, `X.cert` with `X.key` a client
/// certificate.
fn with_cert_dir(
    mut builder: reqwest::ClientBuilder,
    dir: &Path,
) -> Result<reqwest::ClientBuilder, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    for path in paths {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => {
                let cert = reqwest::Certificate::from_pem(&read(&path)?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
            Some("cert") => {
                let key = path.with_extension("key");
                let mut pem = read(&path)?;
                pem.push(b'\n');
                pem.extend(read(&key)?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                builder = builder.identity(identity);
            }
            _ => {}
        }
    }
    Ok(builder)
}
