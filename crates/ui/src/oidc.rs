//! Signing in to the web UI with an OpenID Connect identity provider (`auth.oidc`): the
//! authorization code flow with PKCE (S256), a `state` and a `nonce` per sign-in.
//!
//! - `GET oidc/login` starts a sign-in: it keeps `state` → (nonce, PKCE verifier, browser
//!   binding) server-side, single use, for [`FLOW_TTL`], in a store of bounded size; sets the
//!   binding in an `HttpOnly`, `SameSite=Lax` cookie scoped to `oidc/` (so a sign-in started
//!   in one browser cannot be finished in another: no login CSRF); and sends the browser to
//!   the provider.
//! - `GET oidc/callback` takes the `state` out of the store (a replay finds nothing), checks
//!   the binding cookie, exchanges the code with the verifier, verifies the ID token
//!   ([`provider::Provider::verify`]) and its `nonce`, and starts a session holding the user
//!   (`preferred_username`, else `sub`) and the groups from the groups claim. What the user
//!   may see and do is then decided by the built-in token server's rules for that user and
//!   those groups, as for everyone else.
//!
//! Logout ends the Berth session and, when the provider has an end-session endpoint, sends the
//! browser there to end the provider's session too ([`end_session_url`]).
//!
//! The redirect URI is `<http.host><http.prefix>ui/oidc/callback` when `http.host` is set
//! (behind a reverse proxy), else built from the request's `Host`. When the provider cannot be
//! reached, sign-in with it shows an error page and nobody is let in; password logins and
//! existing sessions keep working.

pub mod provider;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{header, HeaderValue, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::html::esc;
use crate::session::{self, Login, OidcLogin};
use crate::Page;
pub use provider::ProviderError;
use provider::{form_encode, Provider, Tokens};

/// How long a started sign-in may take at the provider.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// The most sign-ins in progress kept: past it, expired ones are dropped, then the oldest.
const MAX_FLOWS: usize = 10_000;
/// The cookie binding a sign-in to the browser that started it.
const FLOW_COOKIE: &str = "berth_ui_oidc";
/// The most groups taken from an ID token.
const MAX_GROUPS: usize = 1000;

/// `auth.oidc` as the UI needs it.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The issuer URL discovery starts from.
    pub realm: String,
    /// The `iss` of the ID tokens.
    pub issuer: String,
    /// The provider's name on the login page.
    pub name: String,
    /// This registry's client id.
    pub client_id: String,
    /// Its secret; `None` for a public client.
    pub client_secret: Option<String>,
    /// The scopes asked for (`openid` among them).
    pub scopes: Vec<String>,
    /// The ID token claim listing the user's groups.
    pub groups_claim: String,
    /// How often a session is checked again with the provider.
    pub refresh_interval: Duration,
}

/// The OIDC sign-in: the provider and the sign-ins in progress.
pub struct Oidc {
    settings: OidcSettings,
    provider: Provider,
    flows: Mutex<HashMap<String, Flow>>,
}

/// A sign-in in progress, keyed by its `state`.
struct Flow {
    nonce: String,
    verifier: String,
    binding: String,
    expires: Instant,
}

impl Oidc {
    /// The sign-in for `settings`; nothing is fetched yet (see [`Oidc::check`]).
    pub fn new(settings: OidcSettings) -> Result<Oidc, ProviderError> {
        let provider = Provider::new(&settings.realm, &settings.issuer, &settings.client_id)?;
        Ok(Oidc {
            settings,
            provider,
            flows: Mutex::default(),
        })
    }

    /// Reads the provider's discovery document: called at startup, so that a provider that
    /// cannot be reached or is misconfigured is a clear warning in the log.
    pub async fn check(&self) -> Result<(), ProviderError> {
        self.provider.endpoints().await.map(|_| ())
    }

    /// The provider's name on the login page.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Keeps a new sign-in; returns its state.
    fn remember(&self, flow: Flow) -> String {
        let state = session::random_hex();
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        if flows.len() >= MAX_FLOWS {
            let now = Instant::now();
            flows.retain(|_, f| f.expires > now);
            if flows.len() >= MAX_FLOWS {
                let oldest = flows
                    .iter()
                    .min_by_key(|(_, f)| f.expires)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    flows.remove(&oldest);
                }
            }
        }
        flows.insert(state.clone(), flow);
        state
    }

    /// Takes the sign-in with this state out of the store: each state is used once.
    fn take(&self, state: &str) -> Option<Flow> {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows.remove(state).filter(|f| f.expires > Instant::now())
    }
}

