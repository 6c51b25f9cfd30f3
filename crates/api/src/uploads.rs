//! Upload endpoints: `POST /v2/<name>/blobs/uploads/` (session, monolithic or mount) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<uuid>`.

use axum::body::Body;
use axum::response::Response;
use berth_notify::Action;
use berth_oci::{Digest, RepoName};
use http::{header, HeaderName, StatusCode};

use crate::dispatch::empty;
use crate::request::{body_stream, content_length, header_str, parse_content_range, url, Req};
use crate::{mirror, notify, ApiError, Ctx, ErrorCode};

const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// The `Range` header value for an upload that holds `size` bytes (registry:2 sends `0-0` when
/// empty).
fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_location(ctx: &Ctx, req: &Req, repo: &RepoName, id: &str) -> String {
    url(ctx, &req.headers, &format!("/v2/{repo}/blobs/uploads/{id}"))
}

fn blob_created(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    let location = url(ctx, &req.headers, &format!("/v2/{repo}/blobs/{digest}"));
    empty(
        StatusCode::CREATED,
        vec![
            (header::LOCATION, location),
            (CONTENT_DIGEST, digest.to_string()),
        ],
    )
}

fn session_response(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    id: &str,
    size: u64,
    status: StatusCode,
) -> Result<Response, ApiError> {
    empty(
        status,
        vec![
            (header::LOCATION, upload_location(ctx, req, repo, id)),
            (header::RANGE, range_value(size)),
            (UPLOAD_UUID, id.to_owned()),
        ],
    )
}

fn digest_param(req: &Req) -> Result<Option<Digest>, ApiError> {
    req.query
        .get("digest")
        .map(|d| d.parse::<Digest>().map_err(ApiError::from))
        .transpose()
}

/// A cross-repository mount a request asks for: the blob, and the repository it is read
/// from, resolved like a pull of that name ([`mirror::resolve_source`]).
pub struct Mount {
    /// The blob to link.
    pub digest: Digest,
    /// The source repository; `None` when the client named none.
    pub from: Option<RepoName>,
}

/// The mount `req` asks for, if its `mount` (and `from`, when given) parse. Without `from`,
/// a mount is only tried when no `auth` is configured: with auth, linking a blob found in
/// *some* repository would let a caller read any blob whose digest it knows, and 201 versus
/// 202 would tell it which digests are stored anywhere. registry:2 never mounts without
/// `from` either.
pub fn mount_request(ctx: &Ctx, req: &Req) -> Option<Mount> {
    let digest = req.query.get("mount")?.parse().ok()?;
    let from = match req.query.get("from").filter(|f| !f.is_empty()) {
        Some(f) => Some(mirror::resolve_source(ctx, f.parse().ok()?)),
        None if ctx.auth.is_some() => return None,
        None => None,
    };
    Some(Mount { digest, from })
}

/// Starts an upload: a cross-repository mount (201) when `mount` is given and possible, a
/// monolithic upload (201) when `digest` is given, else a new session (202).
pub async fn start(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = req.query.get("mount") {
        // Mount arguments that do not parse (or a mount that may not be tried) start a
        // session (202) like registry:2: the client uploads the blob, which the spec allows
        // for any failed mount.
        if let Some(Mount { digest, from }) = mount_request(ctx, req) {
            let mounted = ctx.registry.mount_blob(from.as_ref(), repo, &digest);
            if let Some(size) = mounted.await? {
                let from = from.as_ref();
                notify::blob(ctx, req, Action::Mount, repo, &digest, Some(size), from);
                return blob_created(ctx, req, repo, &digest);
            }
        } else {
            tracing::info!(
                mount,
                from = req.query.get("from"),
                "mount not tried (unusable arguments, or no source repository named while auth is on); starting an upload instead"
            );
        }
    } else if let Some(digest) = digest_param(req)? {
        let size = ctx
            .registry
            .put_blob(repo, &digest, body_stream(body))
            .await?;
        notify::blob(ctx, req, Action::Push, repo, &digest, Some(size), None);
        return blob_created(ctx, req, repo, &digest);
    }
    let id = ctx.registry.start_upload(repo).await?;
    session_response(ctx, req, repo, &id, 0, StatusCode::ACCEPTED)
}

/// Reports how much an upload has received (204 with `Range`).
pub async fn status(ctx: &Ctx, req: &Req, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    let size = ctx.registry.upload_status(repo, id).await?;
    session_response(ctx, req, repo, id, size, StatusCode::NO_CONTENT)
}

/// Parses Content-Range and checks it against Content-Length before any byte is stored.
fn chunk_range(req: &Req) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = header_str(&req.headers, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let (start, len) = parse_content_range(value)?;
    if let Some(cl) = content_length(&req.headers) {
        if cl != len {
            return Err(ApiError::new(
                ErrorCode::RangeInvalid,
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("Content-Range length {len} does not match Content-Length {cl}"),
            ));
        }
    }
    Ok(Some((start, len)))
}

/// Appends a chunk (202 with the new `Range`); a chunk that does not start where the upload
/// ends is refused with 416.
pub async fn patch(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let range = chunk_range(req)?;
    let size = ctx
        .registry
        .append_upload(
            repo,
            id,
            range.map(|r| r.0),
            range.map(|r| r.1),
            body_stream(body),
        )
        .await?;
    session_response(ctx, req, repo, id, size, StatusCode::ACCEPTED)
}

/// Completes an upload with an optional final chunk; the digest is verified before the blob
/// becomes visible (201).
pub async fn finish(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = digest_param(req)?.ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required",
        )
    })?;
    let range = chunk_range(req)?;
    let size = ctx
        .registry
        .finish_upload(
            repo,
            id,
            &digest,
            range.map(|r| r.0),
            Some(body_stream(body)),
        )
        .await?;
    notify::blob(ctx, req, Action::Push, repo, &digest, Some(size), None);
    blob_created(ctx, req, repo, &digest)
}

/// Cancels an upload (204).
pub async fn cancel(ctx: &Ctx, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    ctx.registry.cancel_upload(repo, id).await?;
    empty(StatusCode::NO_CONTENT, vec![])
}
