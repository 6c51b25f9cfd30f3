//! The web UI, served by the `berth` binary itself at `<http.prefix>ui/`: server-rendered HTML
//! pages (repositories, tags, images) built from the same registry core the API serves (never
//! a second index), shown only where the caller may pull, per repository name, by the same
//! access controller as the API. One stylesheet and one small script for copy buttons are
//! compiled in; every response carries a strict Content-Security-Policy.
//!
//! Routes, below the base path `<prefix>ui/`:
//! - `` (the base): repositories, with `q` (substring search), `start`, `n` (paging);
//! - `r/<name>`: a repository's tags, with `q`, `start`, `n`;
//! - `r/<name>/-/<tag or digest>`: an image or index;
//! - `r/<name>/-/<tag or digest>/delete`: deleting a tag, or a manifest with its tags (GET:
//!   what would go, POST: delete);
//! - `r/<name>/-delete`: deleting every manifest and tag of a repository (GET, POST); `-` is
//!   not a valid first character of a name component, so neither path can be a repository;
//! - `admin`, `admin/gc`, `admin/retention`: administration (see [`admin`]);
//! - `login` (GET form, POST), `logout` (POST);
//! - `oidc/login`, `oidc/callback`: signing in with the OIDC identity provider (see [`oidc`]);
//! - `tokens`: an OIDC user's personal access tokens (GET, POST; see [`tokens`]);
//! - `static/ui.css`, `static/ui.js`.

pub mod admin;
mod delete;
mod html;
mod image;
mod login;
mod manifest;
pub mod oidc;
mod pull;
mod repo;
mod repos;
mod session;
mod tokens;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use berth_api::{ClientAddr, Ctx};
use berth_auth::rules::Principal;
use berth_auth::{Access, Action, AuthRequest, Denied};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use crate::html::{esc, Frame};
use crate::session::{Login, Sessions};

/// How people log in to the UI, from the `auth` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    /// No `auth`: everything is readable, nobody logs in.
    Open,
    /// `auth.htpasswd`: a login form and a session cookie.
    Htpasswd,
    /// `auth.token` with the built-in token server: the same login form, users checked by the
    /// token server, per-repository access from its rules.
    BuiltinToken,
    /// Token auth with an external token server: not available in the UI yet; it shows
    /// nothing private.
    Unsupported,
}

pub use admin::{Admin, JobRun, JobState, Preview};
pub use oidc::{Oidc, OidcSettings};

/// The UI's settings (the `ui` config section and the login mode).
#[derive(Clone)]
pub struct UiOptions {
    /// `ui.title`.
    pub title: String,
    /// `ui.pullhost`: the host in pull commands.
    pub pullhost: Option<String>,
    /// How people log in.
    pub login: LoginMode,
    /// The administration pages' view of the jobs and configuration; `None` shows none.
    pub admin: Option<Arc<dyn Admin>>,
    /// Signing in with an OIDC identity provider (`auth.oidc`, with the built-in token
    /// server's login mode); `None`: no such choice.
    pub oidc: Option<Arc<Oidc>>,
}

/// Shared by every UI request.
pub struct Ui {
    ctx: Arc<Ctx>,
    options: UiOptions,
    sessions: Sessions,
    /// The form token without a login (no `auth`): one per process, as everybody is the same
    /// anonymous user; it still keeps other sites from posting the UI's forms.
    open_csrf: String,
    /// Storage use per repository, kept with its age.
    usage: Arc<usage::UsageView>,
    /// Tag dates and sizes read for sorting.
    tag_facts: repo::TagFacts,
    /// The base path, ending in `/` (`/ui/`, `/registry/ui/`).
    base: String,
    /// Personal access tokens of OIDC users (with `auth.oidc` and the built-in token server).
    tokens: Option<Arc<tokens::TokenStore>>,
}

impl Ui {
    /// Whether the UI offers a login form.
    fn has_login(&self) -> bool {
        matches!(
            self.options.login,
            LoginMode::Htpasswd | LoginMode::BuiltinToken
        )
    }

