//! `auth.oidc` (Berth extension): single sign-on in the web UI with an OpenID Connect identity
//! provider (Authentik, Keycloak, Authelia, Dex, ...). This module is the one place for these
//! keys: their schema (unknown keys warn, `REGISTRY_AUTH_OIDC_*` overrides apply), the typed
//! model, reading, and writing them back for `berth config check`.
//!
//! ```yaml
//! auth:
//!   token:
//!     builtin: {...}                  # required: it still issues the registry's tokens
//!   oidc:
//!     realm: https://id.example.com/application/o/berth/   # the issuer URL
//!     issuer: https://id.example.com/...  # when the ID tokens' `iss` differs from realm
//!     service: Authentik              # shown as "Sign in with Authentik" (default: the issuer's host)
//!     client_id: berth
//!     client_secret_file: /run/secrets/oidc  # or client_secret, or REGISTRY_AUTH_OIDC_CLIENT_SECRET
//!     scopes: [openid, profile, email, groups]   # the default
//!     groups_claim: groups            # the ID token claim listing the user's groups
//!     refresh_interval: 5m            # how often a signed-in user is checked again with the provider
//! ```
//!
//! OIDC is how people sign in; the built-in token server still decides what they may do (its
//! `rules` name users and `groups`). An `http://` issuer is refused unless it is on loopback.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::error::ConfigError;
use crate::keys::{closed, yes, Node, SCALAR, SCALARS};
use crate::values::Cx;

/// The key below `auth`.
pub(crate) const KEY: &str = "oidc";
/// The section's dotted path.
const PATH: &str = "auth.oidc";
const REALM: &str = "realm";
const ISSUER: &str = "issuer";
const SERVICE: &str = "service";
const CLIENT_ID: &str = "client_id";
const CLIENT_SECRET: &str = "client_secret";
const CLIENT_SECRET_FILE: &str = "client_secret_file";
const SCOPES: &str = "scopes";
const GROUPS_CLAIM: &str = "groups_claim";
const REFRESH_INTERVAL: &str = "refresh_interval";

/// The scopes asked for when `scopes` is not set: the ID token with the user's name, mail and
/// groups (Authentik, Keycloak with a groups mapper, Authelia and Dex all know `groups`).
pub const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email", "groups"];
/// The claim holding the user's groups when `groups_claim` is not set.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// How often a web UI session is checked again with the provider when `refresh_interval` is
/// not set: short enough that a user removed from a group or disabled at the provider loses
/// access within minutes, long enough to cost the provider one request per user per interval.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// The schema of `auth.oidc`, hung under `auth` in [`crate::keys::ROOT`].
pub(crate) static KEYS: Node = closed(&[
    yes(REALM, &SCALAR),
    yes(ISSUER, &SCALAR),
    yes(SERVICE, &SCALAR),
    yes(CLIENT_ID, &SCALAR),
    yes(CLIENT_SECRET, &SCALAR),
    yes(CLIENT_SECRET_FILE, &SCALAR),
    yes(SCOPES, &SCALARS),
    yes(GROUPS_CLAIM, &SCALAR),
    yes(REFRESH_INTERVAL, &SCALAR),
]);

/// `auth.oidc`: signing in to the web UI with an OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcConfig {
    /// `realm`: the issuer URL; discovery reads `<realm>/.well-known/openid-configuration`.
    pub realm: String,
    /// `issuer`: the `iss` the ID tokens carry, when it differs from `realm`.
    pub issuer: Option<String>,
    /// `service`: the provider's name on the login page ("Sign in with …"); unset: the
    /// issuer's host.
    pub service: Option<String>,
    /// `client_id`: this registry's client at the provider; also the ID tokens' audience.
    pub client_id: String,
    /// `client_secret`, or the content of `client_secret_file` (masked in output). `None`: a
    /// public client (PKCE only).
    pub client_secret: Option<String>,
    /// `scopes` asked for; always includes `openid`.
    pub scopes: Vec<String>,
    /// `groups_claim`, default `groups`: the ID token claim listing the user's groups.
    pub groups_claim: String,
    /// `refresh_interval`, default 5m: how often a signed-in web UI session is checked again
    /// with the provider (its refresh token redeemed, its groups read again).
    pub refresh_interval: Duration,
}

impl OidcConfig {
    /// The `iss` expected in ID tokens: `issuer`, else `realm`.
    pub fn expected_issuer(&self) -> &str {
        self.issuer.as_deref().unwrap_or(&self.realm)
    }