/// `GET oidc/login`: sends the browser to the provider.
pub(crate) async fn start(page: &Page<'_>, oidc: &Oidc) -> Response {
    let endpoints = match oidc.provider.endpoints().await {
        Ok(e) => e,
        Err(e) => return unavailable(page, oidc, &e),
    };
    let Some(redirect_uri) = redirect_uri(page) else {
        return page.message(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The request has no usable Host header to build the sign-in's return address: set http.host.",
        );
    };
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let nonce = session::random_hex();
    let binding = session::random_hex();
    let state = oidc.remember(Flow {
        nonce: nonce.clone(),
        verifier,
        binding: binding.clone(),
        expires: Instant::now() + FLOW_TTL,
    });
    let s = &oidc.settings;
    let query = [
        ("response_type", "code"),
        ("client_id", s.client_id.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("scope", &s.scopes.join(" ")),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let endpoint = &endpoints.authorization_endpoint;
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{endpoint}{separator}{query}")) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&flow_cookie(page, Some(&binding))) {
        h.insert(header::SET_COOKIE, v);
    }
    response
}

/// `GET oidc/callback`: finishes a sign-in and starts a session.
pub(crate) async fn callback(page: &Page<'_>, oidc: &Oidc) -> Response {
    let refused = |status: StatusCode, text: &str| {
        let mut response = page.message(status, "Sign-in failed", text);
        if let Ok(v) = HeaderValue::from_str(&flow_cookie(page, None)) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        response
    };
    let Some(flow) = page.param("state").and_then(|s| oidc.take(s)) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was already used. Sign in again.",
        );
    };
    let bound = session::cookie_hex(page.headers, FLOW_COOKIE).is_some_and(|b| {
        b.len() == flow.binding.len()
            && b.bytes()
                .zip(flow.binding.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    });
    if !bound {
        return refused(
            StatusCode::BAD_REQUEST,
            "This sign-in was started in another browser (or its cookie was lost). Sign in again.",
        );
    }
    if let Some(error) = page.param("error") {
        let detail = page.param("error_description").unwrap_or("");
        tracing::info!(
            error,
            detail,
            "OIDC sign-in refused by the identity provider"
        );
        return refused(
            StatusCode::UNAUTHORIZED,
            format!("{} refused the sign-in: {error} {detail}", oidc.name()).trim(),
        );
    }
    let (Some(code), Some(redirect_uri)) = (page.param("code"), redirect_uri(page)) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The identity provider sent no authorization code.",
        );
    };
    let tokens = match oidc
        .provider
        .exchange(
            code,
            &redirect_uri,
            &flow.verifier,
            oidc.settings.client_secret.as_deref(),
        )
        .await
    {
        Ok(tokens) => tokens,
        Err(e @ (ProviderError::Unreachable { .. } | ProviderError::BadAnswer { .. })) => {
            return unavailable(page, oidc, &e)
        }
        Err(e) => {
            tracing::warn!(error = %e, "OIDC sign-in refused");
            return refused(StatusCode::UNAUTHORIZED, &e.to_string());
        }
    };
    let Tokens {
        claims: Some(claims),
        id_token: Some(id_token),
        refresh_token,
    } = tokens
    else {
        return refused(
            StatusCode::BAD_GATEWAY,
            "The identity provider sent no ID token.",
        );
    };
    let nonce_ok = claims.get("nonce").and_then(Value::as_str) == Some(flow.nonce.as_str());
    if !nonce_ok {
        tracing::warn!("OIDC sign-in refused: the ID token's nonce is not this sign-in's");
        return refused(
            StatusCode::UNAUTHORIZED,
            "The ID token is not valid: its nonce is not this sign-in's.",
        );
    }
    let Some(user) = user_name(&claims) else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "The ID token names no usable user (preferred_username or sub).",
        );
    };
    let local = page
        .ui
        .ctx
        .token_issuer
        .as_ref()
        .is_some_and(|issuer| issuer.has_local_account(&user));
    if local {
        tracing::warn!(
            user,
            "OIDC sign-in refused: a local account (htpasswd or service account) has this name"
        );
        return refused(
            StatusCode::FORBIDDEN,
            &format!(
                "A local account of this registry is named {user}; a user of the identity provider cannot sign in under that name. Ask the administrator to rename one of them."
            ),
        );
    }
    let groups = groups(&claims, &oidc.settings.groups_claim);
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    tracing::info!(
        user,
        groups = ?groups,
        refreshable = refresh_token.is_some(),
        "web UI sign-in with OIDC"
    );
    let ui = page.ui;
    let id = ui.sessions.create(
        user.clone(),
        Login::Oidc(OidcLogin {
            subject,
            groups,
            id_token,
            refresh_token,
            checked: Instant::now(),
        }),
    );
    // The session cookie is `SameSite=Strict`: a browser does not send it on a redirect chain
    // that began at the provider, so this page moves on by itself (`Refresh`, a navigation
    // started by this site) instead of a 303.
    let body = format!(
        "<h1>Signed in</h1><p>Signed in as {} with {}. <a href=\"{}\">Continue to the repositories</a>.</p>",
        esc(&user),
        esc(oidc.name()),
        esc(&ui.base)
    );
    let mut response = page.html(StatusCode::OK, "Signed in", &body);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("0; url={}", ui.base)) {
        h.insert("refresh", v);
    }
    let cookie = session::set_cookie(Some(&id), &ui.base, ui.secure_cookies());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.append(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&flow_cookie(page, None)) {
        h.append(header::SET_COOKIE, v);
    }
    response
}

