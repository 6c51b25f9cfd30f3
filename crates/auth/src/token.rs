//! registry:2's `auth.token`: the client brings a bearer JWT from a token service; the
//! registry checks its signature against trusted keys, its issuer, audience and validity
//! period, and that its `access` claim covers what the request needs.
//!
//! Challenges are registry:2's, byte for byte:
//! `Bearer realm="…",service="…",scope="repository:a:pull,push repository:b:pull"`, with
//! `,error="invalid_token"` when a token was sent but is not valid and
//! `,error="insufficient_scope"` when it is valid but lacks access; all of them are 401.

mod claims;
#[cfg(test)]
mod key_tests;
mod keys;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Validation;

pub use claims::{Audience, Claims, ResourceActions, LEEWAY_SECS};
pub use keys::{libtrust_key_id, TrustedKey, ACCEPTED as ACCEPTED_ALGORITHMS};

use crate::rules::AccessRules;
use crate::{Access, AccessController, AuthRequest, Denied, Grant};

/// Tokens longer than this are refused unparsed.
const MAX_TOKEN_LEN: usize = 64 * 1024;
/// registry:2's default `autoredirectpath`.
pub const DEFAULT_AUTOREDIRECT_PATH: &str = "/auth/token";

/// The `auth.token` options of registry:2's `config.yml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenOptions {
    /// `realm`: URL of the token service, sent in the challenge.
    pub realm: String,
    /// `service`: this registry's name; tokens must have it in `aud`.
    pub service: String,
    /// `issuer`: tokens must have it as `iss`.
    pub issuer: String,
    /// `rootcertbundle`: PEM certificates whose keys sign tokens (by `kid`) or that `x5c`
    /// chains must lead to.
    pub rootcertbundle: Option<PathBuf>,
    /// `jwks`: a JSON Web Key Set file of keys that sign tokens (by `kid`).
    pub jwks: Option<PathBuf>,
    /// `autoredirect`: the realm is `<request origin><autoredirectpath>` instead of `realm`.
    /// registry:2 builds it from the `Host` header with `https` (v3: `X-Forwarded-Proto`
    /// if set); Berth uses [`AuthRequest::origin`] as the API computed it.
    pub autoredirect: bool,
    /// `autoredirectpath` (distribution v3): the path of the auto-redirect realm;
    /// `None` means [`DEFAULT_AUTOREDIRECT_PATH`].
    pub autoredirectpath: Option<String>,
}

/// Why a token controller cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A key or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `rootcertbundle` is not usable.
    #[error("token auth rootcertbundle {path}: {message}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The `jwks` file is not usable.
    #[error("token auth jwks {path}: {message}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key cannot be used to verify tokens.
    #[error("token signing key: {0}")]
    Key(String),
    /// Neither certificates nor keys: no token could ever be valid.
    #[error("token auth requires at least one token signing key: set auth.token.rootcertbundle or auth.token.jwks")]
    NoKeys,
    /// Options that contradict each other.
    #[error("token auth: {0}")]
    Options(String),
}

/// Why a bearer token was refused (for logs; the client only learns `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    /// Not a JWT, or a header that cannot be read.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A JWT that is not valid here.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// registry:2's token access controller.
#[derive(Debug)]
pub struct TokenController {
    options: TokenOptions,
    keys: keys::KeySet,
    rules: Option<Arc<AccessRules>>,
}

impl TokenController {
    /// Loads `rootcertbundle` and `jwks`; as registry:2, refuses to start without any key.
    pub fn new(options: TokenOptions) -> Result<TokenController, TokenError> {
        TokenController::with_keys(options, Vec::new())
    }

    /// Like [`TokenController::new`], also trusting `keys` (the built-in issuer passes its
    /// own public key).
    pub fn with_keys(
        options: TokenOptions,
        keys: Vec<TrustedKey>,
    ) -> Result<TokenController, TokenError> {
        let mut set = keys::KeySet::default();
        if let Some(path) = &options.rootcertbundle {
            set.load_bundle(path)?;
        }
        if let Some(path) = &options.jwks {
            set.load_jwks(path)?;
        }
        for key in keys {
            set.add_key(key);
        }
        if set.is_empty() {
            return Err(TokenError::NoKeys);
        }
        Ok(TokenController {
            options,
            keys: set,
            rules: None,
        })
    }

    /// Uses `rules` for [`AccessController::may_list`] (the catalog shows only what the
    /// caller may pull).
    pub fn with_rules(mut self, rules: Arc<AccessRules>) -> TokenController {
        self.rules = Some(rules);
        self
    }

