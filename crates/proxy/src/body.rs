//! Upstream bodies read into memory, each bounded by its limit while it is read: chunks are
//! counted as they arrive and reading stops as soon as the limit is passed, whether or not the
//! upstream sent a `Content-Length` (one that is already over the limit fails before any body
//! is read). An oversized answer is an upstream error ([`UpstreamError::TooLarge`], logged
//! here with its URL): nothing of it is parsed or cached, and clients without a cached copy get
//! the usual "upstream unavailable". Blobs are not read into memory; they stream to a spool
//! file (`blob`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::Response;

use crate::UpstreamError;

/// Largest manifest accepted from an upstream: the registry's own manifest limit
/// ([`berth_oci::MAX_MANIFEST_SIZE`], 4 MiB), so the cache never takes what a push could not.
pub const MAX_MANIFEST: usize = berth_oci::MAX_MANIFEST_SIZE;
/// Largest referrers index: an index is a manifest, so the manifest limit (4 MiB).
pub const MAX_REFERRERS_INDEX: usize = MAX_MANIFEST;
/// Largest page of a tag list: 4 MiB (tens of thousands of tags).
pub const MAX_TAG_PAGE: usize = 4 * 1024 * 1024;
/// Largest tag list, all pages together: 16 MiB.
pub const MAX_TAG_LIST: usize = 16 * 1024 * 1024;
/// Largest token endpoint answer: 1 MiB (real tokens are a few KiB).
pub const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;
/// Most of an error answer read to log it: 1 KiB.
pub const MAX_ERROR_BODY: usize = 1024;

/// Reads `response`'s body, at most `limit` bytes, within `timeout` for the whole body.
/// `what` names it in errors and logs.
pub async fn read_limited(
    response: Response,
    limit: usize,
    what: &'static str,
    timeout: Duration,
) -> Result<Bytes, UpstreamError> {
    let url = crate::upstream::loggable(response.url());
    let too_large = |seen: String| {
        tracing::warn!(
            url,
            what,
            limit,
            seen,
            "upstream answer exceeds its size limit; dropped"
        );
        UpstreamError::TooLarge { what, limit }
    };
    let announced = response.content_length();
    if let Some(len) = announced.filter(|l| *l > limit as u64) {
        return Err(too_large(format!("Content-Length {len}")));
    }
    let read = async {
        let mut response = response;
        // An honest Content-Length sizes the buffer; an unknown one starts small and grows.
        let mut body = BytesMut::with_capacity(announced.map_or(8 * 1024, |l| l as usize));
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            UpstreamError::Unreachable(format!("{what}: {}", crate::upstream::error_chain(&e)))
        })? {
            if body.len() + chunk.len() > limit {
                return Err(too_large(format!(
                    "more than {} bytes",
                    body.len() + chunk.len()
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?
}

/// The start of an error answer, for the log: at most [`MAX_ERROR_BODY`] bytes, read within
/// `timeout` (whatever arrived by then), as lossy UTF-8.
pub async fn error_excerpt(mut response: Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_ERROR_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    String::from_utf8_lossy(&body).trim().to_owned()
}
