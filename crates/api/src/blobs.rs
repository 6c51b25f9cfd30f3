//! Blob endpoints: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::response::Response;
use berth_oci::{Digest, RepoName};
use futures_util::TryStreamExt;
use http::{header, HeaderValue, StatusCode};

use crate::dispatch::empty;
use crate::request::{header_str, parse_range, Req};
use crate::{ApiError, Ctx, ErrorCode};

/// Serves a blob, whole or one `Range` (206), or redirects to the storage's URL.
pub async fn get(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    digest: &Digest,
    head: bool,
) -> Result<Response, ApiError> {
    let size = ctx.registry.stat_blob(repo, digest).await?;
    if !head {
        if let Some(url) = ctx.registry.blob_redirect_url(digest).await? {
            return empty(
                StatusCode::TEMPORARY_REDIRECT,
                vec![(header::LOCATION, url)],
            );
        }
    }
    let range = parse_range(header_str(&req.headers, header::RANGE), size).map_err(|()| {
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
    })?;
    let (status, offset, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        let stream = ctx.registry.read_blob(digest, offset, Some(len)).await?;
        Body::from_stream(stream.map_err(|e| {
            tracing::error!(error = %e, "blob read failed mid-stream");
            e
        }))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    let digest_value = HeaderValue::from_str(&digest.to_string()).map_err(ApiError::internal)?;
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
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
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {}-{}/{size}", offset, offset + len - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}

/// Unlinks a blob from the repository (202), when deletes are enabled.
pub async fn delete(ctx: &Ctx, repo: &RepoName, digest: &Digest) -> Result<Response, ApiError> {
    ctx.registry.delete_blob(repo, digest).await?;
    empty(
        StatusCode::ACCEPTED,
        vec![(
            header::HeaderName::from_static("docker-content-digest"),
            digest.to_string(),
        )],
    )
}