/// The groups of OIDC session `id` (of `user`) after checking it again with the provider when
/// that is due; `None` when the session has ended. The check redeems the session's refresh
/// token: a refusal (the user was signed out, disabled or removed at the provider, the grant
/// revoked) or an ID token that is not valid or names another subject ends the session; new
/// groups apply from this page on. A provider that cannot be reached leaves the session as it
/// was (the identity provider being down does not sign everybody out) and is asked again at
/// the next interval.
pub(crate) async fn recheck(
    ui: &crate::Ui,
    id: &str,
    user: &str,
    login: OidcLogin,
) -> Option<Vec<String>> {
    let oidc = ui.options.oidc.as_deref()?;
    let Some(refresh_token) = ui.sessions.refresh_due(id, oidc.settings.refresh_interval) else {
        return Some(login.groups);
    };
    let secret = oidc.settings.client_secret.as_deref();
    let end = |why: &str| {
        tracing::info!(
            user,
            reason = why,
            "OIDC session ended by the check with the identity provider"
        );
        ui.sessions.remove(id);
        None
    };
    match oidc.provider.refresh(&refresh_token, secret).await {
        Ok(tokens) => {
            let groups = match &tokens.claims {
                Some(claims) => {
                    if claims.get("sub").and_then(Value::as_str) != Some(login.subject.as_str()) {
                        return end("the refreshed ID token names another subject");
                    }
                    Some(groups(claims, &oidc.settings.groups_claim))
                }
                None => None,
            };
            if groups.as_ref().is_some_and(|g| *g != login.groups) {
                tracing::info!(user, before = ?login.groups, now = ?groups, "OIDC user's groups changed at the identity provider");
            }
            let current = groups.clone().unwrap_or(login.groups);
            ui.sessions
                .refreshed(id, groups, tokens.id_token, tokens.refresh_token);
            Some(current)
        }
        Err(ProviderError::Refused(why) | ProviderError::InvalidToken(why)) => end(&why),
        Err(e) => {
            tracing::warn!(user, error = %e, "could not check an OIDC session with the identity provider; it goes on as it was until the next check");
            Some(login.groups)
        }
    }
}

/// Revokes `refresh_token` at the provider (RFC 7009), when it has a revocation endpoint,
/// without holding up the logout that asked for it.
pub(crate) fn revoke_in_background(oidc: &std::sync::Arc<Oidc>, refresh_token: String) {
    let oidc = oidc.clone();
    tokio::spawn(async move {
        let secret = oidc.settings.client_secret.as_deref();
        if let Err(e) = oidc.provider.revoke(&refresh_token, secret).await {
            tracing::info!(error = %e, "could not revoke an OIDC refresh token at logout");
        }
    });
}