    /// Checks a login (`Authorization: Basic`) the way the registry checks it: the htpasswd
    /// access controller, or the built-in token server; both count failures in the
    /// failed-login limiter. `Ok(false)`: wrong user or password.
    async fn check_login(
        &self,
        authorization: &str,
        client: Option<ClientAddr>,
    ) -> Result<bool, Denied> {
        let client = client.map(|c| c.0.ip());
        match (self.options.login, &self.ctx.auth, &self.ctx.token_issuer) {
            (LoginMode::Htpasswd, Some(controller), _) => {
                let request = AuthRequest {
                    authorization: Some(authorization),
                    client,
                    origin: None,
                };
                match controller.authorize(&request, &[]).await {
                    Ok(_) => Ok(true),
                    Err(Denied::TooManyAttempts { retry_after }) => {
                        Err(Denied::TooManyAttempts { retry_after })
                    }
                    Err(_) => Ok(false),
                }
            }
            (LoginMode::BuiltinToken, _, Some(issuer)) => {
                match berth_auth::htpasswd::parse_basic(authorization) {
                    Some((user, password)) => issuer.verify_login(client, &user, &password).await,
                    None => Ok(false),
                }
            }
            _ => Ok(false),
        }
    }

    /// Whether cookies are `Secure`: the listener speaks TLS, or `http.host` says browsers
    /// reach it over HTTPS (TLS ended by a proxy in front).
    fn secure_cookies(&self) -> bool {
        let options = &self.ctx.options;
        options.tls
            || options
                .host
                .as_deref()
                .is_some_and(|h| h.to_ascii_lowercase().starts_with("https://"))
    }
}

/// The UI's base path under `prefix` (`http.prefix`), ending in `/`.
pub fn base_path(prefix: &str) -> String {
    format!("{}/ui/", prefix.trim_end_matches('/'))
}

/// The UI's routes, to be merged with the API's router (which answers everything else).
pub fn router(ctx: Arc<Ctx>, options: UiOptions) -> Router {
    let base = base_path(&ctx.options.prefix);
    // With OIDC sign-in, the built-in token server also accepts the users' access tokens.
    let tokens = match (&options.oidc, &ctx.token_issuer) {
        (Some(_), Some(issuer)) => {
            let store = Arc::new(tokens::TokenStore::new(ctx.registry.clone()));
            issuer.use_personal_tokens(store.clone());
            Some(store)
        }
        _ => None,
    };
    let ui = Arc::new(Ui {
        tokens,
        ctx,
        options,
        sessions: Sessions::default(),
        open_csrf: session::random_hex(),
        usage: Arc::default(),
        tag_facts: repo::TagFacts::default(),
        base: base.clone(),
    });
    Router::new()
        .route(base.trim_end_matches('/'), any(handle))
        .route(&base, any(handle))
        .route(&format!("{base}{{*rest}}"), any(handle))
        .with_state(ui)
}

/// The request as the pages see it.
pub(crate) struct Page<'a> {
    pub ui: &'a Ui,
    pub headers: &'a HeaderMap,
    pub query: HashMap<String, String>,
    pub viewer: Viewer,
    client: Option<ClientAddr>,
}

/// Who is looking.
#[derive(Default)]
pub(crate) struct Viewer {
    /// The session's user.
    pub user: Option<String>,
    /// The session's `Authorization`, checked per repository.
    authorization: Option<String>,
    /// The groups of an OIDC sign-in.
    pub groups: Vec<String>,
    /// Whether the viewer signed in with OIDC.
    pub oidc: bool,
    /// The token the viewer's forms carry; empty when there is nothing to post.
    csrf: String,
}