    /// The options in force.
    pub fn options(&self) -> &TokenOptions {
        &self.options
    }

    /// Verifies `token` at `now` (seconds since the epoch): signature by a trusted key with
    /// an accepted algorithm, issuer, audience, `exp` and `nbf`. Returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, InvalidToken> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(InvalidToken::Malformed("too long".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| InvalidToken::Malformed(e.to_string()))?;
        if !keys::ACCEPTED.contains(&header.alg) {
            return Err(InvalidToken::Invalid(format!(
                "signing algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self
            .keys
            .resolve(&header, now)
            .map_err(InvalidToken::Invalid)?;
        if !key.allows(header.alg) {
            return Err(InvalidToken::Invalid(format!(
                "algorithm {:?} does not fit the signing key",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        // Claims are checked below, with registry:2's rules.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), &validation)
            .map_err(|e| InvalidToken::Invalid(e.to_string()))?;
        data.claims
            .check(&self.options.issuer, &self.options.service, now)
            .map_err(InvalidToken::Invalid)?;
        Ok(data.claims)
    }

    /// The `WWW-Authenticate` value for `needed`, with `error` if given.
    pub fn challenge(
        &self,
        request: &AuthRequest<'_>,
        needed: &[Access],
        error: Option<&str>,
    ) -> String {
        let realm = match (self.options.autoredirect, request.origin) {
            (true, Some(origin)) => format!(
                "{}{}",
                origin.trim_end_matches('/'),
                self.options
                    .autoredirectpath
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or(DEFAULT_AUTOREDIRECT_PATH)
            ),
            _ => self.options.realm.clone(),
        };
        let mut challenge = format!(
            "Bearer realm={},service={}",
            quote(&realm),
            quote(&self.options.service)
        );
        let scope = scope_param(needed);
        if !scope.is_empty() {
            challenge.push_str(&format!(",scope={}", quote(&scope)));
        }
        if let Some(error) = error {
            challenge.push_str(&format!(",error={}", quote(error)));
        }
        challenge
    }

    fn deny(
        &self,
        request: &AuthRequest<'_>,
        needed: &[Access],
        error: Option<&str>,
        message: &str,
    ) -> Denied {
        Denied::Unauthorized {
            challenge: self.challenge(request, needed, error),
            message: message.to_owned(),
        }
    }
}

/// The challenge's `scope`: one scope per resource (actions of the same resource merged),
/// separated by spaces, as registry:2's `accessSet.scopeParam`.
pub fn scope_param(needed: &[Access]) -> String {
    let mut merged: Vec<Access> = Vec::new();
    for access in needed {
        match merged.iter_mut().find(|m| m.resource == access.resource) {
            Some(m) => m.actions.extend_from_slice(&access.actions),
            None => merged.push(access.clone()),
        }
    }
    let scopes: Vec<String> = merged
        .into_iter()
        .map(|mut m| {
            m.actions.sort();
            m.actions.dedup();
            m.to_string()
        })
        .collect();
    scopes.join(" ")
}

/// A quoted-string for a challenge parameter (Go's `%q` for the characters that occur).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl AccessController for TokenController {
    async fn authorize(
        &self,
        request: &AuthRequest<'_>,
        needed: &[Access],
    ) -> Result<Grant, Denied> {
        let Some(token) = bearer(request.authorization) else {
            return Err(self.deny(request, needed, None, "authorization token required"));
        };
        let claims = match self.verify(token, unix_now()) {
            Ok(claims) => claims,
            Err(why) => {
                tracing::info!(client = crate::htpasswd::client_text(request.client), reason = %why, "bearer token refused");
                return Err(self.deny(request, needed, Some("invalid_token"), "invalid token"));
            }
        };
        let granted = claims.granted();
        if let Some(missing) = needed.iter().find(|a| !a.is_covered_by(&granted)) {
            tracing::info!(subject = %claims.sub, needed = %missing, "token lacks the needed scope");
            return Err(self.deny(
                request,
                needed,
                Some("insufficient_scope"),
                "insufficient scope",
            ));
        }
        Ok(Grant {
            subject: (!claims.sub.is_empty()).then_some(claims.sub),
            groups: claims.groups,
        })
    }

    fn may_list(&self, grant: &Grant, repository: &str) -> bool {
        match &self.rules {
            Some(rules) => rules.may_list_to(
                crate::rules::Principal {
                    user: grant.subject.as_deref(),
                    groups: &grant.groups,
                },
                repository,
            ),
            None => true,
        }
    }
}
