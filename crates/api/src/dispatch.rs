//! The dispatcher: parse the endpoint, match (method, endpoint) to a handler, render errors,
//! add the headers every response carries, and write the access log line.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};

use crate::endpoint::{self, Endpoint, PathError};
use crate::request::{self, Query, Req};
use crate::{
    access, blobs, catalog, manifests, metrics, mirror, referrers, tags, token, uploads, ApiError,
    ClientAddr, Ctx, ErrorCode,
};

/// The fallback handler of the router: every request comes through here.
pub async fn dispatch(State(ctx): State<Arc<Ctx>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
    let user_agent = request.headers().get(header::USER_AGENT).cloned();

    let client_addr = request.extensions().get::<ClientAddr>().copied();
    // Parsed once: the metrics label and the dispatcher both need it.
    let endpoint = api_endpoint(&ctx, &path);
    let measured = match (&endpoint, ctx.options.metrics) {
        (Ok(endpoint), true) => {
            let size = request::content_length(request.headers()).unwrap_or(0);
            let handler = metrics::handler_label(endpoint);
            Some(metrics::InFlight::start(handler, &method, size))
        }
        _ => None,
    };
    let mut response = match route(&ctx, request, client_addr, endpoint).await {
        Ok(response) => response,
        Err(error) => {
            if error.status.is_server_error() {
                tracing::error!(%method, path, code = error.code.as_str(), error = error.message, "request failed");
            } else {
                tracing::info!(%method, path, code = error.code.as_str(), status = error.status.as_u16(), error = error.message, "request rejected");
            }
            error.into_response()
        }
    };

    let headers = response.headers_mut();
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    for (name, value) in &ctx.options.headers {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    if let Some(measured) = measured {
        let bytes = request::content_length(headers).unwrap_or(0);
        measured.finish(response.status().as_u16(), bytes);
    }
    let headers = response.headers();
    if ctx.options.access_log {
        let bytes = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        tracing::info!(
            target: "access",
            client = client.map(|c| c.ip().to_string()).unwrap_or_default(),
            %method,
            path,
            status = response.status().as_u16(),
            bytes,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            user_agent = user_agent.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            "request"
        );
    }
    response
}

/// Answers the probes and the token endpoint, then the API `endpoint` (parsed from the path
/// by [`api_endpoint`]).
async fn route(
    ctx: &Ctx,
    request: Request,
    client: Option<ClientAddr>,
    endpoint: Result<Endpoint, PathError>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    // Probes for Kubernetes, Nomad and Docker HEALTHCHECK: no auth, outside http.prefix.
    match (parts.method.clone(), parts.uri.path()) {
        (Method::GET | Method::HEAD, "/healthz") => return Ok(probe(Ok(()))),
        (Method::GET | Method::HEAD, "/readyz") => {
            return Ok(match ctx.health.failures().into_iter().next() {
                Some((check, error)) => {
                    // Anyone can reach the probe: the check's target (a file path, an internal
                    // address) goes to the log only.
                    tracing::warn!(check, error, "not ready: a health check is failing");
                    text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned())
                }
                None => probe(ctx.registry.check_storage().await),
            });
        }
        (Method::GET | Method::POST, "/auth/token") => {
            return token::issue(ctx, &request_of(parts, client), body, client).await;
        }
        _ => {}
    }
    // As registry:2's health.Handler: while a health check fails, the API answers 503.
    if ctx.health.is_failing() {
        // Which check fails (a path, an internal address) is logged, not sent.
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "health check failed: the registry is unavailable until it passes",
        ));
    }
    let mut req = request_of(parts, client);
    // One name from here on: the repository actually read or written.
    let endpoint = mirror::resolve(ctx, &mut req, endpoint?)?;
    let grant = access::authorize(ctx, &req, client, &endpoint).await?;
    req.user = grant.subject.clone();
    let head = req.method == Method::HEAD;
    match (req.method.clone(), endpoint) {
        (Method::GET | Method::HEAD, Endpoint::Base) => Ok(base()),
        (Method::GET, Endpoint::Catalog) => catalog::list(ctx, &req, &grant).await,
        (Method::GET, Endpoint::Usage) => catalog::usage(ctx, &grant).await,
        (Method::GET, Endpoint::Tags(repo)) => tags::list(ctx, &req, &repo).await,
        (Method::GET | Method::HEAD, Endpoint::Manifest(repo, reference)) => {
            manifests::get(ctx, &req, &repo, &reference, head).await
        }
        (Method::PUT, Endpoint::Manifest(repo, reference)) => {
            manifests::put(ctx, &req, &repo, &reference, body).await
        }
        (Method::DELETE, Endpoint::Manifest(repo, reference)) => {
            manifests::delete(ctx, &req, &repo, &reference).await
        }
        (Method::GET | Method::HEAD, Endpoint::Blob(repo, digest)) => {
            blobs::get(ctx, &req, &repo, &digest, head).await
        }
        (Method::DELETE, Endpoint::Blob(repo, digest)) => {
            blobs::delete(ctx, &req, &repo, &digest).await
        }
        (Method::POST, Endpoint::UploadStart(repo)) => uploads::start(ctx, &req, &repo, body).await,
        (Method::GET, Endpoint::Upload(repo, id)) => uploads::status(ctx, &req, &repo, &id).await,
        (Method::PATCH, Endpoint::Upload(repo, id)) => {
            uploads::patch(ctx, &req, &repo, &id, body).await
        }
        (Method::PUT, Endpoint::Upload(repo, id)) => {
            uploads::finish(ctx, &req, &repo, &id, body).await
        }
        (Method::DELETE, Endpoint::Upload(repo, id)) => {
            uploads::cancel(ctx, &req, &repo, &id).await
        }
        (Method::GET, Endpoint::Referrers(repo, digest)) => {
            referrers::list(ctx, &req, &repo, &digest).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `GET /v2/`: the API version check; an empty JSON object like registry:2.
fn base() -> Response {
    let mut response = Response::new(Body::from("{}"));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
    response
}

/// The API endpoint of a request path. With `http.prefix`, the API lives only under the
/// prefix, as in registry:2. Probes and the token endpoint are not endpoints (and are not
/// instrumented, as registry:2 does not instrument them either).
fn api_endpoint(ctx: &Ctx, path: &str) -> Result<Endpoint, PathError> {
    let prefix = ctx.options.prefix.trim_end_matches('/');
    endpoint::parse(path.strip_prefix(prefix).ok_or(PathError::NotFound)?)
}

/// What the handlers see of a request (the body is passed on separately).
fn request_of(parts: http::request::Parts, client: Option<ClientAddr>) -> Req {
    Req {
        query: Query::parse(parts.uri.query()),
        authority: parts.uri.authority().map(|a| a.to_string()),
        method: parts.method,
        headers: parts.headers,
        client: client.map(|c| c.0),
        user: None,
        route: None,
        requested: None,
    }
}

/// `/healthz` (the process answers) and `/readyz` (storage answers): `200 ok`, or `503` with
/// the reason logged.
fn probe(result: Result<(), berth_registry::RegistryError>) -> Response {
    match result {
        Ok(()) => text_response(StatusCode::OK, "ok\n".to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed: storage does not answer");
            text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable\n".to_owned(),
            )
        }
    }
}

fn text_response(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A response with no body and the given status and headers.
pub fn empty(
    status: StatusCode,
    headers: Vec<(header::HeaderName, String)>,
) -> Result<Response, ApiError> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (name, value) in headers {
        h.insert(
            name,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}

/// A JSON response.
pub fn json(
    value: &serde_json::Value,
    content_type: &'static str,
    extra: Vec<(header::HeaderName, String)>,
) -> Result<Response, ApiError> {
    let body = value.to_string();
    let len = body.len();
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    for (name, value) in extra {
        h.insert(
            name,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}
