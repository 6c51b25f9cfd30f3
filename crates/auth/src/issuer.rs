//! The built-in token server (a Berth extension), so that operators need no separate token
//! service: it answers the Docker token protocol — `GET` with query parameters and Basic
//! auth, and containerd's OAuth2 `POST` with `grant_type=password` — and issues ES256 JWTs
//! that a [`TokenController`] verifies.
//!
//! Callers log in with an htpasswd user or a service account (a long-lived secret read
//! from a file, sent as the Basic password), or not at all (anonymous). The token grants the
//! requested scopes intersected with the [`AccessRules`]: an action that is not allowed is
//! dropped and the answer is still 200, as docker_auth does; the registry then answers 401
//! `insufficient_scope` if the client needs it anyway.

mod signing;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use signing::SigningKeyError;

use crate::htpasswd::{
    client_text, limited_login, parse_basic, HtpasswdError, HtpasswdFile, Verifier,
};
use crate::limiter::FailureLimiter;
use crate::personal::{PersonalTokens, TOKEN_PREFIX};
use crate::rules::{AccessRules, Principal, Rule};
use crate::token::{Audience, Claims, ResourceActions, TokenController, TokenError, TokenOptions};
use crate::{Access, AuthRequest, Denied, Resource};

/// The challenge the token endpoint answers wrong credentials with.
pub const TOKEN_REALM_CHALLENGE: &str = "Basic realm=\"berth token service\"";
/// Default token lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Shortest lifetime: clients treat anything shorter as 60 s anyway (token spec).
const MIN_TTL: Duration = Duration::from_secs(60);
/// Failed logins allowed per client before it is refused, and for how long.
const DEFAULT_MAX_FAILURES: u32 = 10;
const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// The built-in token server's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinConfig {
    /// htpasswd file (bcrypt) of users; without it only service accounts and anonymous
    /// callers get tokens.
    #[serde(default)]
    pub htpasswd: Option<PathBuf>,
    /// PEM file of the P-256 key that signs tokens; created (mode 0600) if missing.
    pub signingkey: PathBuf,
    /// Token lifetime, e.g. `5m` (at least 60 s).
    #[serde(default = "default_ttl", deserialize_with = "duration")]
    pub ttl: Duration,
    /// Long-lived credentials for automation.
    #[serde(default)]
    pub serviceaccounts: Vec<ServiceAccount>,
    /// Access rules (see [`crate::rules`]).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Users who may do everything.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Groups (from an OIDC sign-in) whose members may do everything.
    #[serde(default)]
    pub admin_groups: Vec<String>,
}

/// A service account: log in with `name` and the secret in `tokenfile`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    /// The user name.
    pub name: String,
    /// File holding the secret (surrounding whitespace ignored); read at start.
    pub tokenfile: PathBuf,
}

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

/// A humantime string (`5m`, `1h 30m`) or a number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// A [`NameResolver`] that `#[derive(Debug)]` can print.
struct Resolver(NameResolver);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameResolver")
    }
}

/// A [`PersonalTokens`] store that `#[derive(Debug)]` can print.
struct Personal(Arc<dyn PersonalTokens>);

impl std::fmt::Debug for Personal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonalTokens")
    }
}

/// Why the issuer cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The signing key is not usable.
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    /// The htpasswd file is not usable.
    #[error(transparent)]
    Htpasswd(#[from] HtpasswdError),
    /// A service account's token file cannot be used.
    #[error("service account {name}: {message}")]
    ServiceAccount {
        /// The account.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Something else in the configuration.
    #[error("token issuer: {0}")]
    Config(String),
}

/// The token endpoint's answer (`200 application/json`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT (Docker's field).
    pub token: String,
    /// The same JWT (OAuth2's field).
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// When it was issued, RFC 3339 UTC.
    pub issued_at: String,
}

