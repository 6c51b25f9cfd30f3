//! One upstream registry and the HTTP client that talks to it: manifests (HEAD/GET with every
//! manifest media type accepted), blobs (GET from an offset, for resuming), tag lists; bearer
//! token or basic auth; redirects to blob CDNs followed without the `Authorization` header
//! when they leave the upstream's origin; a time limit on the response headers (connecting
//! included); bounded retries when nothing is cached; and a short "down" period after a
//! failure so cached content is served at once instead of after another timeout.
//!
//! What an upstream sends is not trusted: bodies read into memory are bounded while they are
//! read ([`crate::body`]); redirects and token realms on other hosts only reach public
//! addresses unless the upstream is local or the operator allows it ([`crate::guard`]); and
//! credentials only go to a token realm over https or on the upstream's own host.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_config::UpstreamConfig;
use berth_oci::{Digest, RepoName};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use reqwest::{Client, Response, Url};

use crate::auth::{parse_challenge, Challenge, TokenCache};
use crate::body::{read_limited, MAX_MANIFEST, MAX_TAG_LIST, MAX_TAG_PAGE};
use crate::guard::{Guard, GuardedResolver};
use crate::UpstreamError;

/// Every manifest type Berth stores, so the upstream never has to down-convert.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, application/vnd.docker.distribution.manifest.v1+json;q=0.5";

/// Redirects followed per request (registry → CDN is one).
const MAX_REDIRECTS: usize = 5;
/// How long an upstream is skipped for requests that can be served from the cache, after a
/// network failure or timeout.
const DOWN_FOR: Duration = Duration::from_secs(15);
/// Longest `Retry-After` honoured for the down period.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Attempts for a request that has no cached fallback (the first one included).
const COLD_ATTEMPTS: u32 = 3;
/// Shortest time allowed for reading a manifest or tag list body.
const MIN_BODY_TIME: Duration = Duration::from_secs(30);

/// Settings of one upstream, from `proxy.upstreams[]` or registry:2's `proxy.remoteurl`.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The registry host it stands for (`docker.io`).
    pub host: String,
    /// Base URL (`https://registry-1.docker.io`).
    pub url: String,
    /// Basic credentials, also used to obtain bearer tokens.
    pub credentials: Option<(String, String)>,
    /// How long a cached tag is served before a re-check; zero checks on every pull.
    pub tag_ttl: Duration,
    /// Outbound proxy for this upstream (else the `*_PROXY` environment applies).
    pub proxy: Option<String>,
    /// Time allowed for the response headers.
    pub timeout: Duration,
    /// Follow redirects and token realms to loopback, private and link-local addresses even
    /// though the upstream is not local (`allowprivateredirects`; see [`crate::guard`]).
    pub allow_private_redirects: bool,
}

impl UpstreamSettings {
    /// From a `proxy.upstreams[]` entry.
    pub fn from_config(c: &UpstreamConfig) -> Self {
        UpstreamSettings {
            host: c.host.clone(),
            url: c.url.clone(),
            credentials: c
                .username
                .clone()
                .map(|u| (u, c.password.clone().unwrap_or_default())),
            tag_ttl: c.tag_ttl(),
            proxy: c.proxy.clone(),
            timeout: c.header_timeout(),
            allow_private_redirects: c.allowprivateredirects,
        }
    }
}

/// A manifest as the upstream sent it.
#[derive(Debug, Clone)]
pub struct RemoteManifest {
    /// The bytes.
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its `Docker-Content-Digest`, when sent.
    pub digest: Option<Digest>,
}

/// One upstream registry.
pub struct Upstream {
    /// Settings as configured.
    pub settings: UpstreamSettings,
    base: Url,
    client: Client,
    guard: Arc<Guard>,
    tokens: TokenCache,
    down_until: Mutex<Option<Instant>>,
}

impl Upstream {
    /// Builds the client: no automatic redirects (followed here, so credentials never leak to
    /// another host and targets are checked), the header timeout also bounding the connect,
    /// the outbound proxy, and a DNS resolver that enforces the [`Guard`] on other hosts.
    pub fn new(settings: UpstreamSettings) -> Result<Upstream, String> {
        Self::with_guard(settings, |_| {})
    }

