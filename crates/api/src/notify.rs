//! registry:2 notifications as the handlers see them: after a successful push, pull, mount or
//! delete, a handler calls one function here, which builds the event's target and the
//! request and actor records and hands them to the [`berth_notify::Notifier`]. Without
//! configured endpoints every function returns at once.

use std::net::IpAddr;

use berth_notify::{references, Action, ActorRecord, Notifier, RequestRecord, Target};
use berth_oci::{Digest, Reference, RepoName, Tag};
use http::{header, HeaderName};

use crate::request::{content_length, header_str, url, Req};
use crate::Ctx;

const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// A manifest was served (GET or HEAD: registry:2 reports both as `pull`).
pub fn pulled_manifest(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    reference: &Reference,
    manifest: &berth_registry::manifests::StoredManifest,
) {
    if let Some(notifier) = &ctx.notifier {
        let (digest, media_type) = (&manifest.digest, &manifest.media_type);
        let target = manifest_target(
            ctx,
            notifier,
            req,
            repo,
            reference,
            digest,
            media_type,
            &manifest.body,
        );
        emit(notifier, req, Action::Pull, target);
    }
}

/// A manifest was stored by a PUT (`stored` says how the registry stored it).
pub fn pushed_manifest(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    reference: &Reference,
    stored: &berth_registry::manifests::PutManifest,
    body: &[u8],
) {
    if let Some(notifier) = &ctx.notifier {
        let target = manifest_target(
            ctx,
            notifier,
            req,
            repo,
            reference,
            &stored.digest,
            &stored.media_type,
            body,
        );
        emit(notifier, req, Action::Push, target);
    }
}

#[allow(clippy::too_many_arguments)]
fn manifest_target(
    ctx: &Ctx,
    notifier: &Notifier,
    req: &Req,
    repo: &RepoName,
    reference: &Reference,
    digest: &Digest,
    media_type: &str,
    body: &[u8],
) -> Target {
    let link = url(ctx, &req.headers, &format!("/v2/{repo}/manifests/{digest}"));
    let size = body.len() as u64;
    let mut target = Target::manifest(repo.as_str(), media_type, &digest.to_string(), size, link);
    if let Reference::Tag(tag) = reference {
        target = target.with_tag(tag.as_str());
    }
    if notifier.include_references() {
        target = target.with_references(references(body));
    }
    target
}

/// A blob was served (`Pull`), stored by an upload (`Push`) or mounted from `from` (`Mount`).
/// `size` is `None` when a pull-through download does not know it yet.
pub fn blob(
    ctx: &Ctx,
    req: &Req,
    action: Action,
    repo: &RepoName,
    digest: &Digest,
    size: Option<u64>,
    from: Option<&RepoName>,
) {
    if let Some(notifier) = &ctx.notifier {
        let link = url(ctx, &req.headers, &format!("/v2/{repo}/blobs/{digest}"));
        let digest = digest.to_string();
        let mut target = Target::blob(repo.as_str(), &digest, size.unwrap_or(0), link);
        if let Some(from) = from {
            target = target.with_from(from.as_str());
        }
        emit(notifier, req, action, target);
    }
}

/// A blob link was deleted.
pub fn deleted_blob(ctx: &Ctx, req: &Req, repo: &RepoName, digest: &Digest) {
    if let Some(notifier) = &ctx.notifier {
        let target = Target::deleted(repo.as_str(), &digest.to_string());
        emit(notifier, req, Action::Delete, target);
    }
}

/// The tags a delete of `reference` will remove with the manifest, looked up before the delete
/// so their events can be sent after it (registry:2 sends one per tag). Empty without
/// notifications, for a tag reference, and when the lookup fails (the delete reports that).
pub async fn tags_to_delete(ctx: &Ctx, repo: &RepoName, reference: &Reference) -> Vec<Tag> {
    match (&ctx.notifier, reference) {
        (Some(_), Reference::Digest(digest)) => ctx
            .registry
            .tags_pointing_at(repo, digest)
            .await
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A manifest (with the `tags` that pointed at it) or a tag was deleted.
pub fn deleted_manifest(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    reference: &Reference,
    tags: &[Tag],
) {
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    let target = match reference {
        Reference::Digest(digest) => Target::deleted(repo.as_str(), &digest.to_string()),
        Reference::Tag(tag) => Target::deleted_tag(repo.as_str(), tag.as_str()),
    };
    // One request, so every event carries the same request record (and id).
    let (request, actor) = records(req);
    notifier.emit(Action::Delete, target, &request, &actor);
    for tag in tags {
        let target = Target::deleted_tag(repo.as_str(), tag.as_str());
        notifier.emit(Action::Delete, target, &request, &actor);
    }
}

fn emit(notifier: &Notifier, req: &Req, action: Action, target: Target) {
    let (request, actor) = records(req);
    notifier.emit(action, target, &request, &actor);
}

/// The request and actor records of `req`, as registry:2 fills them: the client is the
/// first `X-Forwarded-For` address, else `X-Real-Ip`, else the connection's `ip:port`.
fn records(req: &Req) -> (RequestRecord, ActorRecord) {
    let ip = |name: HeaderName| {
        header_str(&req.headers, name)
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<IpAddr>().is_ok())
            .map(str::to_owned)
    };
    let addr = ip(FORWARDED_FOR)
        .or_else(|| ip(REAL_IP))
        .or_else(|| req.client.map(|c| c.to_string()))
        .unwrap_or_default();
    let host = header_str(&req.headers, header::HOST)
        .map(str::to_owned)
        .or_else(|| req.authority.clone())
        .unwrap_or_default();
    let useragent = header_str(&req.headers, header::USER_AGENT)
        .unwrap_or("")
        .to_owned();
    let request = RequestRecord::new(addr, host, req.method.as_str(), useragent);
    let actor = ActorRecord {
        name: req.user.clone().unwrap_or_default(),
    };
    (request, actor)
}

/// A blob was served by `response`: its size is the `Content-Range` total, else the
/// `Content-Length` of a whole-blob answer (unknown for a redirect).
pub fn pulled_blob(
    ctx: &Ctx,
    req: &Req,
    repo: &RepoName,
    digest: &Digest,
    response: &axum::response::Response,
) {
    if ctx.notifier.is_none() {
        return;
    }
    let h = response.headers();
    let size = header_str(h, header::CONTENT_RANGE)
        .and_then(|v| v.rsplit_once('/'))
        .and_then(|(_, total)| total.parse().ok())
        .or_else(|| {
            (response.status() == http::StatusCode::OK)
                .then(|| content_length(h))
                .flatten()
        });
    blob(ctx, req, Action::Pull, repo, digest, size, None);
}