impl std::fmt::Debug for TokenResponse {
    /// Never shows the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// Maps a repository name as a client writes it to the name it is stored under
/// (`alpine` → `docker.io/library/alpine` with a default upstream); `None` when it is the same.
pub type NameResolver = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The built-in token server.
#[derive(Debug)]
pub struct TokenIssuer {
    /// How requested names resolve; set once the pull-through cache exists.
    names: std::sync::OnceLock<Resolver>,
    /// Personal access tokens of OIDC users; set once the web UI's store exists.
    personal: std::sync::OnceLock<Personal>,
    service: String,
    issuer: String,
    ttl: Duration,
    rules: Arc<AccessRules>,
    users: Option<Verifier>,
    /// (name, sha256 of the secret).
    accounts: Vec<(String, [u8; 32])>,
    limiter: Arc<FailureLimiter>,
    key: signing::SigningKey,
}

impl TokenIssuer {
    /// Loads (or creates) the signing key, the htpasswd file and the service account
    /// secrets. `service` and `issuer` become every token's `aud` and `iss`.
    pub fn new(config: BuiltinConfig, service: &str, issuer: &str) -> Result<Self, IssuerError> {
        if service.is_empty() || issuer.is_empty() {
            return Err(IssuerError::Config("service and issuer must be set".into()));
        }
        if config.ttl < MIN_TTL {
            return Err(IssuerError::Config(format!(
                "ttl {} is too short: tokens must live at least 60s",
                humantime::format_duration(config.ttl)
            )));
        }
        let key = signing::SigningKey::load_or_create(&config.signingkey)?;
        let users = match &config.htpasswd {
            Some(path) => Some(Verifier::new(HtpasswdFile::open(path)?)),
            None => None,
        };
        let mut accounts = Vec::new();
        for account in &config.serviceaccounts {
            let bad = |message: String| IssuerError::ServiceAccount {
                name: account.name.clone(),
                message,
            };
            if account.name.is_empty() || account.name.contains(':') {
                return Err(bad("the name must be non-empty and contain no ':'".into()));
            }
            let secret = std::fs::read_to_string(&account.tokenfile)
                .map_err(|e| bad(format!("{}: {e}", account.tokenfile.display())))?;
            let secret = secret.trim();
            if secret.len() < 16 {
                return Err(bad(format!(
                    "{}: the secret must be at least 16 characters",
                    account.tokenfile.display()
                )));
            }
            accounts.push((
                account.name.clone(),
                Sha256::digest(secret.as_bytes()).into(),
            ));
        }
        Ok(TokenIssuer {
            names: std::sync::OnceLock::new(),
            personal: std::sync::OnceLock::new(),
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            ttl: config.ttl,
            rules: Arc::new(
                AccessRules::new(config.rules, config.admins)
                    .with_admin_groups(config.admin_groups),
            ),
            users,
            accounts,
            limiter: Arc::new(FailureLimiter::new(
                DEFAULT_MAX_FAILURES,
                DEFAULT_FAILURE_WINDOW,
            )),
            key,
        })
    }