    /// The provider's name for "Sign in with …": `service`, else the realm's host.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.service {
            return name.clone();
        }
        let rest = self
            .realm
            .split_once("://")
            .map_or(self.realm.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_owned()
    }
}

/// Reads `auth.oidc` from the `auth` mapping; `token_builtin` says whether
/// `auth.token.builtin` is configured beside it (it must be).
pub(crate) fn extract(
    cx: &Cx<'_>,
    auth: Option<&Mapping>,
    token_builtin: bool,
) -> Result<Option<OidcConfig>, ConfigError> {
    let Some(p) = cx.section(auth, KEY, "auth")? else {
        return Ok(None);
    };
    let p = Some(p);
    if !token_builtin {
        return Err(ConfigError::Auth {
            origin: cx.origin(PATH),
            message: "auth.oidc needs auth.token with Berth's builtin token server beside it: \
                      OIDC signs people in, the built-in token server decides what they may do \
                      (see docs/security.md)"
                .to_owned(),
        });
    }
    let realm = cx.required(p, REALM, PATH, "the issuer URL of the identity provider")?;
    let realm = checked_url(cx, REALM, realm)?;
    let issuer = match cx.opt_string(p, ISSUER, PATH)? {
        Some(i) => Some(checked_url(cx, ISSUER, i)?),
        None => None,
    };
    let client_id = cx.required(
        p,
        CLIENT_ID,
        PATH,
        "the client id this registry has at the identity provider",
    )?;
    let client_secret = cx.secret(p, CLIENT_SECRET, PATH)?;
    let mut scopes = cx.strings(p, SCOPES, PATH)?;
    if scopes.is_empty() {
        scopes = DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
    {
        return Err(cx.invalid(
            &format!("{PATH}.{SCOPES}"),
            &Value::String(bad.clone()),
            "scope names without spaces or quotes, such as openid",
        ));
    }
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".to_owned());
    }
    Ok(Some(OidcConfig {
        realm,
        issuer,
        service: cx.opt_string(p, SERVICE, PATH)?,
        client_id,
        client_secret,
        scopes,
        groups_claim: cx.string(p, GROUPS_CLAIM, PATH, DEFAULT_GROUPS_CLAIM)?,
        refresh_interval: cx.duration(p, REFRESH_INTERVAL, PATH, DEFAULT_REFRESH_INTERVAL)?,
    }))
}

/// `url` when it is an `https://` URL, or an `http://` one on loopback (tests, a provider on
/// the same machine); else the error naming `key`.
fn checked_url(cx: &Cx<'_>, key: &str, url: String) -> Result<String, ConfigError> {
    let path = format!("{PATH}.{key}");
    let lower = url.to_ascii_lowercase();
    let ok = if let Some(rest) = lower.strip_prefix("https://") {
        !host_of(rest).is_empty()
    } else if let Some(rest) = lower.strip_prefix("http://") {
        is_loopback(host_of(rest))
    } else {
        false
    };
    if !ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.invalid(
            &path,
            &Value::String(url),
            "an https:// URL of the identity provider (http:// only on loopback: 127.0.0.1, [::1], localhost)",
        ));
    }
    Ok(url)
}

/// The host of `rest` (a URL after its scheme), without port or brackets.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Whether `host` is a loopback name or address.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The section in `config.yml` shape for `berth config check`; `secret` masks the client
/// secret when asked. Loading it back gives the same [`OidcConfig`].
pub(crate) fn emit(oidc: &OidcConfig, secret: impl Fn(&str) -> Value) -> Value {
    let mut m = Mapping::new();
    m.insert(REALM.into(), oidc.realm.clone().into());
    if let Some(issuer) = &oidc.issuer {
        m.insert(ISSUER.into(), issuer.clone().into());
    }
    if let Some(service) = &oidc.service {
        m.insert(SERVICE.into(), service.clone().into());
    }
    m.insert(CLIENT_ID.into(), oidc.client_id.clone().into());
    if let Some(s) = &oidc.client_secret {
        m.insert(CLIENT_SECRET.into(), secret(s));
    }
    m.insert(
        SCOPES.into(),
        Value::Sequence(oidc.scopes.iter().map(|s| s.clone().into()).collect()),
    );
    m.insert(GROUPS_CLAIM.into(), oidc.groups_claim.clone().into());
    m.insert(
        REFRESH_INTERVAL.into(),
        crate::emit::duration(oidc.refresh_interval),
    );
    Value::Mapping(m)
}

#[cfg(test)]
mod tests;
