//! The write policy: which writes this registry takes at all, whoever asks. Checked once in the
//! dispatcher, right after authorization and from the same resolved [`Endpoint`], so no handler
//! reads a body or starts work that is refused anyway:
//!
//! - a write into a repository an upstream owns: `403 DENIED` with the reason, or
//!   `405 UNSUPPORTED` for every write in registry:2's proxy mode (what registry:2 answers);
//! - a delete when `storage.delete.enabled` is off: `405 UNSUPPORTED`;
//! - any write in read-only mode: `405 UNSUPPORTED`.
//!
//! The registry core refuses deletes and read-only writes itself too, for its other callers
//! (import, retention, the cache's own writes); the answers are the same.

use berth_proxy::Refusal;
use berth_registry::RegistryError;
use http::{Method, StatusCode};

use crate::request::Req;
use crate::{ApiError, Ctx, Endpoint, ErrorCode};

/// What kind of write a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Stores something: a manifest, an upload (started, continued, finished or cancelled).
    Push,
    /// Deletes a manifest, a tag or a blob link.
    Delete,
}

/// The write `method` on `endpoint` is, if any. Only the pairs a handler answers: a method an
/// endpoint does not have stays a plain `405` from the dispatcher.
fn write_of(method: &Method, endpoint: &Endpoint) -> Option<Write> {
    match (method, endpoint) {
        (&Method::PUT, Endpoint::Manifest(..))
        | (&Method::POST, Endpoint::UploadStart(_))
        | (&Method::PATCH | &Method::PUT | &Method::DELETE, Endpoint::Upload(..)) => {
            Some(Write::Push)
        }
        (&Method::DELETE, Endpoint::Manifest(..) | Endpoint::Blob(..)) => Some(Write::Delete),
        _ => None,
    }
}

/// Refuses `req` on the resolved `endpoint` when the policy does not take it (see the module
/// documentation); reads pass.
pub fn check(ctx: &Ctx, req: &Req, endpoint: &Endpoint) -> Result<(), ApiError> {
    let Some(write) = write_of(&req.method, endpoint) else {
        return Ok(());
    };
    if let (Some(proxy), Some(repo)) = (&ctx.proxy, endpoint.repository()) {
        match proxy.write_refusal(repo, req.route.as_ref()) {
            None => {}
            Some(Refusal::Unsupported) => {
                return Err(ApiError::new(
                    ErrorCode::Unsupported,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "The operation is unsupported.",
                ))
            }
            Some(Refusal::Denied(message)) => {
                return Err(ApiError::new(
                    ErrorCode::Denied,
                    StatusCode::FORBIDDEN,
                    message,
                ))
            }
        }
    }
    if write == Write::Delete && !ctx.registry.delete_enabled() {
        return Err(RegistryError::DeleteDisabled.into());
    }
    if ctx.registry.read_only() {
        return Err(RegistryError::ReadOnly.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_write_handlers_are_writes() {
        let repo: berth_oci::RepoName = "r".parse().expect("name");
        let digest = berth_oci::Digest::sha256_of(b"x");
        let manifest =
            Endpoint::Manifest(repo.clone(), berth_oci::Reference::Digest(digest.clone()));
        let blob = Endpoint::Blob(repo.clone(), digest);
        let upload = Endpoint::Upload(repo.clone(), "u".into());
        let start = Endpoint::UploadStart(repo.clone());
        for (method, endpoint, want) in [
            (Method::PUT, &manifest, Some(Write::Push)),
            (Method::DELETE, &manifest, Some(Write::Delete)),
            (Method::GET, &manifest, None),
            (Method::HEAD, &manifest, None),
            (Method::POST, &manifest, None),
            (Method::DELETE, &blob, Some(Write::Delete)),
            (Method::GET, &blob, None),
            (Method::PUT, &blob, None),
            (Method::POST, &start, Some(Write::Push)),
            (Method::PATCH, &upload, Some(Write::Push)),
            (Method::PUT, &upload, Some(Write::Push)),
            (Method::DELETE, &upload, Some(Write::Push)),
            (Method::GET, &upload, None),
            (Method::DELETE, &Endpoint::Tags(repo.clone()), None),
        ] {
            assert_eq!(write_of(&method, endpoint), want, "{method} {endpoint:?}");
        }
    }
}