    /// Shares `limiter` (failed logins count across the registry and the token endpoint).
    pub fn with_limiter(mut self, limiter: Arc<FailureLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Makes tokens grant access to the names requested repositories are stored under, with
    /// the rules applied to those names: the registry authorizes the name it actually reads
    /// (Docker asks for `repository:alpine:pull`, but with a default upstream the registry
    /// reads `docker.io/library/alpine`). Only the first call takes effect.
    pub fn resolve_names_with(&self, names: NameResolver) {
        let _ = self.names.set(Resolver(names));
    }

    /// Accepts personal access tokens from `tokens` as passwords (user name + token). Only
    /// the first call takes effect.
    pub fn use_personal_tokens(&self, tokens: Arc<dyn PersonalTokens>) {
        let _ = self.personal.set(Personal(tokens));
    }

    /// Whether `name` is a local account: an htpasswd user or a service account. A user
    /// signing in through an identity provider under such a name is refused, so nobody who
    /// may choose their name at the provider can take a local account's rules (`admins`
    /// included).
    pub fn has_local_account(&self, name: &str) -> bool {
        self.accounts.iter().any(|(account, _)| account == name)
            || self
                .users
                .as_ref()
                .is_some_and(|users| users.has_user(name))
    }

    /// The access rules.
    pub fn rules(&self) -> &Arc<AccessRules> {
        &self.rules
    }

    /// The `kid` of issued tokens (libtrust key ID of the public key).
    pub fn key_id(&self) -> &str {
        &self.key.kid
    }

    /// The public key as a JWK Set, for a registry elsewhere to trust these tokens
    /// (`auth.token.jwks`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "kid": self.key.kid, "x": self.key.xy.0, "y": self.key.xy.1,
        }]})
    }

    /// A registry-side controller trusting this issuer's key, with its rules for the
    /// catalog. `options.service`/`options.issuer` may be empty (then they are this
    /// issuer's) but must not differ; `rootcertbundle`/`jwks`, if set, are trusted too.
    pub fn controller(&self, mut options: TokenOptions) -> Result<TokenController, TokenError> {
        for (given, ours, what) in [
            (&mut options.service, &self.service, "service"),
            (&mut options.issuer, &self.issuer, "issuer"),
        ] {
            if given.is_empty() {
                given.clone_from(ours);
            } else if given != ours {
                return Err(TokenError::Options(format!(
                    "{what} {given:?} differs from the built-in issuer's {ours:?}"
                )));
            }
        }
        let key = self.key.trusted()?;
        Ok(TokenController::with_keys(options, vec![key])?.with_rules(self.rules.clone()))
    }

    /// Answers one token request. `params` are the query (`GET`) or form (`POST`)
    /// parameters; `scope` may repeat and each value may hold several scopes separated by
    /// spaces. Credentials come from the form (`grant_type=password`, `username`,
    /// `password`) or else from `Authorization: Basic`; none means anonymous.
    pub async fn issue(
        &self,
        request: &AuthRequest<'_>,
        params: &[(String, String)],
    ) -> Result<TokenResponse, Denied> {
        let form = TokenParams::parse(params);
        if let Some(service) = form.service {
            if service != self.service {
                return Err(unauthorized(&format!(
                    "this token service issues tokens for {:?}, not {service:?}",
                    self.service
                )));
            }
        }
        let credentials = match form.grant_type {
            Some("password") => match (form.username, form.password) {
                (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
                _ => {
                    return Err(unauthorized(
                        "grant_type=password needs username and password",
                    ))
                }
            },
            Some(other) => {
                return Err(unauthorized(&format!(
                    "unsupported grant_type {other:?}: use password (refresh tokens are not issued)"
                )))
            }
            None => basic_credentials(request.authorization)?,
        };
        let mut groups = Vec::new();
        let mut cap = None;
        let subject = match credentials {
            Some((user, password)) if !(user.is_empty() && password.is_empty()) => {
                match self.personal.get() {
                    Some(Personal(tokens)) if password.starts_with(TOKEN_PREFIX) => {
                        let grant = self
                            .personal_login(tokens.as_ref(), request.client, &user, &password)
                            .await?;
                        groups = grant.groups;
                        cap = Some(grant.actions);
                    }
                    _ => {
                        if !self.login(request.client, &user, &password).await? {
                            return Err(unauthorized("invalid username or password"));
                        }
                    }
                }
                Some(user)
            }
            _ => None,
        };
        let who = Principal {
            user: subject.as_deref(),
            groups: &groups,
        };
        let mut access = self.grant(who, &form.scopes);
        if let Some(cap) = &cap {
            for a in &mut access {
                if matches!(a.resource, Resource::Repository(_)) {
                    a.actions.retain(|wanted| cap.contains(wanted));
                }
            }
        }
        let token = self.sign(
            subject.as_deref().unwrap_or(""),
            &groups,
            &access,
            SystemTime::now(),
        )?;
        tracing::info!(subject = subject.as_deref().unwrap_or("<anonymous>"), client = client_text(request.client),
            granted = %crate::token::scope_param(&access), "token issued");
        Ok(token)
    }

    /// Checks a login through the failure limiter: service accounts first (constant time),
    /// then htpasswd.
    /// Checks a user's password as a token request would (service accounts, then the
    /// htpasswd users), through the failed-login limiter. For logins that do not want a
    /// token, such as the web UI's form.
    pub async fn verify_login(
        &self,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<bool, Denied> {
        self.login(client, user, password).await
    }

    /// Checks a personal access token through the failed-login limiter.
    async fn personal_login(
        &self,
        tokens: &dyn PersonalTokens,
        client: Option<IpAddr>,
        user: &str,
        secret: &str,
    ) -> Result<crate::personal::PersonalGrant, Denied> {
        self.limiter
            .check(client, user)
            .map_err(|retry_after| Denied::TooManyAttempts { retry_after })?;
        // Access tokens belong to users of the identity provider, who may not sign in under a
        // local account's name; a token made before a same-named local account was added
        // would otherwise take that account's rules.
        if self.has_local_account(user) {
            tracing::warn!(
                user,
                client = client_text(client),
                "failed login: a personal access token for a name that is now a local account"
            );
            self.limiter.failed(client, user);
            return Err(unauthorized("invalid username or password"));
        }
        match tokens.check(user, secret).await {
            Some(grant) => {
                self.limiter.succeeded(user);
                Ok(grant)
            }
            None => {
                tracing::info!(
                    user,
                    client = client_text(client),
                    "failed login: not a live personal access token"
                );
                self.limiter.failed(client, user);
                Err(unauthorized("invalid username or password"))
            }
        }
    }

    async fn login(
        &self,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<bool, Denied> {
        if let Some((_, secret)) = self.accounts.iter().find(|(name, _)| name == user) {
            self.limiter
                .check(client, user)
                .map_err(|retry_after| Denied::TooManyAttempts { retry_after })?;
            let given: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            let ok = bool::from(given.ct_eq(secret));
            if ok {
                self.limiter.succeeded(user);
            } else {
                tracing::info!(
                    user,
                    client = client_text(client),
                    "failed service account login"
                );
                self.limiter.failed(client, user);
            }
            return Ok(ok);
        }
        match &self.users {
            Some(users) => limited_login(&self.limiter, users, client, user, password).await,
            None => {
                self.limiter
                    .check(client, user)
                    .map_err(|retry_after| Denied::TooManyAttempts { retry_after })?;
                tracing::info!(
                    user,
                    client = client_text(client),
                    "failed login: no such user"
                );
                self.limiter.failed(client, user);
                Ok(false)
            }
        }
    }

    /// The requested scopes, each on the name it resolves to, cut down by the rules: one
    /// entry per resource.
    fn grant(&self, who: Principal<'_>, requested: &[Access]) -> Vec<Access> {
        let mut merged: Vec<Access> = Vec::new();
        for wanted in requested {
            let resolved = match (&wanted.resource, self.names.get()) {
                (Resource::Repository(name), Some(Resolver(resolve))) => {
                    resolve(name).map(|stored| Access {
                        resource: Resource::Repository(stored),
                        actions: wanted.actions.clone(),
                    })
                }
                _ => None,
            };
            let granted = self
                .rules
                .grant_to(who, resolved.as_ref().unwrap_or(wanted));
            match merged.iter_mut().find(|m| m.resource == granted.resource) {
                Some(m) => {
                    m.actions.extend(granted.actions);
                    m.actions.sort();
                    m.actions.dedup();
                }
                None => merged.push(granted),
            }
        }
        merged
    }

    fn sign(
        &self,
        subject: &str,
        groups: &[String],
        access: &[Access],
        now: SystemTime,
    ) -> Result<TokenResponse, Denied> {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let ttl = self.ttl.as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: Audience(vec![self.service.clone()]),
            exp: secs.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            nbf: secs,
            iat: secs,
            jti: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            access: access.iter().map(ResourceActions::from_access).collect(),
            groups: groups.to_vec(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key.encoding).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            Denied::Forbidden {
                message: "the token service cannot sign tokens".into(),
            }
        })?;
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: ttl,
            issued_at: humantime::format_rfc3339_seconds(now).to_string(),
        })
    }
}

