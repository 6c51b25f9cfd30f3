//! The login page (the password form, and "Sign in with …" when `auth.oidc` is set), the
//! password login and the logout.

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use berth_auth::Denied;
use http::{header, HeaderValue, StatusCode};

use crate::html::esc;
use crate::session::{self, Login};
use crate::{oidc, redirect, LoginMode, Page};

/// `POST login`: checks the form's user and password with the access controller (and so
/// through its failed-login limiter), then starts a session.
pub(crate) async fn login(page: &Page<'_>, body: Body) -> Response {
    let ui = page.ui;
    if !ui.has_login() {
        return page.message(
            StatusCode::NOT_FOUND,
            "No login",
            "This registry has no login for the web UI.",
        );
    }
    if !session::same_origin(page.headers) {
        return page.message(
            StatusCode::FORBIDDEN,
            "Refused",
            "The login form was sent from another site.",
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return form(
            page,
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("The form is too large."),
        );
    };
    let fields = session::form_fields(&bytes);
    let user = fields.get("username").map(String::as_str).unwrap_or("");
    let password = fields.get("password").map(String::as_str).unwrap_or("");
    if user.is_empty() || user.contains(':') || password.is_empty() {
        return form(
            page,
            StatusCode::UNAUTHORIZED,
            Some("Enter a user name and a password."),
        );
    }
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    match ui.check_login(&authorization, page.client).await {
        Ok(true) => {
            tracing::info!(user, "web UI login");
            let id = ui
                .sessions
                .create(user.to_owned(), Login::Password(authorization));
            let cookie = session::set_cookie(Some(&id), &ui.base, ui.secure_cookies());
            redirect(&ui.base, Some(cookie))
        }
        Err(Denied::TooManyAttempts { retry_after }) => {
            let mut response = form(
                page,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed logins; try again later."),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            response
        }
        Ok(false) | Err(_) => form(
            page,
            StatusCode::UNAUTHORIZED,
            Some("Invalid user name or password."),
        ),
    }
}

/// `POST logout`: ends the session and clears the cookie; an OIDC session is ended at the
/// provider too, when it can.
pub(crate) async fn logout(page: &Page<'_>) -> Response {
    let ui = page.ui;
    if !session::same_origin(page.headers) {
        return page.message(
            StatusCode::FORBIDDEN,
            "Refused",
            "The logout form was sent from another site.",
        );
    }
    let mut to = ui.base.clone();
    if let Some(id) = session::cookie_id(page.headers) {
        if let (Some(oidc), Some(Login::Oidc(login))) = (
            ui.options.oidc.as_ref(),
            ui.sessions.get(&id).map(|s| s.login),
        ) {
            if let Some(token) = login.refresh_token {
                oidc::revoke_in_background(oidc, token);
            }
            if let Some(url) = oidc::end_session_url(oidc, &login.id_token).await {
                to = url;
            }
        }
        ui.sessions.remove(&id);
    }
    let cookie = session::set_cookie(None, &ui.base, ui.secure_cookies());
    redirect(&to, Some(cookie))
}

/// The login form, with an error when a login failed. No `WWW-Authenticate` is ever sent, so
/// the browser shows no Basic-auth dialog.
pub(crate) fn form(page: &Page<'_>, status: StatusCode, error: Option<&str>) -> Response {
    let body = match page.ui.options.login {
        LoginMode::Htpasswd | LoginMode::BuiltinToken => format!(
            "<h1>Log in</h1>{}<form class=\"login\" method=\"post\" action=\"{}login\">\
             <label for=\"username\">User name</label>\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" required>\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Log in</button></form>{}",
            error.map_or_else(String::new, |e| format!("<p class=\"warn\" role=\"alert\">{}</p>", esc(e))),
            esc(&page.ui.base),
            page.ui.options.oidc.as_ref().map_or_else(String::new, |oidc| format!(
                "<p class=\"sso\"><a class=\"button\" href=\"{}oidc/login\">Sign in with {}</a></p>",
                esc(&page.ui.base),
                esc(oidc.name())
            ))
        ),
        LoginMode::Unsupported => format!(
            "<h1>Log in</h1><p class=\"warn\">{}</p>",
            esc(&page.nothing_visible_note().unwrap_or_default())
        ),
        LoginMode::Open => "<h1>Log in</h1><p>This registry needs no login.</p>".to_owned(),
    };
    page.html(status, "Log in", &body)
}
