//! The dispatcher: parse the endpoint, resolve its repository, authorize it and apply the write
//! policy, pick the read store (registry or pull-through cache), match (method, endpoint) to a
//! handler, render errors, add the headers every response carries, and write the access log
//! line.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};

use berth_oci::OciError;
use berth_registry::read::ReadStore;

use crate::endpoint::{self, Endpoint, PathError};
use crate::request::{self, Query, Req};
use crate::{
    access, blobs, catalog, manifests, metrics, mirror, policy, referrers, tags, token, uploads,
    ApiError, ClientAddr, Ctx, ErrorCode,
};

/// What the access log tells of a request beyond what the dispatcher sees itself: set by
/// [`route`] as it learns it, so a refused request is logged with what was known.
#[derive(Default)]
struct Seen {
    /// The authenticated user.
    user: Option<String>,
    /// The repository the request resolved to (the name actually read or written).
    repository: Option<String>,
}

/// The fallback handler of the router: every request comes through here.
pub async fn dispatch(State(ctx): State<Arc<Ctx>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Kept as they came (a `Uri` clone shares its bytes); formatted only for a log line.
    let uri = request.uri().clone();
    let host = request.headers().get(header::HOST).cloned();
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
    let mut seen = Seen::default();
    let mut response = match route(&ctx, request, client_addr, endpoint, &mut seen).await {
        Ok(response) => response,
        Err(error) => {
            if error.status.is_server_error() {
                tracing::error!(%method, uri = loggable_uri(&uri), code = error.code.as_str(), error = error.message, "request failed");
            } else {
                tracing::info!(%method, uri = loggable_uri(&uri), code = error.code.as_str(), status = error.status.as_u16(), error = error.message, "request rejected");
            }
            error.into_response()
        }
    };

    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    add_configured_headers(&ctx.options, response.headers_mut());
    if let Some(measured) = measured {
        let bytes = request::content_length(response.headers()).unwrap_or(0);
        measured.finish(response.status().as_u16(), bytes);
    }
    if ctx.options.access_log {
        let line = AccessLine {
            method: &method,
            uri: &uri,
            host: host.as_ref(),
            client,
            user_agent: user_agent.as_ref(),
            started,
            user: seen.user.as_deref(),
            repository: seen.repository.as_deref(),
        };
        log_access(&line, &response);
    }
    response
}