    /// [`Upstream::new`] with the guard adjusted by `tweak` (tests make a local upstream
    /// count as public).
    fn with_guard(
        settings: UpstreamSettings,
        tweak: impl FnOnce(&mut Guard),
    ) -> Result<Upstream, String> {
        let base = Url::parse(&settings.url)
            .map_err(|e| format!("upstream {}: url {:?}: {e}", settings.host, settings.url))?;
        let mut guard = Guard::new(
            &base,
            settings.proxy.as_deref(),
            settings.allow_private_redirects,
        );
        tweak(&mut guard);
        let guard = Arc::new(guard);
        let mut builder = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = &settings.proxy {
            let proxy = reqwest::Proxy::all(p)
                .map_err(|e| format!("upstream {}: proxy {p:?}: {e}", settings.host))?
                .no_proxy(reqwest::NoProxy::from_env());
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| format!("upstream {}: cannot build HTTP client: {e}", settings.host))?;
        Ok(Upstream {
            settings,
            base,
            client,
            guard,
            tokens: TokenCache::default(),
            down_until: Mutex::new(None),
        })
    }

    /// The host this upstream stands for.
    pub fn host(&self) -> &str {
        &self.settings.host
    }

    /// Whether this upstream is Docker Hub, whose one-segment names live under `library/`.
    pub fn is_docker_hub(&self) -> bool {
        self.settings.host == "docker.io"
    }

