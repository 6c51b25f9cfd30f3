//! What the in-process UI tests share: a `Basic` header, the UI merged with the API over a
//! given registry and access controller, and sending a request to it.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use base64::Engine;
use berth_api::{ApiOptions, Ctx};
use berth_auth::AccessController;
use berth_registry::Registry;
use http::{Request, StatusCode};
use tower::ServiceExt;

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The UI's routes merged with the API's, as the `berth` binary serves them.
pub fn app(
    registry: Arc<Registry>,
    options: ApiOptions,
    auth: Option<Arc<dyn AccessController>>,
    proxy: Option<Arc<berth_proxy::Proxy>>,
    login: berth_ui::LoginMode,
) -> Router {
    let ctx = Arc::new(Ctx {
        registry,
        options,
        auth,
        token_issuer: None,
        proxy,
        notifier: None,
        health: Default::default(),
    });
    let options = berth_ui::UiOptions {
        title: "t".into(),
        pullhost: None,
        login,
        admin: None,
        oidc: None,
    };
    berth_ui::router(ctx.clone(), options).merge(berth_api::app(ctx))
}

/// Sends `request`; the status, headers and body as text.
pub async fn send(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}