/// Where to send the browser to end its session at the provider too (RP-initiated logout),
/// when the provider has an end-session endpoint: with this client's id and the ID token as
/// hint; the provider then shows its own "signed out" page.
pub(crate) async fn end_session_url(oidc: &Oidc, id_token: &str) -> Option<String> {
    let endpoint = oidc.provider.endpoints().await.ok()?.end_session_endpoint?;
    let query = [
        ("client_id", oidc.settings.client_id.as_str()),
        ("id_token_hint", id_token),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    Some(format!("{endpoint}{separator}{query}"))
}

/// The error page when the provider cannot be reached or answers nonsense: nobody is let in.
fn unavailable(page: &Page<'_>, oidc: &Oidc, error: &ProviderError) -> Response {
    tracing::warn!(error = %error, "OIDC sign-in unavailable");
    let alternative = "Try again later, or log in with a user name and password if you have one.";
    page.html(
        StatusCode::BAD_GATEWAY,
        "Sign-in unavailable",
        &format!(
            "<h1>Sign-in unavailable</h1><p class=\"warn\" role=\"alert\">Signing in with {} is not \
             available right now: {}.</p><p>{alternative}</p>",
            esc(oidc.name()),
            esc(&error.to_string()),
        ),
    )
}

/// The user an ID token names: `preferred_username` when it is a plain one-line name, else
/// `sub` (always present in a verified token).
fn user_name(claims: &serde_json::Map<String, Value>) -> Option<String> {
    let usable = |v: &&str| !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control);
    claims
        .get("preferred_username")
        .and_then(Value::as_str)
        .filter(usable)
        .or_else(|| claims.get("sub").and_then(Value::as_str).filter(usable))
        .map(str::to_owned)
}

/// The groups in `claim`: a list of names, or one name.
fn groups(claims: &serde_json::Map<String, Value>, claim: &str) -> Vec<String> {
    let mut groups: Vec<String> = match claims.get(claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|g| !g.is_empty())
            .take(MAX_GROUPS)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) if !one.is_empty() => vec![one.clone()],
        _ => Vec::new(),
    };
    groups.sort();
    groups.dedup();
    groups
}

/// Where the provider sends the browser back: `<http.host><base>oidc/callback`, else the
/// request's scheme and `Host`.
fn redirect_uri(page: &Page<'_>) -> Option<String> {
    let base = &page.ui.base;
    if let Some(host) = page.ui.ctx.options.host.as_deref() {
        let host = host.trim_end_matches('/');
        if !host.is_empty() {
            return Some(format!("{host}{base}oidc/callback"));
        }
    }
    let host = page.headers.get(header::HOST)?.to_str().ok().filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    })?;
    let scheme = if page.ui.ctx.options.tls {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{host}{base}oidc/callback"))
}

/// The `Set-Cookie` value binding a sign-in to this browser (`None`: clearing it).
fn flow_cookie(page: &Page<'_>, binding: Option<&str>) -> String {
    let secure = if page.ui.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let path = format!("{}oidc/", page.ui.base);
    let (value, age) = match binding {
        Some(b) => (b, FLOW_TTL.as_secs()),
        None => ("", 0),
    };
    format!("{FLOW_COOKIE}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={age}{secure}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn user_and_groups_from_claims() {
        let c = claims(
            json!({"sub": "123", "preferred_username": "alice", "groups": ["b", "a", "a", ""], "roles": "admin"}),
        );
        assert_eq!(user_name(&c).as_deref(), Some("alice"));
        assert_eq!(groups(&c, "groups"), ["a", "b"]);
        assert_eq!(groups(&c, "roles"), ["admin"]);
        assert!(groups(&c, "missing").is_empty());
        let c = claims(json!({"sub": "123", "preferred_username": "bad\nname"}));
        assert_eq!(user_name(&c).as_deref(), Some("123"));
    }

    #[test]
    fn states_are_single_use_and_bounded() {
        let oidc = Oidc::new(OidcSettings {
            realm: "https://id.test".into(),
            issuer: "https://id.test".into(),
            name: "Test".into(),
            client_id: "c".into(),
            client_secret: None,
            scopes: vec!["openid".into()],
            groups_claim: "groups".into(),
            refresh_interval: Duration::from_secs(300),
        })
        .expect("oidc");
        let flow = || Flow {
            nonce: "n".into(),
            verifier: "v".into(),
            binding: "b".into(),
            expires: Instant::now() + FLOW_TTL,
        };
        let state = oidc.remember(flow());
        assert!(oidc.take(&state).is_some());
        assert!(oidc.take(&state).is_none(), "a state is used once");
        let expired = oidc.remember(Flow {
            expires: Instant::now(),
            ..flow()
        });
        assert!(oidc.take(&expired).is_none());
        for _ in 0..MAX_FLOWS + 3 {
            oidc.remember(flow());
        }
        assert_eq!(
            oidc.flows.lock().unwrap_or_else(|e| e.into_inner()).len(),
            MAX_FLOWS
        );
    }
}