    /// Whether the upstream failed recently (requests with a cached fallback skip it).
    pub fn is_down(&self) -> bool {
        let until = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| t > Instant::now())
    }

    fn note_result(&self, result: &Result<Response, UpstreamError>) {
        let down = match result {
            Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                Some(retry_after(r.headers()).unwrap_or(DOWN_FOR))
            }
            Ok(r) if r.status().is_server_error() => Some(DOWN_FOR),
            Ok(_) => None,
            Err(e) if e.is_transient() => Some(DOWN_FOR),
            Err(_) => None,
        };
        let mut until = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        *until = down.map(|d| Instant::now() + d.min(MAX_RETRY_AFTER));
    }

    fn url(&self, path: &str) -> Result<Url, UpstreamError> {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}"))
            .map_err(|e| UpstreamError::Invalid(format!("bad URL {base}{path}: {e}")))
    }

    /// The Authorization header for `scope`, from what the upstream asked for before.
    async fn authorization(
        &self,
        scope: &str,
        refresh: bool,
    ) -> Result<Option<String>, UpstreamError> {
        match self.tokens.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.basic()),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if refresh {
                    self.tokens.forget(scope);
                } else if let Some(t) = self.tokens.token(scope) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let creds = self.realm_credentials(&realm).await?;
                let token = self
                    .tokens
                    .fetch(
                        &self.client,
                        &realm,
                        service.as_deref(),
                        scope,
                        creds,
                        self.settings.timeout,
                    )
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The credentials to send to a token `realm`, after checking the realm may be asked at
    /// all: a realm on another host must be a public address ([`Guard`]; refused and logged
    /// otherwise), and credentials only go to an https realm or one on the upstream's own host
    /// (a plain-http realm elsewhere is asked anonymously, with one warning per realm).
    async fn realm_credentials(
        &self,
        realm: &str,
    ) -> Result<Option<&(String, String)>, UpstreamError> {
        let url = Url::parse(realm)
            .map_err(|e| UpstreamError::Invalid(format!("token realm {realm:?}: {e}")))?;
        let own_host = url.host_str().is_some_and(|h| self.guard.is_own_host(h));
        if !own_host {
            if let Err(e) = self.guard.check_url(&url, self.settings.timeout).await {
                tracing::warn!(upstream = self.host(), realm, error = %e, "token realm refused");
                return Err(e);
            }
        }
        let Some(creds) = &self.settings.credentials else {
            return Ok(None);
        };
        if own_host || url.scheme() == "https" {
            return Ok(Some(creds));
        }
        if self.tokens.first_warning(realm) {
            tracing::warn!(
                upstream = self.host(),
                realm,
                "token realm is plain http on another host; asking it for tokens without the upstream's credentials"
            );
        }
        Ok(None)
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine;
        self.settings.credentials.as_ref().map(|(u, p)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {encoded}")
        })
    }

    /// Sends one request (authenticating, following redirects) and returns the final response,
    /// whatever its status. `scope` is the token scope (`repository:<name>:pull`).
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &HeaderMap,
    ) -> Result<Response, UpstreamError> {
        // A remembered challenge may be stale (its realm moved, or was refused): without a
        // token, ask anyway, and the upstream's 401 names the realm to use now.
        let mut auth = match self.authorization(scope, false).await {
            Ok(auth) => auth,
            Err(e) => {
                tracing::debug!(upstream = self.host(), error = %e, "no token from the remembered challenge; asking for a new one");
                None
            }
        };
        let mut refreshed = false;
        loop {
            let response = self
                .follow(method.clone(), self.url(path)?, headers, auth.as_deref())
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(response);
            }
            let Some(challenge) = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge)
            else {
                return Ok(response);
            };
            if challenge == Challenge::Basic && self.settings.credentials.is_none() {
                return Ok(response);
            }
            self.tokens.set_challenge(challenge);
            refreshed = true;
            auth = self.authorization(scope, true).await?;
        }
    }

    /// Sends a request, following redirects by hand: a redirect to another origin (a CDN with
    /// a signed URL) is fetched without the `Authorization` header, and one to another host
    /// only when the [`Guard`] allows its addresses (a refusal is logged with the target).
    async fn follow(
        &self,
        method: Method,
        mut url: Url,
        headers: &HeaderMap,
        auth: Option<&str>,
    ) -> Result<Response, UpstreamError> {
        let timeout = self.settings.timeout;
        for _ in 0..=MAX_REDIRECTS {
            // The scheme counts too: credentials never go from https down to plain http.
            let same_origin = url.scheme() == self.base.scheme()
                && url.host_str() == self.base.host_str()
                && url.port_or_known_default() == self.base.port_or_known_default();
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let (Some(a), true) = (auth, same_origin) {
                request = request.header(header::AUTHORIZATION, a);
            }
            let response = match tokio::time::timeout(timeout, request.send()).await {
                Err(_) => return Err(UpstreamError::Timeout(timeout)),
                Ok(Err(e)) => return Err(self.refused_or(send_error(&e, timeout), &url)),
                Ok(Ok(r)) => r,
            };
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED
            {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| UpstreamError::Invalid("redirect without Location".into()))?;
            url = url
                .join(location)
                .map_err(|e| UpstreamError::Invalid(format!("redirect to {location:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(UpstreamError::Invalid(format!("redirect to {url}")));
            }
            if let Err(e) = self.guard.check_url(&url, timeout).await {
                return Err(self.refused_or(e, &url));
            }
        }
        Err(UpstreamError::Invalid("too many redirects".into()))
    }

    /// `e`, logged with the target when it is a refusal by the [`Guard`].
    fn refused_or(&self, e: UpstreamError, target: &Url) -> UpstreamError {
        if let UpstreamError::Refused(reason) = &e {
            let target = loggable(target);
            tracing::warn!(upstream = self.host(), target, reason, "redirect refused");
        }
        e
    }

    /// Sends with retries when `cold` (nothing cached to fall back on); with a fallback, one
    /// attempt, skipped while the upstream is marked down. Non-success statuses are errors.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
        cold: bool,
    ) -> Result<Response, UpstreamError> {
        if !cold && self.is_down() {
            return Err(UpstreamError::Down);
        }
        let attempts = if cold { COLD_ATTEMPTS } else { 1 };
        let mut last = UpstreamError::Down;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let result = self.send_once(method.clone(), path, scope, &headers).await;
            self.note_result(&result);
            let error = match result {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) => UpstreamError::Status {
                    status: r.status().as_u16(),
                    retry_after: retry_after(r.headers()),
                },
                Err(e) => e,
            };
            tracing::debug!(upstream = self.host(), path, attempt, error = %error, "upstream request failed");
            if !error.is_transient() {
                return Err(error);
            }
            last = error;
        }
        Err(last)
    }

    /// HEAD of a manifest: its digest (`Docker-Content-Digest`), if the upstream sends it.
    pub async fn head_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        cold: bool,
    ) -> Result<Option<Digest>, UpstreamError> {
        let response = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/manifests/{reference}"),
                &pull_scope(repo),
                accept_manifests(),
                cold,
            )
            .await?;
        Ok(content_digest(response.headers()))
    }

    /// GET of a manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        cold: bool,
    ) -> Result<RemoteManifest, UpstreamError> {
        let response = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
                &pull_scope(repo),
                accept_manifests(),
                cold,
            )
            .await?;
        let digest = content_digest(response.headers());
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let body = self.small_body(response, MAX_MANIFEST, "manifest").await?;
        Ok(RemoteManifest {
            body,
            content_type,
            digest,
        })
    }

    /// HEAD of a blob: its size.
    pub async fn head_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let response = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                &pull_scope(repo),
                HeaderMap::new(),
                true,
            )
            .await?;
        Ok(response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// GET of a blob from `offset` (a `Range` request when not 0). The caller checks whether
    /// the answer is 206 (resumed) or 200 (whole blob).
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
    ) -> Result<Response, UpstreamError> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
            headers.insert(header::RANGE, range);
        }
        self.send(
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            &pull_scope(repo),
            headers,
            true,
        )
        .await
    }

    /// Every tag of a repository, following `Link` pages (bounded); `cold` when no tag list is
    /// cached to fall back on.
    pub async fn tags(&self, repo: &RepoName, cold: bool) -> Result<Vec<String>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut all = Vec::new();
        let mut total = 0;
        let mut path = format!("/v2/{repo}/tags/list?n=1000");
        for _ in 0..100 {
            let response = self
                .send(
                    Method::GET,
                    &path,
                    &pull_scope(repo),
                    HeaderMap::new(),
                    cold,
                )
                .await?;
            let next = next_link(response.headers());
            let body = self
                .small_body(response, MAX_TAG_PAGE, "tag list page")
                .await?;
            // Pages are bounded one by one, and so is the list they add up to.
            total += body.len();
            if total > MAX_TAG_LIST {
                tracing::warn!(upstream = self.host(), %repo, limit = MAX_TAG_LIST, "upstream tag list exceeds its size limit; dropped");
                return Err(UpstreamError::TooLarge {
                    what: "tag list",
                    limit: MAX_TAG_LIST,
                });
            }
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| UpstreamError::Invalid(format!("tag list: {e}")))?;
            all.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => path = n,
                None => break,
            }
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Reads a body of at most `limit` bytes, stopping as soon as more arrives.
    pub(crate) async fn small_body(
        &self,
        response: Response,
        limit: usize,
        what: &'static str,
    ) -> Result<Bytes, UpstreamError> {
        let timeout = self.settings.timeout.max(MIN_BODY_TIME);
        read_limited(response, limit, what, timeout).await
    }
}

