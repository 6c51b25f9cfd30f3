//! Upstream authentication: the `WWW-Authenticate` challenge (Basic, or Bearer with realm,
//! service and scope as Docker Hub, ghcr.io and quay.io send it), tokens fetched anonymously or
//! with basic credentials and cached per scope until they expire. Which realms may be asked, and
//! which get the credentials (https ones, or one on the upstream's own host), the upstream
//! decides (`Upstream::realm_credentials`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::body::{error_excerpt, read_limited, MAX_TOKEN_RESPONSE};

/// Longest wait for the body of a refusal that is read for the log.
const ERROR_READ_TIME: Duration = Duration::from_secs(1);

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`: send the credentials with every request.
    Basic,
    /// `Bearer realm="...",service="...",scope="..."`: fetch a token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` to ask a token for.
        service: Option<String>,
        /// The `scope` the request needed, when the upstream says.
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
/// scope="repository:library/alpine:pull"` or `Basic realm="x"`. Unknown schemes are `None`.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let realm = get("realm")?;
    if !(realm.starts_with("https://") || realm.starts_with("http://")) {
        return None;
    }
    Some(Challenge::Bearer {
        realm,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k="v", k2=v2` with quoted values that may contain commas (scopes do) and `\"` escapes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

/// The token endpoint's answer (Docker's token spec; OAuth2 servers say `access_token`).
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Tokens live this long when the server does not say (the spec's default).
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire, so a request never carries a stale one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Cached tokens beyond this count are dropped (one per repository pulled).
const MAX_TOKENS: usize = 10_000;
/// Realms remembered as already warned about; beyond this the memory starts over (an upstream
/// naming a new realm on every answer only gets its warnings repeated).
const MAX_WARNED_REALMS: usize = 64;

/// What an upstream asked for last, and the tokens fetched for it, by scope.
#[derive(Default)]
pub struct TokenCache {
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    warned: Mutex<HashSet<String>>,
}

impl TokenCache {
    /// The challenge seen last, so later requests authenticate without a 401 round trip.
    pub fn challenge(&self) -> Option<Challenge> {
        self.challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Remembers the upstream's challenge.
    pub fn set_challenge(&self, c: Challenge) {
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    /// A cached, unexpired token for `scope`.
    pub fn token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(scope)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    /// Forgets the token of `scope` (the upstream refused it).
    pub fn forget(&self, scope: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(scope);
    }

    /// Whether `realm` was not warned about yet (and now counts as warned): a warning about a
    /// realm is logged once, not on every token fetch.
    pub fn first_warning(&self, realm: &str) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.contains(realm) {
            return false;
        }
        if warned.len() >= MAX_WARNED_REALMS {
            warned.clear();
        }
        warned.insert(realm.to_owned())
    }

    fn store(&self, scope: &str, token: String, life: Duration) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        let until = Instant::now()
            + life
                .saturating_sub(EXPIRY_MARGIN)
                .max(Duration::from_secs(1));
        tokens.insert(scope.to_owned(), (token, until));
    }

    /// Fetches a token for `scope` from the Bearer challenge's realm, anonymously or with
    /// `creds`, and caches it. Errors are the token endpoint's status or transport failure, an
    /// answer over [`MAX_TOKEN_RESPONSE`] (1 MiB, read no further), or one without a token.
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&(String, String)>,
        timeout: Duration,
    ) -> Result<String, crate::UpstreamError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        let mut request = client.get(realm).query(&query);
        if let Some((user, password)) = creds {
            request = request.basic_auth(user, Some(password));
        }
        let response = tokio::time::timeout(timeout, request.send())
            .await
            .map_err(|_| crate::UpstreamError::Timeout(timeout))?
            .map_err(|e| match crate::upstream::send_error(&e, timeout) {
                crate::UpstreamError::Unreachable(why) => {
                    crate::UpstreamError::Unreachable(format!("token endpoint: {why}"))
                }
                other => other,
            })?;
        let status = response.status();
        if !status.is_success() {
            // The token server's words help the operator (bad password, unknown scope).
            let detail = error_excerpt(response, timeout.min(ERROR_READ_TIME)).await;
            tracing::warn!(
                realm,
                status = status.as_u16(),
                detail,
                "token endpoint refused"
            );
            return Err(crate::UpstreamError::Status {
                status: status.as_u16(),
                retry_after: None,
            });
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE, "token response", timeout).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| crate::UpstreamError::Invalid(format!("token response: {e}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| crate::UpstreamError::Invalid("token response has no token".into()))?;
        let life = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFE)
            .max(DEFAULT_TOKEN_LIFE);
        self.store(scope, token.clone(), life);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
    }

    #[test]
    fn parses_scopes_with_commas_spaces_and_escapes() {
        let c = parse_challenge(
            r#"bearer  realm="http://127.0.0.1:1/t" , scope="repository:a/b:pull,push", service=reg, x="q\"uote""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn other_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None, "no realm");
        assert_eq!(
            parse_challenge(r#"Bearer realm="file:///etc/passwd""#),
            None
        );
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn realms_are_warned_about_once() {
        let cache = TokenCache::default();
        assert!(cache.first_warning("http://a/token"));
        assert!(!cache.first_warning("http://a/token"));
        assert!(cache.first_warning("http://b/token"));
        // A flood of realms cannot grow the memory without bound.
        for i in 0..10 * MAX_WARNED_REALMS {
            cache.first_warning(&format!("http://r{i}/token"));
        }
        let warned = cache.warned.lock().unwrap_or_else(|e| e.into_inner()).len();
        assert!(warned <= MAX_WARNED_REALMS, "{warned}");
    }

    #[test]
    fn tokens_expire() {
        let cache = TokenCache::default();
        cache.store("s", "t".into(), Duration::from_secs(60));
        assert_eq!(cache.token("s").as_deref(), Some("t"));
        cache.store("s", "t".into(), Duration::from_secs(0));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(cache.token("s"), None);
        cache.store("s", "t".into(), Duration::from_secs(60));
        cache.forget("s");
        assert_eq!(cache.token("s"), None);
    }
}
