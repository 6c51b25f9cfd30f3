//! Request helpers: query strings, Range / Content-Range headers, body streams and URLs.

use axum::body::Body;
use berth_registry::BodyStream;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, StatusCode};
use percent_encoding::percent_decode_str;

use crate::{ApiError, Ctx, ErrorCode};

/// The parts of a request a handler reads (the body is passed separately when needed).
pub struct Req {
    /// The HTTP method.
    pub method: http::Method,
    /// Request headers.
    pub headers: HeaderMap,
    /// Decoded query parameters.
    pub query: Query,
    /// The URI's authority (`host:port`), which HTTP/2 sends instead of a `Host` header.
    pub authority: Option<String>,
    /// The client's address (for notifications' `request.addr`).
    pub client: Option<std::net::SocketAddr>,
    /// The authenticated user (for notifications' `actor.name`), set once authorized.
    pub user: Option<String>,
    /// The upstream route of the resolved repository, if it is cached from one
    /// ([`crate::mirror::resolve`]).
    pub route: Option<berth_proxy::Route>,
    /// The repository name as the client wrote it, when the request names one (the resolved
    /// name may differ: `alpine` is stored as `docker.io/library/alpine`).
    pub requested: Option<berth_oci::RepoName>,
    /// How this request's connection sends files without copying them, when it can (plain
    /// HTTP/1, [`crate::sendfile`]).
    pub file_sender: Option<crate::sendfile::FileSender>,
}

/// Decoded query parameters, in order.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=1&b=x%2Fy`.
    pub fn parse(query: Option<&str>) -> Self {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query(pairs)
    }

    /// Every pair, in order (repeated keys kept).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The pagination size `n`: absent, or a non-negative integer.
    pub fn page_size(&self) -> Result<Option<usize>, ApiError> {
        match self.get("n") {
            None | Some("") => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::PaginationNumberInvalid,
                    format!("invalid page size n={n:?}"),
                )
            }),
        }
    }
}

/// A header as a string, if present and valid UTF-8.
pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The declared Content-Length, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
}

/// Parses a chunk's `Content-Range: <start>-<end>` (inclusive; `bytes ` prefix and `/total`
/// tolerated). Returns `(start, length)`.
pub fn parse_content_range(value: &str) -> Result<(u64, u64), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::RangeInvalid,
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("invalid Content-Range {value:?}"),
        )
    };
    let v = value.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    let (start, end) = v.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    // `0-18446744073709551615` is a length of 2^64: refused, never wrapped to 0.
    let len = (end - start).checked_add(1).ok_or_else(bad)?;
    Ok((start, len))
}

/// A blob GET's `Range: bytes=...`, resolved against the blob size. `Ok(None)` means serve it
/// whole (no header, or several ranges, which RFC 9110 lets a server ignore).
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = value else { return Ok(None) };
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (start, "") => (start.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (start, end) => {
            let end: u64 = end.parse().map_err(|_| ())?;
            (
                start.parse().map_err(|_| ())?,
                end.min(size.saturating_sub(1)),
            )
        }
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Turns a request body into the core's stream type.
pub fn body_stream(body: Body) -> BodyStream {
    Box::pin(with_idle_timeout(body))
}

/// How long a request body may send nothing before the request fails: a client that stops
/// mid-upload must not hold a connection and its upload session forever (slowloris).
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The body's chunks; a gap longer than [`BODY_IDLE_TIMEOUT`] ends it with `TimedOut`.
fn with_idle_timeout(
    body: Body,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Some(body.into_data_stream()), |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(BODY_IDLE_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent no data for 60 s",
                )),
                None,
            )),
        }
    })
}

/// Reads a manifest body of at most `limit` bytes, or fails with 413 `MANIFEST_INVALID`.
pub async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    read_small_body(body, limit, ErrorCode::ManifestInvalid, "manifest").await
}

/// Reads a small body (`what` names it in errors) of at most `limit` bytes, or fails with
/// 413 and `code`; a body cut short is a 400 with `code`.
pub async fn read_small_body(
    body: Body,
    limit: usize,
    code: ErrorCode,
    what: &str,
) -> Result<bytes::Bytes, ApiError> {
    let mut stream = std::pin::pin!(with_idle_timeout(body));
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        tracing::info!(error = %e, "{what} body cut short");
        ApiError::bad_request(code, "request body was cut short")
    })? {
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::new(
                code,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{what} exceeds {limit} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Builds a URL for `Location` headers: relative when configured, else absolute from
/// `http.host` or the request's (forwarded) host and scheme, as registry:2 does.
pub fn url(ctx: &Ctx, headers: &HeaderMap, path: &str) -> String {
    let prefix = ctx.options.prefix.trim_end_matches('/');
    let path = format!("{prefix}{path}");
    if ctx.options.relative_urls {
        return path;
    }
    if let Some(host) = &ctx.options.host {
        return format!("{}{path}", host.trim_end_matches('/'));
    }
    let forwarded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
    };
    let host = forwarded("x-forwarded-host").or_else(|| header_str(headers, header::HOST));
    let Some(host) = host else { return path };
    let scheme =
        forwarded("x-forwarded-proto").unwrap_or(if ctx.options.tls { "https" } else { "http" });
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Err(()));
        assert_eq!(parse_range(Some("items=0-1"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9").ok(), Some((0, 10)));
        assert_eq!(parse_content_range("bytes 10-19/*").ok(), Some((10, 10)));
        assert!(parse_content_range("9-0").is_err());
        assert!(parse_content_range("abc").is_err());
        assert!(parse_content_range("-5").is_err());
        // The probe's overflow: a length of 2^64.
        assert!(parse_content_range("0-18446744073709551615").is_err());
        assert_eq!(
            parse_content_range("1-18446744073709551615").ok(),
            Some((1, u64::MAX))
        );
        assert!(parse_content_range("0-18446744073709551616").is_err());
    }

    #[test]
    fn queries() {
        let q = Query::parse(Some("n=10&last=a%2Fb&x"));
        assert_eq!(q.get("last"), Some("a/b"));
        assert_eq!(q.page_size().ok(), Some(Some(10)));
        assert_eq!(q.get("x"), Some(""));
        assert!(Query::parse(Some("n=-1")).page_size().is_err());
    }
}