/// A failed `send` as an upstream error: a timeout, a connection the [`Guard`]'s resolver
/// refused, or an unreachable host.
pub(crate) fn send_error(e: &reqwest::Error, timeout: Duration) -> UpstreamError {
    if e.is_timeout() {
        return UpstreamError::Timeout(timeout);
    }
    match crate::guard::refusal(e) {
        Some(reason) => UpstreamError::Refused(reason),
        None => UpstreamError::Unreachable(error_chain(e)),
    }
}

/// `repository:<name>:pull`.
pub(crate) fn pull_scope(repo: &RepoName) -> String {
    format!("repository:{repo}:pull")
}

fn accept_manifests() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
    h
}

fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries and ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The path and query of a `Link: </v2/x/tags/list?n=1&last=a>; rel="next"` header (only
/// a `/v2/` path: a link elsewhere is not followed).
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::LINK)?.to_str().ok()?;
    let target = value.split('>').next()?.trim().trim_start_matches('<');
    if !value.contains("rel=\"next\"") && !value.contains("rel=next") {
        return None;
    }
    let url = Url::parse("http://x/").ok()?.join(target).ok()?;
    let path = url.path();
    if !path.starts_with("/v2/") {
        return None;
    }
    Some(match url.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    })
}

/// `url` for the log: without its query, which for a CDN redirect is a signature.
pub(crate) fn loggable(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// A reqwest error with its causes (the top level often just says "error sending request").
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod hostile_tests;

#[cfg(test)]
mod tests {
    use berth_oci::media_types;

    use super::*;

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static("</v2/a/tags/list?n=2&last=b>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/a/tags/list?n=2&last=b"));
        h.insert(
            header::LINK,
            HeaderValue::from_static("<https://other/v2/a/tags/list?last=c>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/a/tags/list?last=c"));
        h.insert(header::LINK, HeaderValue::from_static("</x>; rel=\"next\""));
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn media_types_are_all_accepted() {
        for t in [
            media_types::OCI_INDEX,
            media_types::OCI_MANIFEST,
            media_types::DOCKER_MANIFEST,
            media_types::DOCKER_MANIFEST_LIST,
        ] {
            assert!(ACCEPT_MANIFESTS.contains(t), "{t}");
        }
    }
}