/// The parameters of a token request that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TokenParams<'a> {
    /// `service`.
    pub service: Option<&'a str>,
    /// `grant_type` (OAuth2 POST).
    pub grant_type: Option<&'a str>,
    /// `username` (OAuth2 POST).
    pub username: Option<&'a str>,
    /// `password` (OAuth2 POST).
    pub password: Option<&'a str>,
    /// Every parsable scope of every `scope` parameter, in order; unknown resource types
    /// and malformed scopes are skipped.
    pub scopes: Vec<Access>,
}

impl<'a> TokenParams<'a> {
    /// Picks the known parameters; the first of a repeated single-valued one wins.
    pub fn parse(params: &'a [(String, String)]) -> TokenParams<'a> {
        let mut out = TokenParams::default();
        for (name, value) in params {
            let slot = match name.as_str() {
                "service" => &mut out.service,
                "grant_type" => &mut out.grant_type,
                "username" => &mut out.username,
                "password" => &mut out.password,
                "scope" => {
                    out.scopes
                        .extend(value.split_whitespace().filter_map(Access::parse_scope));
                    continue;
                }
                _ => continue,
            };
            slot.get_or_insert(value.as_str());
        }
        out
    }
}

fn unauthorized(message: &str) -> Denied {
    Denied::Unauthorized {
        challenge: TOKEN_REALM_CHALLENGE.to_owned(),
        message: message.to_owned(),
    }
}

/// Basic credentials if the header has them; another scheme counts as none (anonymous),
/// an undecodable Basic header as wrong credentials.
fn basic_credentials(header: Option<&str>) -> Result<Option<(String, String)>, Denied> {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let is_basic = header
        .split_once(' ')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if !is_basic {
        return Ok(None);
    }
    parse_basic(header)
        .map(Some)
        .ok_or_else(|| unauthorized("malformed Basic credentials"))
}
