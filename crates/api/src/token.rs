//! `GET|POST /auth/token`: Berth's built-in token server (`auth.token.builtin`), in the
//! Docker token protocol: `GET` with `Authorization: Basic` and `service`/`scope` query
//! parameters (Docker, skopeo), or `POST` with an OAuth2 `grant_type=password` form
//! (containerd). The issuing logic lives in `berth_auth::issuer`; this is its HTTP face.

use axum::body::Body;
use axum::response::Response;
use berth_auth::htpasswd::client_text;
use berth_auth::AuthRequest;
use http::{header, Method};

use crate::access::denied;
use crate::dispatch::json;
use crate::request::{read_small_body, Query, Req};
use crate::{ApiError, ClientAddr, Ctx, ErrorCode};

/// The largest token request form accepted.
const FORM_LIMIT: usize = 64 * 1024;

/// Answers a token request, or 404 when the built-in token server is not configured.
pub async fn issue(
    ctx: &Ctx,
    req: &Req,
    body: Body,
    client: Option<ClientAddr>,
) -> Result<Response, ApiError> {
    let Some(issuer) = &ctx.token_issuer else {
        return Err(crate::endpoint::PathError::NotFound.into());
    };
    if req.query.get("password").is_some() {
        // URLs end up in access logs, proxy logs and shell history.
        let client = client_text(client.map(|c| c.0.ip()));
        tracing::warn!(
            client,
            "token request refused: a password in the query string"
        );
        return Err(ApiError::bad_request(
            ErrorCode::Unsupported,
            "credentials in the URL are refused: send them in the Authorization header or a POST form",
        ));
    }
    let mut params: Vec<(String, String)> = req.query.pairs().to_vec();
    if req.method == Method::POST {
        let form = read_small_body(body, FORM_LIMIT, ErrorCode::Unsupported, "token form").await?;
        params.extend(
            Query::parse(Some(&String::from_utf8_lossy(&form)))
                .pairs()
                .to_vec(),
        );
    }
    let request = AuthRequest {
        authorization: req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
        client: client.map(|c| c.0.ip()),
        origin: None,
    };
    let token = issuer.issue(&request, &params).await.map_err(denied)?;
    let value = serde_json::to_value(&token).map_err(ApiError::internal)?;
    json(&value, "application/json", Vec::new())
}
