//! Personal access tokens of users who sign in with OIDC: the "Access tokens" page (`tokens`:
//! the user's tokens, "Create token", revoke) and their store in the registry's storage, under
//! `_berth/tokens/<sha256 of user>/<sha256 of token>` (berth_storage::paths), so every node on
//! the same storage knows them. Only the hash of a token is stored; the token is shown once,
//! on the page that created it. The built-in token server asks the store
//! ([`berth_auth::personal::PersonalTokens`]) when a password starts with
//! [`TOKEN_PREFIX`]; a token grants what the rules give its user and the groups recorded
//! with it, cut to its scope (pull, or pull and push).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_auth::personal::{PersonalGrant, PersonalTokens, TOKEN_PREFIX};
use berth_auth::Action;
use berth_registry::Registry;
use berth_storage::paths;
use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::html::{date, esc};
use crate::Page;

/// The most tokens one user may hold.
const MAX_PER_USER: usize = 50;
/// The longest token name.
const MAX_NAME: usize = 100;
/// The lifetimes offered, in days.
const LIFETIMES: &[u64] = &[7, 30, 90, 365];

/// One token as stored (JSON); the token itself is not in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// What the user called it.
    name: String,
    /// Its user.
    user: String,
    /// The user's groups when it was created.
    groups: Vec<String>,
    /// Whether it may push (else pull only).
    push: bool,
    /// Unix seconds.
    created: u64,
    /// Unix seconds.
    expires: u64,
}

