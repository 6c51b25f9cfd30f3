//! Authorization, decided once per request in the dispatcher from the parsed [`Endpoint`]
//! (STYLE.md §8): what access the endpoint needs, as registry:2 asks for it, and how a refusal
//! is answered.

use berth_auth::{Access, Action, AuthRequest, Denied, Grant};
use http::{header, HeaderValue, Method, StatusCode};

use crate::request::Req;
use crate::uploads::{mount_request, Mount};
use crate::{ApiError, ClientAddr, Ctx, Endpoint, ErrorCode};

/// The access `method` on `endpoint` needs, as registry:2 derives it: reads need `pull`,
/// writes `pull,push`, deletes `delete`, the catalog `registry:catalog:*`, and a mount
/// also `pull` on the source repository. `GET /v2/` needs only a valid login.
pub fn needed(ctx: &Ctx, method: &Method, endpoint: &Endpoint, req: &Req) -> Vec<Access> {
    let Some(repo) = endpoint.repository() else {
        return match endpoint {
            // Usage lists repositories like the catalog does, so it needs what the catalog needs.
            Endpoint::Catalog | Endpoint::Usage => vec![Access::catalog()],
            _ => Vec::new(),
        };
    };
    let actions: &[Action] = match *method {
        Method::GET | Method::HEAD => &[Action::Pull],
        Method::DELETE => &[Action::Delete],
        _ => &[Action::Pull, Action::Push],
    };
    let mut needed = vec![Access::repository(repo.as_str(), actions)];
    if let Endpoint::UploadStart(_) = endpoint {
        if let Some(Mount {
            from: Some(from), ..
        }) = mount_request(ctx, req)
        {
            if from != *repo {
                needed.push(Access::repository(from.as_str(), &[Action::Pull]));
            }
        }
    }
    needed
}

/// Asks the configured access controller for what `endpoint` needs; without one, everyone
/// may do everything (and nothing is computed on the request path).
pub async fn authorize(
    ctx: &Ctx,
    req: &Req,
    client: Option<ClientAddr>,
    endpoint: &Endpoint,
) -> Result<Grant, ApiError> {
    let Some(controller) = &ctx.auth else {
        return Ok(Grant::default());
    };
    let needed = needed(ctx, &req.method, endpoint, req);
    // HTTP/1.1 sends `Host`; HTTP/2 sends `:authority`, which arrives in the URI.
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(req.authority.as_deref())
        .unwrap_or("localhost");
    let scheme = if ctx.options.tls { "https" } else { "http" };
    let origin = format!("{scheme}://{host}");
    let request = AuthRequest {
        authorization: req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
        client: client.map(|c| c.0.ip()),
        origin: Some(&origin),
    };
    let result = controller.authorize(&request, &needed).await;
    if let Err(refusal) = &result {
        crate::metrics::auth_failure(match refusal {
            // The first request of every Docker login carries no credentials: a challenge,
            // not a failure.
            Denied::Unauthorized { .. } if request.authorization.is_none() => "challenge",
            Denied::Unauthorized { .. } => "invalid_credentials",
            Denied::Forbidden { .. } => "forbidden",
            Denied::TooManyAttempts { .. } => "rate_limited",
        });
    }
    result.map_err(denied)
}

/// The registry:2 answer to a refusal.
pub fn denied(denied: Denied) -> ApiError {
    match denied {
        Denied::Unauthorized { challenge, message } => {
            let e = ApiError::new(ErrorCode::Unauthorized, StatusCode::UNAUTHORIZED, message);
            match HeaderValue::from_str(&challenge) {
                Ok(v) => e.with_header(header::WWW_AUTHENTICATE, v),
                Err(_) => e,
            }
        }
        Denied::Forbidden { message } => {
            ApiError::new(ErrorCode::Denied, StatusCode::FORBIDDEN, message)
        }
        Denied::TooManyAttempts { retry_after } => ApiError::new(
            ErrorCode::TooManyRequests,
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again later",
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs().max(1)),
        ),
    }
}
