//! Blob endpoints: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`. Reads go to the store the
//! dispatcher picked: from storage (or its redirect URL), or, through the pull-through cache,
//! streamed from the shared upstream download while it arrives.

use axum::body::Body;
use axum::response::Response;
use berth_oci::{Digest, RepoName};
use berth_registry::read::{Blob, ReadStore};
use futures_util::TryStreamExt;
use http::{header, HeaderValue, StatusCode};

use crate::dispatch::empty;
use crate::request::{header_str, parse_range, Req};
use crate::{notify, sendfile, ApiError, Ctx, ErrorCode};

/// Serves a blob, whole or one `Range` (206), or redirects to the storage's URL.
pub async fn get(
    ctx: &Ctx,
    req: &Req,
    store: &dyn ReadStore,
    repo: &RepoName,
    digest: &Digest,
    head: bool,
) -> Result<Response, ApiError> {
    let response = serve(req, store, repo, digest, head).await?;
    notify::pulled_blob(ctx, req, repo, digest, &response);
    Ok(response)
}

/// [`get`] without the notification.
async fn serve(
    req: &Req,
    store: &dyn ReadStore,
    repo: &RepoName,
    digest: &Digest,
    head: bool,
) -> Result<Response, ApiError> {
    match store.blob(repo, digest, head).await? {
        Blob::Redirect(url) => empty(
            StatusCode::TEMPORARY_REDIRECT,
            vec![(header::LOCATION, url)],
        ),
        Blob::Stored { size } => {
            // The range is resolved before the body is opened, so open it afterwards.
            let range = resolve_range(req, Some(size))?;
            let (offset, len) = range.map_or((0, size), |(start, end)| (start, end - start + 1));
            let body = if head || len == 0 {
                Body::empty()
            } else {
                stored_body(req, store, repo, digest, offset, len).await?
            };
            respond(req, digest, Some(size), head, |_, _| Ok(body))
        }
        Blob::Unfetched { size } => respond(req, digest, size, true, |_, _| Ok(Body::empty())),
        Blob::Arriving { size, bytes } => respond(req, digest, size, head, |offset, len| {
            Ok(Body::from_stream(bytes.stream(offset, len)))
        }),
    }
}

/// `len` bytes of a stored blob from `offset`: sent from its file with `sendfile(2)` where the
/// connection and the storage allow, else read and streamed.
async fn stored_body(
    req: &Req,
    store: &dyn ReadStore,
    repo: &RepoName,
    digest: &Digest,
    offset: u64,
    len: u64,
) -> Result<Body, ApiError> {
    // A file shorter than the stat-ed size (damaged storage) fails mid-stream, logged, as a
    // read would.
    if let Some(sender) = &req.file_sender {
        if let Some(local) = store.blob_file(repo, digest).await? {
            return Ok(sendfile::file_body(sender.clone(), local.file, offset, len));
        }
    }
    let stream = store.read_blob(repo, digest, offset, Some(len)).await?;
    Ok(Body::from_stream(stream.map_err(|e| {
        tracing::error!(error = %e, "blob read failed mid-stream");
        e
    })))
}

/// The `Range` of the request resolved against the size: `None` for the whole blob (also when
/// the size is not known yet), or a 416 error.
fn resolve_range(req: &Req, size: Option<u64>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(size) = size else { return Ok(None) };
    parse_range(header_str(&req.headers, header::RANGE), size).map_err(|()| {
        ApiError::new(
            ErrorCode::RangeInvalid,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "requested range not satisfiable",
        )
        .with_header(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes */{size}"))
                .unwrap_or(HeaderValue::from_static("bytes */0")),
        )
    })
}

/// Builds the blob response (200, or 206 for a `Range`); `body(offset, len)` gives the bytes
/// (`len` `None`: to the end, when the size is not known).
fn respond(
    req: &Req,
    digest: &Digest,
    size: Option<u64>,
    head: bool,
    body: impl FnOnce(u64, Option<u64>) -> Result<Body, ApiError>,
) -> Result<Response, ApiError> {
    let range = resolve_range(req, size)?;
    let (status, offset, len) = match (range, size) {
        (Some((start, end)), _) => (StatusCode::PARTIAL_CONTENT, start, Some(end - start + 1)),
        (None, size) => (StatusCode::OK, 0, size),
    };
    let body = if head || len == Some(0) {
        Body::empty()
    } else {
        body(offset, len)?
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    let digest_value = HeaderValue::from_str(&digest.to_string()).map_err(ApiError::internal)?;
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{digest}\"")).map_err(ApiError::internal)?,
    );
    h.insert("docker-content-digest", digest_value);
    if let (StatusCode::PARTIAL_CONTENT, Some(size), Some(len)) = (status, size, len) {
        let range = format!("bytes {}-{}/{size}", offset, offset + len - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}

/// Unlinks a blob from the repository (202); the write policy already allowed it.
pub async fn delete(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    ctx.registry.delete_blob(repo, digest).await?;
    notify::deleted_blob(ctx, req, repo, digest);
    empty(
        StatusCode::ACCEPTED,
        vec![(
            header::HeaderName::from_static("docker-content-digest"),
            digest.to_string(),
        )],
    )
}
