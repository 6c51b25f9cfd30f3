//! The identity provider as the UI talks to it: discovery (`.well-known/openid-configuration`),
//! its signing keys (JWKS, cached, fetched again when a token names an unknown key, at most
//! once per [`JWKS_REFETCH`]), the code exchange at its token endpoint, and the verification
//! of ID tokens (signature, `iss`, `aud`, `azp`, `exp`; the caller checks the `nonce`). Every
//! answer from the provider is read with a size bound, and redirects are not followed.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

/// The most bytes read from any answer of the provider.
const MAX_BODY: usize = 256 * 1024;
/// The most keys kept from a JWKS.
const MAX_KEYS: usize = 64;
/// How long a discovery document is used before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long a failed discovery is answered from memory: sign-ins while the provider is down
/// fail at once instead of each waiting for a timeout in turn.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// The shortest time between two JWKS fetches caused by unknown key ids.
const JWKS_REFETCH: Duration = Duration::from_secs(10);
/// Each request to the provider.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp` and `iat`.
const LEEWAY: u64 = 60;
/// The signature algorithms accepted: asymmetric only (never `none` or HMAC with a public key),
/// the same as for registry tokens.
const ALGORITHMS: &[Algorithm] = &berth_auth::token::ACCEPTED_ALGORITHMS;

/// Why talking to the provider, or accepting its answer, failed. The text is shown to the
/// operator in the log and, without secrets, to the user on the error page.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached or answered with an error status.
    #[error("the identity provider cannot be reached at {url}: {message}")]
    Unreachable {
        /// What was asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// An answer that is not what the protocol says.
    #[error("the identity provider's answer from {url} is not usable: {message}")]
    BadAnswer {
        /// What was asked for.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The provider refused the code exchange (wrong client secret, reused code, a PKCE
    /// verifier that does not match).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The ID token is not valid.
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
}

/// What a token request gave: the verified ID token's claims and the token (absent when a
/// refresh answer carries none) and the refresh token, when the provider issued one.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The verified claims of the ID token.
    pub claims: Option<Map<String, Value>>,
    /// The ID token.
    pub id_token: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
}

/// The refresh token of a token response, when it is a plausible one (bounded: it is kept in
/// memory for the session's life).
fn refresh_token_of(json: &Value) -> Option<String> {
    json.get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= 8192)
        .map(str::to_owned)
}

/// The endpoints discovery found.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    /// `issuer` as the provider names itself.
    pub issuer: String,
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: String,
    /// Where the code is exchanged for tokens.
    pub token_endpoint: String,
    /// The signing keys.
    pub jwks_uri: String,
    /// Token revocation (RFC 7009), when the provider has it.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RP-initiated logout, when the provider has it.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// The PKCE methods the provider lists (absent: unknown).
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// The provider, with what was learned from it.
pub struct Provider {
    /// The issuer URL discovery starts from (`auth.oidc.realm`).
    realm: String,
    /// The `iss` ID tokens must carry.
    issuer: String,
    /// This client's id, the audience of its ID tokens.
    client_id: String,
    http: reqwest::Client,
    discovered: Mutex<Discovery>,
    keys: Mutex<Keys>,
}

/// The last discovery: its endpoints, or its failure (message and when).
#[derive(Default)]
struct Discovery {
    endpoints: Option<(Endpoints, Instant)>,
    failed: Option<(ProviderError, Instant)>,
}

/// The cached JWKS.
#[derive(Default)]
struct Keys {
    set: Vec<Jwk>,
    fetched: Option<Instant>,
}

