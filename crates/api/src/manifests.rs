//! Manifest endpoints: `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::response::Response;
use berth_oci::{Reference, RepoName, MAX_MANIFEST_SIZE};
use berth_registry::read::ReadStore;
use http::{header, HeaderName, HeaderValue, StatusCode};

use crate::dispatch::empty;
use crate::request::{content_length, header_str, read_limited, url, Req};
use crate::{notify, ApiError, Ctx, ErrorCode};

const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");

/// Serves a manifest's exact bytes with the media type they were pushed with, from the store
/// the dispatcher picked (the registry, or the pull-through cache).
pub async fn get(
    ctx: &Ctx,
    req: &Req,
    store: &dyn ReadStore,
    repo: &RepoName,
    reference: &Reference,
    head: bool,
) -> Result<Response, ApiError> {
    let m = store.manifest(repo, reference).await?;
    notify::pulled_manifest(ctx, req, repo, reference, &m);
    let len = m.body.len();
    let mut response = Response::new(if head {
        Body::empty()
    } else {
        Body::from(m.body)
    });
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&m.media_type).map_err(ApiError::internal)?,
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let digest = m.digest.to_string();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{digest}\"")).map_err(ApiError::internal)?,
    );
    h.insert(
        CONTENT_DIGEST,
        HeaderValue::from_str(&digest).map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// Stores a manifest (201 with `Location`, `Docker-Content-Digest` and, for a manifest with a
/// subject, `OCI-Subject`).
pub async fn put(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    reference: &Reference,
    body: Body,
) -> Result<Response, ApiError> {
    if content_length(&req.headers).is_some_and(|len| len > MAX_MANIFEST_SIZE as u64) {
        return Err(ApiError::new(
            ErrorCode::ManifestInvalid,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("manifest exceeds {MAX_MANIFEST_SIZE} bytes"),
        ));
    }
    let body = read_limited(body, MAX_MANIFEST_SIZE).await?;
    let content_type = header_str(&req.headers, header::CONTENT_TYPE);
    let stored = ctx
        .registry
        .put_manifest(repo, reference, content_type, body.clone())
        .await?;
    notify::pushed_manifest(ctx, req, repo, reference, &stored, &body);
    let location = url(
        ctx,
        &req.headers,
        &format!("/v2/{repo}/manifests/{}", stored.digest),
    );
    let mut headers = vec![
        (header::LOCATION, location),
        (CONTENT_DIGEST, stored.digest.to_string()),
    ];
    if let Some(subject) = stored.subject {
        headers.push((OCI_SUBJECT, subject.to_string()));
    }
    empty(StatusCode::CREATED, headers)
}

/// Deletes a tag, or a manifest and the tags pointing at it (202).
pub async fn delete(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    delete_and_notify(ctx, req, repo, reference).await?;
    empty(StatusCode::ACCEPTED, vec![])
}

/// The one delete path: deletes `reference` and sends the events (one per tag that went
/// with a manifest). The API's DELETE and the web UI both come here.
async fn delete_and_notify(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    reference: &Reference,
) -> Result<(), berth_registry::RegistryError> {
    let tags = notify::tags_to_delete(ctx, repo, reference).await;
    ctx.registry.delete_manifest(repo, reference).await?;
    notify::deleted_manifest(ctx, req, repo, reference, &tags);
    Ok(())
}

/// Deletes a tag, or a manifest with its tags, for a caller outside the API (the web UI),
/// already authorized by it: the same registry call and notifications as `DELETE`, with
/// `user` and `client` as the events' actor and address. Refuses names the pull-through cache
/// keeps read-only, as the API does.
pub async fn delete_for(
    ctx: &Ctx,
    repo: &RepoName,
    reference: &Reference,
    user: Option<&str>,
    client: Option<std::net::SocketAddr>,
) -> Result<(), ApiError> {
    if let Some(proxy) = &ctx.proxy {
        let route = proxy.route(repo, None).filter(|r| &r.local == repo);
        if proxy.write_refusal(repo, route.as_ref()).is_some() {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                StatusCode::METHOD_NOT_ALLOWED,
                "The pull-through cache keeps this repository read-only.",
            ));
        }
    }
    let req = Req {
        method: http::Method::DELETE,
        headers: http::HeaderMap::new(),
        query: crate::request::Query::parse(None),
        authority: None,
        client,
        user: user.map(str::to_owned),
        route: None,
        requested: Some(repo.clone()),
        file_sender: None,
    };
    Ok(delete_and_notify(ctx, &req, repo, reference).await?)
}
