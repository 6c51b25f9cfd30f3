//! The HTTP API: the OCI Distribution endpoints. A request path is parsed once into an
//! [`Endpoint`]; one `match` in [`dispatch`] sends it to a free-function handler in the module
//! of its API area. Handlers call the registry core and never touch storage paths; read
//! handlers get the store the dispatcher picked (the registry, or the pull-through cache for a
//! routed repository) and never ask which one it is.

mod access;
mod blobs;
mod catalog;
mod dispatch;
pub mod endpoint;
mod error;
pub mod health;
mod manifests;
pub mod metrics;
mod mirror;
mod notify;
#[cfg(test)]
mod pagination_fuzz;
#[cfg(test)]
mod parser_fuzz;
mod policy;
mod referrers;
mod request;
pub mod sendfile;
mod tags;
mod token;
mod uploads;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use berth_auth::AccessController;
use berth_registry::Registry;
pub use dispatch::{add_configured_headers, log_access, AccessLine};
pub use endpoint::Endpoint;
pub use error::{ApiError, ErrorCode};
use http::{HeaderName, HeaderValue};
pub use manifests::delete_for;

/// HTTP-level options from the `http` and `log` config sections.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// Headers added to every response (`http.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether to write an access log line per request (`log.accesslog.disabled` negated).
    pub access_log: bool,
    /// `http.relativeurls`: send relative `Location` headers.
    pub relative_urls: bool,
    /// `http.host`: the externally visible base URL (`https://registry.example.com`).
    pub host: Option<String>,
    /// `http.prefix`: the path the API is mounted under (`/registry/`).
    pub prefix: String,
    /// Whether the listener speaks TLS, for absolute URLs.
    pub tls: bool,
    /// `http.debug.prometheus.enabled`: record HTTP metrics.
    pub metrics: bool,
    /// Where a browser asking for `/` is sent (the web UI, when it is on). Other clients
    /// (monitoring probes, curl) still get registry:2's empty `200`.
    pub root_redirect: Option<String>,
}

/// Everything a handler needs: shared by all requests.
pub struct Ctx {
    /// The registry core.
    pub registry: Arc<Registry>,
    /// HTTP options.
    pub options: ApiOptions,
    /// Who may do what (`auth`); `None` lets everyone do everything, like registry:2
    /// without an `auth` section.
    pub auth: Option<Arc<dyn AccessController>>,
    /// The built-in token server (`auth.token.builtin`), answering `/auth/token`.
    pub token_issuer: Option<Arc<berth_auth::issuer::TokenIssuer>>,
    /// The pull-through cache (`proxy`); `None` serves stored content only.
    pub proxy: Option<Arc<berth_proxy::Proxy>>,
    /// Where events go (`notifications`); `None` when no endpoint is enabled.
    pub notifier: Option<berth_notify::Notifier>,
    /// The configured health checks (`health`); with none registered, always healthy.
    pub health: Arc<health::HealthState>,
}

/// The client's address, put into request extensions by the server's accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Builds the application router; the server and in-process tests both use it.
pub fn app(ctx: Arc<Ctx>) -> Router {
    Router::new().fallback(dispatch::dispatch).with_state(ctx)
}