impl Provider {
    /// A provider at `realm` whose ID tokens name `issuer` and are for `client_id`.
    pub fn new(realm: &str, issuer: &str, client_id: &str) -> Result<Provider, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Unreachable {
                url: realm.to_owned(),
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Provider {
            realm: realm.to_owned(),
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            http,
            discovered: Mutex::new(Discovery::default()),
            keys: Mutex::new(Keys::default()),
        })
    }

    /// The endpoints, from the cached discovery document or a fresh one.
    pub async fn endpoints(&self) -> Result<Endpoints, ProviderError> {
        let mut cached = self.discovered.lock().await;
        if let Some((endpoints, at)) = cached.endpoints.as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(endpoints.clone());
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.realm.trim_end_matches('/')
        );
        if let Some((error, at)) = cached.failed.as_ref() {
            if at.elapsed() < DISCOVERY_RETRY {
                return Err(error.clone());
            }
        }
        let result = self.discover(&url).await;
        match &result {
            Ok(endpoints) => {
                cached.endpoints = Some((endpoints.clone(), Instant::now()));
                cached.failed = None;
            }
            Err(e) => cached.failed = Some((e.clone(), Instant::now())),
        }
        result
    }

    /// Reads and checks the discovery document at `url`.
    async fn discover(&self, url: &str) -> Result<Endpoints, ProviderError> {
        let url = url.to_owned();
        let body = self.get(&url).await?;
        let endpoints: Endpoints =
            serde_json::from_slice(&body).map_err(|e| ProviderError::BadAnswer {
                url: url.clone(),
                message: format!("not an OpenID Provider configuration: {e}"),
            })?;
        if endpoints.issuer != self.issuer {
            return Err(ProviderError::BadAnswer {
                url,
                message: format!(
                    "it names the issuer {:?}, the configuration expects {:?} (set auth.oidc.issuer)",
                    endpoints.issuer, self.issuer
                ),
            });
        }
        if let Some(methods) = &endpoints.code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                return Err(ProviderError::BadAnswer {
                    url,
                    message: "it does not support PKCE with S256".to_owned(),
                });
            }
        }
        Ok(endpoints)
    }

    /// Exchanges `code` for tokens and returns the verified ID token's claims (the caller
    /// checks the nonce), the ID token itself (the hint of a logout at the provider) and the
    /// refresh token when the provider issued one. `secret`: the client secret, sent with HTTP
    /// Basic as the provider's default `client_secret_basic` wants; `None` for a public client.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        secret: Option<&str>,
    ) -> Result<Tokens, ProviderError> {
        let endpoints = self.endpoints().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let json = self
            .token_request(&endpoints.token_endpoint, &form, secret)
            .await?;
        let id_token = json
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::BadAnswer {
                url: endpoints.token_endpoint.clone(),
                message: "no id_token in the token response (is `openid` among the scopes?)"
                    .to_owned(),
            })?;
        let claims = self.verify(id_token, &endpoints).await?;
        Ok(Tokens {
            claims: Some(claims),
            id_token: Some(id_token.to_owned()),
            refresh_token: refresh_token_of(&json),
        })
    }

    /// Redeems a refresh token (RFC 6749 section 6): the provider says whether the user's grant
    /// still holds (a refusal means it does not: signed out, disabled, revoked) and, in a new
    /// ID token, what the user's claims are now. The new ID token is verified as at sign-in
    /// (its `sub` is compared by the caller); a provider may answer without one, and may
    /// rotate the refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        secret: Option<&str>,
    ) -> Result<Tokens, ProviderError> {
        let endpoints = self.endpoints().await?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let json = self
            .token_request(&endpoints.token_endpoint, &form, secret)
            .await?;
        let id_token = json.get("id_token").and_then(Value::as_str);
        let claims = match id_token {
            Some(token) => Some(self.verify(token, &endpoints).await?),
            None => None,
        };
        Ok(Tokens {
            claims,
            id_token: id_token.map(str::to_owned),
            refresh_token: refresh_token_of(&json),
        })
    }

    /// Revokes `token` (a refresh token) at the provider's revocation endpoint (RFC 7009);
    /// nothing to do when the provider has none.
    pub async fn revoke(&self, token: &str, secret: Option<&str>) -> Result<(), ProviderError> {
        let endpoints = self.endpoints().await?;
        let Some(url) = endpoints.revocation_endpoint else {
            return Ok(());
        };
        let form = [("token", token), ("token_type_hint", "refresh_token")];
        self.token_request(&url, &form, secret).await.map(|_| ())
    }

    /// A form POST with the client's authentication to `url` (the token or the revocation
    /// endpoint); the JSON answer (`null` when empty), or the provider's refusal (`error` and
    /// `error_description`). A server error or a 429 counts as the provider being
    /// unreachable (try again later), not as a refusal.
    async fn token_request(
        &self,
        url: &str,
        form: &[(&str, &str)],
        secret: Option<&str>,
    ) -> Result<Value, ProviderError> {
        let mut form = form.to_vec();
        let mut request = self.http.post(url);
        match secret {
            Some(secret) => {
                request =
                    request.basic_auth(form_encode(&self.client_id), Some(form_encode(secret)))
            }
            None => form.push(("client_id", &self.client_id)),
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = request
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(url, &e))?;
        let status = response.status();
        let bytes = read_bounded(response, url).await?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::Unreachable {
                url: url.to_owned(),
                message: format!("HTTP {status}"),
            });
        }
        if !status.is_success() {
            let text = |k: &str| json.get(k).and_then(Value::as_str).unwrap_or("");
            let error = text("error");
            let description = text("error_description");
            return Err(ProviderError::Refused(if error.is_empty() {
                format!("HTTP {status} from the token endpoint")
            } else {
                format!("{error} {description}").trim().to_owned()
            }));
        }
        Ok(json)
    }

    /// The claims of `token` when it is signed by one of the provider's keys with an
    /// asymmetric algorithm and names this issuer and client and has not expired.
    pub async fn verify(
        &self,
        token: &str,
        endpoints: &Endpoints,
    ) -> Result<Map<String, Value>, ProviderError> {
        let invalid = |m: String| ProviderError::InvalidToken(m);
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("its header: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(invalid(format!(
                "signed with {:?}, which is not accepted",
                header.alg
            )));
        }
        let jwk = self
            .key(header.kid.as_deref(), header.alg, &endpoints.jwks_uri)
            .await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(format!("its key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| invalid(e.to_string()))?;
        let claims = data.claims;
        // With several audiences the token must be issued to this client (OIDC Core 3.1.3.7).
        if let Some(Value::Array(audiences)) = claims.get("aud") {
            let azp = claims.get("azp").and_then(Value::as_str);
            if audiences.len() > 1 && azp != Some(self.client_id.as_str()) {
                return Err(invalid(
                    "several audiences and an azp that is not this client".into(),
                ));
            }
        }
        Ok(claims)
    }

    /// The key `kid` for `alg`: from the cache, else after fetching the JWKS again (at most
    /// once per [`JWKS_REFETCH`], so forged key ids cannot make the UI hammer the provider).
    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        jwks_uri: &str,
    ) -> Result<Jwk, ProviderError> {
        let mut keys = self.keys.lock().await;
        if let Some(jwk) = pick(&keys.set, kid, alg) {
            return Ok(jwk);
        }
        if keys.fetched.is_some_and(|at| at.elapsed() < JWKS_REFETCH) {
            return Err(ProviderError::InvalidToken(format!(
                "signed with a key the provider does not list (kid {kid:?})"
            )));
        }
        keys.fetched = Some(Instant::now());
        let body = self.get(jwks_uri).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| ProviderError::BadAnswer {
            url: jwks_uri.to_owned(),
            message: format!("not a JSON Web Key Set: {e}"),
        })?;
        keys.set = set.keys.into_iter().take(MAX_KEYS).collect();
        pick(&keys.set, kid, alg).ok_or_else(|| {
            ProviderError::InvalidToken(format!(
                "signed with a key the provider does not list (kid {kid:?})"
            ))
        })
    }

    /// A bounded `GET` of a JSON document.
    async fn get(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        let response = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unreachable(url, &e))?;
        if !response.status().is_success() {
            return Err(ProviderError::Unreachable {
                url: url.to_owned(),
                message: format!("HTTP {}", response.status()),
            });
        }
        read_bounded(response, url).await
    }
}

/// The key of `set` that `kid` names (or the only key, when the token names none) and that
/// may verify `alg`: a key marked for another algorithm or for encryption is never used.
fn pick(set: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let usable = |k: &&Jwk| {
        let for_alg = k
            .common
            .key_algorithm
            .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"));
        let for_signing = !matches!(
            k.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        );
        for_alg && for_signing
    };
    match kid {
        Some(kid) => set
            .iter()
            .filter(usable)
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => {
            let mut candidates = set.iter().filter(usable);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
    }
}

/// Reads at most [`MAX_BODY`] bytes of `response`; more is an error.
async fn read_bounded(
    mut response: reqwest::Response,
    url: &str,
) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(url, &e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::BadAnswer {
                url: url.to_owned(),
                message: format!("the answer is larger than {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unreachable(url: &str, e: &reqwest::Error) -> ProviderError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ProviderError::Unreachable {
        url: url.to_owned(),
        message,
    }
}

/// What [`form_encode`] leaves as is: RFC 3986's unreserved characters.
const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `application/x-www-form-urlencoded` encoding of one value (also what RFC 6749 §2.3.1 asks
/// for the client id and secret in HTTP Basic).
pub fn form_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, FORM).to_string()
}