/// `http.headers`: every configured value is added to `headers` (a list gives several values,
/// as in registry:2), unless the response set that header itself. Shared by the API and the
/// web UI.
pub fn add_configured_headers(options: &crate::ApiOptions, headers: &mut http::HeaderMap) {
    let own: Vec<header::HeaderName> = options
        .headers
        .iter()
        .filter(|(name, _)| headers.contains_key(name))
        .map(|(name, _)| name.clone())
        .collect();
    for (name, value) in &options.headers {
        if !own.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// What the access log line tells of a request.
pub struct AccessLine<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI (secrets in its query are redacted when logged).
    pub uri: &'a http::Uri,
    /// The `Host` header.
    pub host: Option<&'a HeaderValue>,
    /// The client's address.
    pub client: Option<std::net::SocketAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a HeaderValue>,
    /// When the request arrived.
    pub started: Instant,
    /// The authenticated user.
    pub user: Option<&'a str>,
    /// The repository the request resolved to.
    pub repository: Option<&'a str>,
}

/// Writes registry:2's "response completed" access log line (its field names, so log
/// pipelines built for it keep working). Shared by the API and the web UI.
pub fn log_access(line: &AccessLine<'_>, response: &Response) {
    let headers = response.headers();
    let written = request::content_length(headers);
    let content_type = request::header_str(headers, header::CONTENT_TYPE).unwrap_or("");
    let uri = line.uri;
    tracing::info!(
        target: "access",
        // A plain first field: the macro cannot tell a dotted first name from its tail.
        status = response.status().as_u16(),
        http.request.method = %line.method,
        http.request.uri = loggable_uri(uri),
        http.request.host = line
            .host
            .and_then(|h| h.to_str().ok())
            .or(uri.authority().map(|a| a.as_str()))
            .unwrap_or(""),
        http.request.remoteaddr = line.client.map(|c| c.to_string()).unwrap_or_default(),
        http.request.useragent = line.user_agent.and_then(|v| v.to_str().ok()).unwrap_or(""),
        http.response.status = response.status().as_u16(),
        http.response.written = written,
        http.response.contenttype = content_type,
        http.response.duration = format!("{:?}", line.started.elapsed()),
        auth.user.name = line.user,
        vars.name = line.repository,
        "response completed"
    );
}

/// The request URI as logged: a value that might be a credential is replaced, since access
/// logs are kept and shipped (a client that put a password in a token URL is refused, but
/// the refused request is logged too).
fn loggable_uri(uri: &http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            // Compared decoded, as the handlers read it: `pass%77ord` is a password too.
            Some((key, _)) if is_secret_param(key) => format!("{key}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", redacted.join("&"))
}

/// Query parameters whose values are never logged.
const SECRET_PARAMS: &[&str] = &["password", "access_token", "refresh_token", "token"];

/// Whether a raw (percent-encoded) query key names a secret.
fn is_secret_param(raw_key: &str) -> bool {
    let key = percent_encoding::percent_decode_str(&raw_key.replace('+', " "))
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    SECRET_PARAMS.contains(&key.trim())
}

/// Answers the probes and the token endpoint, then the API `endpoint` (parsed from the path
/// by [`api_endpoint`]).
async fn route(
    ctx: &Ctx,
    request: Request,
    client: Option<ClientAddr>,
    endpoint: Result<Endpoint, PathError>,
    seen: &mut Seen,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    // Probes for Kubernetes, Nomad and Docker HEALTHCHECK: no auth, outside http.prefix.
    match (parts.method.clone(), parts.uri.path()) {
        // registry:2 answers its root with 200 (uptime checks point at it); a browser (one
        // that asks for HTML) is sent to the web UI when it is on.
        (Method::GET | Method::HEAD, "/") => {
            return match &ctx.options.root_redirect {
                Some(to) if accepts_html(&parts.headers) => {
                    empty(StatusCode::SEE_OTHER, vec![(header::LOCATION, to.clone())])
                }
                _ => empty(StatusCode::OK, Vec::new()),
            };
        }
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
    let endpoint = match endpoint {
        // A reference that cannot be a tag names no manifest: reads and deletes answer
        // MANIFEST_UNKNOWN as the spec's conformance suite expects; a PUT stays TAG_INVALID.
        Err(PathError::Invalid(OciError::InvalidTag(tag)))
            if matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE) =>
        {
            return Err(ApiError::new(
                ErrorCode::ManifestUnknown,
                StatusCode::NOT_FOUND,
                format!("manifest unknown: {tag:?} is not a valid tag"),
            ));
        }
        // CORS preflights carry no credentials: answered for every endpoint, before auth,
        // with the methods it takes (registry:2 answers OPTIONS too).
        Ok(endpoint) if parts.method == Method::OPTIONS => {
            return empty(
                StatusCode::OK,
                vec![(header::ALLOW, allowed_methods(&endpoint).to_owned())],
            );
        }
        other => other?,
    };
    let mut req = request_of(parts, client);
    // One name from here on: the repository actually read or written.
    let endpoint = match mirror::resolve(ctx, &mut req, endpoint.clone()) {
        Ok(resolved) => resolved,
        // A refused routing (a `?ns=` no upstream stands for) is answered only to a caller
        // who may use the name as written: nobody learns the configuration by probing.
        Err(refusal) => {
            let named = mirror::without_ns(ctx, endpoint);
            access::authorize(ctx, &req, client, &named).await?;
            return Err(refusal);
        }
    };
    seen.repository = endpoint.repository().map(|r| r.to_string());
    let grant = access::authorize(ctx, &req, client, &endpoint).await?;
    req.user = grant.subject.clone();
    seen.user = grant.subject.clone();
    policy::check(ctx, &req, &endpoint)?;
    // Reads go to one store, picked here once: the pull-through cache for a routed
    // repository, else the registry.
    let through = mirror::read_through(ctx, &req);
    let store: &dyn ReadStore = match &through {
        Some(through) => through,
        None => ctx.registry.as_ref(),
    };
    let head = req.method == Method::HEAD;
    match (req.method.clone(), endpoint) {
        (Method::GET | Method::HEAD, Endpoint::Base) => Ok(base()),
        (Method::GET, Endpoint::Catalog) => catalog::list(ctx, &req, &grant).await,
        (Method::GET, Endpoint::Usage) => catalog::usage(ctx, &grant).await,
        (Method::GET, Endpoint::Tags(repo)) => tags::list(ctx, &req, store, &repo).await,
        (Method::GET | Method::HEAD, Endpoint::Manifest(repo, reference)) => {
            manifests::get(ctx, &req, store, &repo, &reference, head).await
        }
        (Method::PUT, Endpoint::Manifest(repo, reference)) => {
            manifests::put(ctx, &req, &repo, &reference, body).await
        }
        (Method::DELETE, Endpoint::Manifest(repo, reference)) => {
            manifests::delete(ctx, &req, &repo, &reference).await
        }
        (Method::GET | Method::HEAD, Endpoint::Blob(repo, digest)) => {
            blobs::get(ctx, &req, store, &repo, &digest, head).await
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
        (Method::DELETE, Endpoint::Upload(repo, id)) => uploads::cancel(ctx, &repo, &id).await,
        (Method::GET, Endpoint::Referrers(repo, digest)) => {
            referrers::list(&req, store, &repo, &digest).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Whether the client asks for an HTML page (browsers do; probes and curl do not).
fn accepts_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// The methods an endpoint answers, for `Allow`.
fn allowed_methods(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Base => "GET, HEAD, OPTIONS",
        Endpoint::Catalog | Endpoint::Usage | Endpoint::Tags(_) | Endpoint::Referrers(..) => {
            "GET, OPTIONS"
        }
        Endpoint::Manifest(..) => "GET, HEAD, PUT, DELETE, OPTIONS",
        Endpoint::Blob(..) => "GET, HEAD, DELETE, OPTIONS",
        Endpoint::UploadStart(_) => "POST, OPTIONS",
        Endpoint::Upload(..) => "GET, PATCH, PUT, DELETE, OPTIONS",
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
        file_sender: crate::sendfile::FileSender::of(&parts),
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