/// Every UI response passes here: security headers and the server time.
async fn handle(State(ui): State<Arc<Ui>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let host = request.headers().get(header::HOST).cloned();
    let user_agent = request.headers().get(header::USER_AGENT).cloned();
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
    // The API's HTTP metrics, under registry:2's label scheme with the handler `ui`.
    let measured = ui.ctx.options.metrics.then(|| {
        let size = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        berth_api::metrics::InFlight::start("ui", &method, size)
    });
    let mut response = route(&ui, request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages depend on who is logged in.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.1}")) {
        h.insert("server-timing", v);
    }
    // `http.headers` and the access log, as for the API (the UI's own headers win).
    berth_api::add_configured_headers(&ui.ctx.options, h);
    if let Some(measured) = measured {
        let bytes = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        measured.finish(response.status().as_u16(), bytes);
    }
    if ui.ctx.options.access_log {
        let user = response.extensions().get::<Viewed>().map(|v| v.0.clone());
        let line = berth_api::AccessLine {
            method: &method,
            uri: &uri,
            host: host.as_ref(),
            client,
            user_agent: user_agent.as_ref(),
            started,
            user: user.as_deref(),
            repository: None,
        };
        berth_api::log_access(&line, &response);
    }
    response
}

/// The logged-in user a page was rendered for, carried to the access log.
#[derive(Clone)]
struct Viewed(String);

async fn route(ui: &Ui, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let Some(rest) = path.strip_prefix(ui.base.as_str()) else {
        // `<prefix>ui` without the slash.
        return redirect(&ui.base, None);
    };
    let rest = rest.to_owned();
    let query = parse_query(parts.uri.query());
    let client = parts.extensions.get::<ClientAddr>().copied();
    let mut page = Page {
        ui,
        headers: &parts.headers,
        query,
        viewer: Viewer::default(),
        client,
    };
    match (&parts.method, rest.as_str()) {
        (&Method::GET | &Method::HEAD, "static/ui.css") => {
            return asset(include_str!("../assets/ui.css"), "text/css; charset=utf-8")
        }
        (&Method::GET | &Method::HEAD, "static/ui.js") => {
            return asset(
                include_str!("../assets/ui.js"),
                "text/javascript; charset=utf-8",
            )
        }
        (&Method::POST, "login") => return login::login(&page, body).await,
        (&Method::GET | &Method::HEAD, "oidc/login" | "oidc/callback") => {
            let Some(oidc) = ui.options.oidc.as_deref() else {
                return page.message(
                    StatusCode::NOT_FOUND,
                    "No single sign-on",
                    "This registry has no OIDC sign-in.",
                );
            };
            return if rest == "oidc/login" {
                oidc::start(&page, oidc).await
            } else {
                oidc::callback(&page, oidc).await
            };
        }
        (&Method::POST, "logout") => return login::logout(&page).await,
        _ => {}
    }
    let post = parts.method == Method::POST;
    if !(post || matches!(parts.method, Method::GET | Method::HEAD)) {
        return page.message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "This page only answers GET and its forms' POST.",
        );
    }
    page.viewer = viewer(ui, &parts.headers, client).await;
    let form = if post {
        match page.posted_form(body).await {
            Ok(form) => Some(form),
            Err(refused) => return refused,
        }
    } else {
        None
    };
    if let Some(response) = admin::route(&page, &rest, post).await {
        return response;
    }
    if rest == "tokens" {
        return tokens::page(&page, form.as_ref()).await;
    }
    match (rest.as_str(), rest.strip_prefix("r/")) {
        ("login", _) if !post => login::form(&page, StatusCode::OK, None),
        ("", _) if !post => repos::list(&page).await,
        (_, Some(target)) => {
            if let Some(name) = target.strip_suffix("/-delete") {
                return delete::repository(&page, name, form.as_ref()).await;
            }
            match target.split_once("/-/") {
                Some((name, reference)) => match reference.strip_suffix("/delete") {
                    Some(reference) => {
                        delete::manifest(&page, name, reference, form.as_ref()).await
                    }
                    None if !post => image::show(&page, name, reference).await,
                    None => page.not_postable(),
                },
                None if !post => repo::show(&page, target).await,
                None => page.not_postable(),
            }
        }
        _ if post => page.not_postable(),
        _ => page.message(StatusCode::NOT_FOUND, "Not found", "There is no such page."),
    }
}

