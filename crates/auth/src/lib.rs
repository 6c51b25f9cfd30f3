//! Who may do what: the one [`AccessController`] trait the HTTP API asks, once per request,
//! with the access the parsed endpoint needs (STYLE.md §8), and its implementations:
//!
//! - [`htpasswd::HtpasswdController`]: registry:2's `auth.htpasswd`, HTTP basic auth against a
//!   bcrypt htpasswd file; every authenticated user may do everything, as in registry:2.
//! - [`token::TokenController`]: registry:2's `auth.token`, bearer JWTs from a token service.
//! - [`issuer::TokenIssuer`]: the built-in token server, and [`rules::AccessRules`]: who may
//!   do what on which repositories (both Berth extensions; the issuer's
//!   [`issuer::TokenIssuer::controller`] is the registry side).
//!
//! Nothing here knows HTTP beyond header values: the API turns a [`Denied`] into the
//! registry:2 response (status, `WWW-Authenticate`, OCI error JSON).

pub mod access;
mod files;
pub mod htpasswd;
pub mod issuer;
pub mod limiter;
pub mod personal;
pub mod rules;
pub mod token;

use std::net::IpAddr;
use std::time::Duration;

pub use access::{Access, Action, Resource};

/// What the controller sees of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthRequest<'a> {
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The client's IP address (failed-login rate limiting).
    pub client: Option<IpAddr>,
    /// The `Host` the client used, with scheme, e.g. `https://reg.lan:5000` (token
    /// `autoredirect` builds the realm from it).
    pub origin: Option<&'a str>,
}

/// A request that may go ahead, and on whose behalf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The authenticated user or service account; `None` for anonymous access.
    pub subject: Option<String>,
    /// The groups the identity provider put the subject in (OIDC users' tokens); the
    /// catalog is filtered by the rules for the subject and these groups.
    pub groups: Vec<String>,
}

/// Why a request may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No or bad credentials, or a token without the needed scope: 401 `UNAUTHORIZED`
    /// with this `WWW-Authenticate` challenge.
    Unauthorized {
        /// The `WWW-Authenticate` header value.
        challenge: String,
        /// Why, for the error JSON (never contains a credential).
        message: String,
    },
    /// Authenticated, but the rules do not allow this: 403 `DENIED`.
    Forbidden {
        /// Why, for the error JSON.
        message: String,
    },
    /// Too many failed logins from this client: 429 `TOOMANYREQUESTS`.
    TooManyAttempts {
        /// When the client may try again.
        retry_after: Duration,
    },
}

/// Decides, once per request, whether the caller may have the access the endpoint needs.
#[async_trait::async_trait]
pub trait AccessController: Send + Sync {
    /// Checks the credentials in `request` against `needed` (empty for `GET /v2/`, which
    /// only needs a valid login). Every entry of `needed` must be granted.
    async fn authorize(
        &self,
        request: &AuthRequest<'_>,
        needed: &[Access],
    ) -> Result<Grant, Denied>;

    /// Whether `grant` may see `repository` in the catalog. Controllers without per-repository
    /// rules show everything, as registry:2 does.
    fn may_list(&self, grant: &Grant, repository: &str) -> bool {
        let _ = (grant, repository);
        true
    }
}