/// The tokens, in the registry's storage.
pub struct TokenStore {
    registry: Arc<Registry>,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenStore {
    /// The store over `registry`'s storage.
    pub fn new(registry: Arc<Registry>) -> TokenStore {
        TokenStore { registry }
    }

    /// The user's tokens, newest first, each with its id (the hash of the token).
    async fn list(&self, user: &str) -> Vec<(String, Record)> {
        let driver = self.registry.driver();
        let dir = paths::access_tokens(&sha256_hex(user));
        let mut out = Vec::new();
        for id in driver.list(&dir).await.unwrap_or_default() {
            if !is_id(&id) {
                continue;
            }
            let path = paths::access_token(&sha256_hex(user), &id);
            let Ok(bytes) = driver.get_content(&path).await else {
                continue;
            };
            if let Ok(record) = serde_json::from_slice::<Record>(&bytes) {
                out.push((id, record));
            }
        }
        out.sort_by_key(|(_, r)| std::cmp::Reverse(r.created));
        out
    }

    /// Creates a token and returns it (the only time it is known).
    async fn create(&self, record: &Record) -> Result<String, String> {
        let token = format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        let path = paths::access_token(&sha256_hex(&record.user), &sha256_hex(&token));
        let json = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        self.registry
            .driver()
            .put_content(&path, Bytes::from(json))
            .await
            .map_err(|e| e.to_string())?;
        Ok(token)
    }

    /// Deletes the user's token `id`.
    async fn revoke(&self, user: &str, id: &str) -> bool {
        is_id(id)
            && self
                .registry
                .driver()
                .delete(&paths::access_token(&sha256_hex(user), id))
                .await
                .is_ok()
    }
}

/// A token id: a SHA-256 in hex.
fn is_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[async_trait::async_trait]
impl PersonalTokens for TokenStore {
    async fn check(&self, user: &str, secret: &str) -> Option<PersonalGrant> {
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 200 {
            return None;
        }
        let path = paths::access_token(&sha256_hex(user), &sha256_hex(secret));
        let bytes = self.registry.driver().get_content(&path).await.ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        if record.user != user || record.expires <= now() {
            return None;
        }
        let actions = if record.push {
            vec![Action::Pull, Action::Push]
        } else {
            vec![Action::Pull]
        };
        Some(PersonalGrant {
            groups: record.groups,
            actions,
        })
    }
}

/// `GET tokens` and its form's `POST` (`create`, `revoke`).
pub(crate) async fn page(page: &Page<'_>, form: Option<&HashMap<String, String>>) -> Response {
    let (Some(store), Some(user)) = (&page.ui.tokens, page.viewer.user.as_deref()) else {
        return page.message(
            StatusCode::NOT_FOUND,
            "Not found",
            "Access tokens are for users who sign in with single sign-on.",
        );
    };
    if !page.viewer.oidc {
        return page.message(
            StatusCode::NOT_FOUND,
            "No access tokens",
            "Access tokens are for users who sign in with single sign-on; log in to docker with your user name and password.",
        );
    }
    let mut notice = String::new();
    let mut status = StatusCode::OK;
    if let Some(form) = form {
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        match field("action") {
            "create" => {
                let name = field("name").trim();
                let days: u64 = field("days").parse().unwrap_or(0);
                let held = store.list(user).await.len();
                if name.is_empty()
                    || name.chars().count() > MAX_NAME
                    || name.chars().any(char::is_control)
                {
                    status = StatusCode::BAD_REQUEST;
                    notice = "<p class=\"warn\" role=\"alert\">Give the token a name of at most 100 characters.</p>".into();
                } else if !LIFETIMES.contains(&days) {
                    status = StatusCode::BAD_REQUEST;
                    notice = "<p class=\"warn\" role=\"alert\">Choose an expiry.</p>".into();
                } else if held >= MAX_PER_USER {
                    status = StatusCode::BAD_REQUEST;
                    notice = format!("<p class=\"warn\" role=\"alert\">You hold {MAX_PER_USER} tokens, the most allowed: revoke one first.</p>");
                } else {
                    let created = now();
                    let record = Record {
                        name: name.to_owned(),
                        user: user.to_owned(),
                        groups: page.viewer.groups.clone(),
                        push: field("scope") == "push",
                        created,
                        expires: created + days * 86_400,
                    };
                    match store.create(&record).await {
                        Ok(token) => {
                            tracing::info!(
                                user,
                                name,
                                push = record.push,
                                days,
                                "access token created"
                            );
                            notice = format!(
                                "<div class=\"notice\" role=\"status\"><p>Your new token <strong>{}</strong>. \
                                 Copy it now: it is not shown again.</p><p><code class=\"token\">{}</code></p></div>",
                                esc(name),
                                esc(&token)
                            );
                        }
                        Err(e) => {
                            tracing::warn!(user, error = %e, "cannot store an access token");
                            status = StatusCode::INTERNAL_SERVER_ERROR;
                            notice = "<p class=\"warn\" role=\"alert\">The token could not be stored; try again.</p>".into();
                        }
                    }
                }
            }
            "revoke" => {
                if store.revoke(user, field("id")).await {
                    tracing::info!(user, "access token revoked");
                    notice = "<p role=\"status\">The token was revoked.</p>".into();
                } else {
                    status = StatusCode::NOT_FOUND;
                    notice = "<p class=\"warn\" role=\"alert\">There is no such token.</p>".into();
                }
            }
            _ => {
                status = StatusCode::BAD_REQUEST;
                notice = "<p class=\"warn\" role=\"alert\">Unknown action.</p>".into();
            }
        }
    }
    let base = esc(page.base());
    let csrf = page.csrf_field();
    let mut rows = String::new();
    let at = |secs: u64| date(UNIX_EPOCH + Duration::from_secs(secs));
    for (id, r) in store.list(user).await {
        let state = if r.expires <= now() { " (expired)" } else { "" };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{state}</td><td>\
             <form method=\"post\" action=\"{base}tokens\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"revoke\">\
             <input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <button type=\"submit\">Revoke</button></form></td></tr>",
            esc(&r.name),
            if r.push { "pull and push" } else { "pull" },
            at(r.created),
            at(r.expires),
        ));
    }
    let table = if rows.is_empty() {
        "<p>You have no access tokens.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th>Name</th><th>Scope</th><th>Created</th><th>Expires</th><th></th></tr></thead>\
             <tbody>{rows}</tbody></table>"
        )
    };
    let days = LIFETIMES
        .iter()
        .map(|d| {
            let selected = if *d == 30 { " selected" } else { "" };
            format!("<option value=\"{d}\"{selected}>{d} days</option>")
        })
        .collect::<String>();
    let body = format!(
        "<h1>Access tokens</h1>{notice}\
         <p>Use an access token as the password of <code>docker login {host} -u {user}</code> (and podman, \
         skopeo, containerd). It allows what your groups allow, up to its scope, until it expires or is revoked.</p>\
         {table}<h2>Create token</h2>\
         <form class=\"login\" method=\"post\" action=\"{base}tokens\">{csrf}\
         <input type=\"hidden\" name=\"action\" value=\"create\">\
         <label for=\"name\">Name</label><input id=\"name\" name=\"name\" maxlength=\"100\" required>\
         <label for=\"scope\">Scope</label><select id=\"scope\" name=\"scope\">\
         <option value=\"pull\">pull</option><option value=\"push\">pull and push</option></select>\
         <label for=\"days\">Expires after</label><select id=\"days\" name=\"days\">{days}</select>\
         <button type=\"submit\">Create token</button></form>",
        host = esc(&page.pull_host()),
        user = esc(user),
    );
    page.html(status, "Access tokens", &body)
}