/// The viewer of a request: the session's user when its login still holds.
async fn viewer(ui: &Ui, headers: &HeaderMap, client: Option<ClientAddr>) -> Viewer {
    if ui.options.login == LoginMode::Open {
        return Viewer {
            csrf: ui.open_csrf.clone(),
            ..Viewer::default()
        };
    }
    if !ui.has_login() {
        return Viewer::default();
    }
    let Some(id) = session::cookie_id(headers) else {
        return Viewer::default();
    };
    let Some(s) = ui.sessions.get(&id) else {
        return Viewer::default();
    };
    let authorization = match s.login {
        Login::Password(authorization) => authorization,
        // What the identity provider vouched for, checked again with it every
        // `refresh_interval`; with `auth.oidc` gone from the configuration, so is the session.
        Login::Oidc(login) if ui.options.oidc.is_some() => {
            let Some(groups) = oidc::recheck(ui, &id, &s.user, login).await else {
                return Viewer::default();
            };
            return Viewer {
                user: Some(s.user),
                authorization: None,
                groups,
                oidc: true,
                csrf: s.csrf,
            };
        }
        Login::Oidc(_) => {
            ui.sessions.remove(&id);
            return Viewer::default();
        }
    };
    match ui.check_login(&authorization, client).await {
        Ok(true) => Viewer {
            user: Some(s.user),
            authorization: Some(authorization),
            groups: Vec::new(),
            oidc: false,
            csrf: s.csrf,
        },
        Ok(false) | Err(_) => {
            // The password changed or the user is gone: the session ends.
            ui.sessions.remove(&id);
            Viewer::default()
        }
    }
}

impl Page<'_> {
    /// Whether the viewer may pull `repository` (the name as stored and read), by the API's
    /// own access controller.
    pub async fn may_pull(&self, repository: &str) -> bool {
        self.may(repository, Action::Pull).await
    }

    /// Whether the viewer may do `action` on `repository` (the name as stored, read and
    /// deleted), by the API's own access controller.
    pub async fn may(&self, repository: &str, action: Action) -> bool {
        match self.ui.options.login {
            LoginMode::Unsupported => return false,
            // What a token from the built-in server would grant for this name: its rules,
            // for the logged-in user or for anonymous callers.
            LoginMode::BuiltinToken => {
                return self.ui.ctx.token_issuer.as_ref().is_some_and(|issuer| {
                    issuer
                        .rules()
                        .granted_to(self.principal(), repository)
                        .contains(&action)
                })
            }
            LoginMode::Open | LoginMode::Htpasswd => {}
        }
        let Some(controller) = &self.ui.ctx.auth else {
            return true;
        };
        // Anonymous callers of an htpasswd registry may read nothing; asking the controller
        // would only say so.
        let Some(authorization) = &self.viewer.authorization else {
            return false;
        };
        let request = AuthRequest {
            authorization: Some(authorization),
            client: self.client.map(|c| c.0.ip()),
            origin: None,
        };
        let needed = [Access::repository(repository, &[action])];
        controller.authorize(&request, &needed).await.is_ok()
    }

    /// Whether the viewer administers the registry: the token server's `admins`; with
    /// htpasswd any logged-in user (each may do everything through the API); without `auth`
    /// everybody, likewise.
    pub fn is_admin(&self) -> bool {
        match self.ui.options.login {
            LoginMode::Open => true,
            LoginMode::Htpasswd => self.viewer.user.is_some(),
            LoginMode::BuiltinToken => self
                .ui
                .ctx
                .token_issuer
                .as_ref()
                .is_some_and(|issuer| issuer.rules().is_admin_principal(self.principal())),
            LoginMode::Unsupported => false,
        }
    }

    /// The viewer as the token server's rules see it: user name and groups.
    fn principal(&self) -> Principal<'_> {
        Principal {
            user: self.viewer.user.as_deref(),
            groups: &self.viewer.groups,
        }
    }

    /// The hidden field every state-changing form carries.
    pub fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(&self.viewer.csrf)
        )
    }

    /// A posted form's fields, when the post comes from this site with the viewer's form
    /// token; else the page refusing it.
    async fn posted_form(&self, body: Body) -> Result<HashMap<String, String>, Response> {
        let refused = |text: &str| self.message(StatusCode::FORBIDDEN, "Refused", text);
        if !session::same_origin(self.headers) {
            return Err(refused("The form was sent from another site."));
        }
        let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
            return Err(self.message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Refused",
                "The form is too large.",
            ));
        };
        let fields = session::form_fields(&bytes);
        let sent = fields.get("csrf").map(String::as_bytes).unwrap_or_default();
        let expected = self.viewer.csrf.as_bytes();
        // Compared in constant time; an empty token (no session) never matches.
        let same = expected.len() == sent.len()
            && expected
                .iter()
                .zip(sent)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if expected.is_empty() || !same {
            return Err(refused(
                "The form has expired or was not sent from this page: go back, reload and try again.",
            ));
        }
        Ok(fields)
    }

    /// The answer to a POST where no form posts.
    fn not_postable(&self) -> Response {
        self.message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "This page only answers GET.",
        )
    }

    /// The client's address.
    pub fn client(&self) -> Option<std::net::SocketAddr> {
        self.client.map(|c| c.0)
    }

    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A paging parameter: a whole number, `default` when absent or not a number, at most
    /// `max`.
    pub fn number(&self, name: &str, default: usize, max: usize) -> usize {
        self.param(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
            .min(max)
    }

    /// The registry core.
    pub fn registry(&self) -> &berth_registry::Registry {
        &self.ui.ctx.registry
    }

    /// The UI's base path.
    pub fn base(&self) -> &str {
        &self.ui.base
    }

    /// An HTML response: `body` inside the page frame.
    pub fn html(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let frame = Frame {
            base: &self.ui.base,
            site: &self.ui.options.title,
            title,
            user: self.viewer.user.as_deref(),
            login: self.ui.has_login(),
            admin: self.is_admin() && self.ui.options.admin.is_some(),
            tokens: self.viewer.oidc && self.ui.tokens.is_some(),
        };
        let mut response = Response::new(Body::from(frame.render(body)));
        *response.status_mut() = status;
        if let Some(user) = &self.viewer.user {
            response.extensions_mut().insert(Viewed(user.clone()));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }

    /// A page with a heading and one paragraph.
    pub fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        self.html(
            status,
            title,
            &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text)),
        )
    }

    /// What to say instead of content the viewer may not see: why, and what to do.
    pub fn nothing_visible_note(&self) -> Option<String> {
        match self.ui.options.login {
            LoginMode::Open => None,
            LoginMode::Unsupported => Some(
                "This registry uses an external token server. Logging in to the web UI with \
                 it is not available yet, so the UI shows no repositories."
                    .to_owned(),
            ),
            LoginMode::Htpasswd if self.viewer.user.is_none() => Some(format!(
                "<a href=\"{}login\">Log in</a> to see the repositories you may pull.",
                esc(&self.ui.base)
            )),
            LoginMode::Htpasswd | LoginMode::BuiltinToken => None,
        }
    }

    /// The registry host for pull commands: `ui.pullhost`, else `http.host`'s host, else the
    /// `Host` the browser used.
    pub fn pull_host(&self) -> String {
        if let Some(host) = &self.ui.options.pullhost {
            return host.clone();
        }
        if let Some(host) = &self.ui.ctx.options.host {
            let host = host.split_once("://").map_or(host.as_str(), |(_, h)| h);
            let host = host.trim_end_matches('/');
            if !host.is_empty() {
                return host.to_owned();
            }
        }
        self.headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .to_owned()
    }
}

/// A `303 See Other` to `to`, setting `cookie` when given.
fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, v);
    }
    response
}

/// A compiled-in asset.
fn asset(text: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// The query string's parameters, decoded.
fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    session::form_fields(query.unwrap_or("").as_bytes())
}
