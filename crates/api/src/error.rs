//! The one API error type: an OCI error code, an HTTP status and a message, rendered as the
//! spec's `{"errors":[{"code","message","detail"}]}`. Internal failures are logged with their
//! detail and answered with a generic message. Every lower error (registry, reads through the
//! pull-through cache, paths) maps to it here, once.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use berth_oci::OciError;
use berth_registry::read::{ReadError, What};
use berth_registry::RegistryError;
use berth_storage::StorageError;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::endpoint::PathError;

/// An OCI error code (the spec's list, plus registry:2's extras).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content, or is malformed.
    DigestInvalid,
    /// Manifest references a blob unknown to the registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// The service is unavailable (a health check failed).
    Unavailable,
    /// Requested range not satisfiable / chunk out of order (registry:2).
    RangeInvalid,
    /// Tag invalid (registry:2).
    TagInvalid,
    /// Invalid `n` in a paginated request (registry:2).
    PaginationNumberInvalid,
    /// No such endpoint.
    NotFound,
    /// Internal error.
    Unknown,
}

impl ErrorCode {
    /// The code string in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// The OCI code.
    pub code: ErrorCode,
    /// The HTTP status.
    pub status: StatusCode,
    /// A human message for the client.
    pub message: String,
    /// Extra headers (e.g. `Content-Range` on a 416).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Further entries of the `errors` array, after the main one.
    pub also: Vec<(ErrorCode, String)>,
}

impl ApiError {
    /// An error with a code, status and message.
    pub fn new(code: ErrorCode, status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status,
            message: message.into(),
            headers: Vec::new(),
            also: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A 400 with the given code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code, StatusCode::BAD_REQUEST, message)
    }

    /// A 500 whose detail is logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorCode::Unknown,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error",
        )
    }

    /// 405 for a method the endpoint does not have.
    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::Unsupported,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this endpoint",
        )
    }
}

impl From<OciError> for ApiError {
    fn from(e: OciError) -> Self {
        let code = match &e {
            OciError::InvalidDigest(_) | OciError::UnsupportedAlgorithm(_) => {
                ErrorCode::DigestInvalid
            }
            OciError::InvalidName(_) => ErrorCode::NameInvalid,
            OciError::InvalidTag(_) => ErrorCode::TagInvalid,
            OciError::InvalidManifest(_) => ErrorCode::ManifestInvalid,
        };
        ApiError::bad_request(code, e.to_string())
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::NotFound => ApiError::new(
                ErrorCode::NotFound,
                StatusCode::NOT_FOUND,
                "no such API endpoint",
            ),
            PathError::Invalid(e) => e.into(),
            PathError::UploadUnknown(id) => ApiError::new(
                ErrorCode::BlobUploadUnknown,
                StatusCode::NOT_FOUND,
                format!("upload unknown: {id}"),
            ),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::from(&e)
    }
}

/// By reference, so an error shared by every client of one pull-through fetch
/// ([`ReadError::Registry`]) keeps its kind too.
impl From<&RegistryError> for ApiError {
    fn from(e: &RegistryError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            RegistryError::Invalid(e) => e.clone().into(),
            RegistryError::BlobUnknown(_) => {
                ApiError::new(ErrorCode::BlobUnknown, S::NOT_FOUND, msg)
            }
            RegistryError::UploadUnknown(_) => {
                ApiError::new(ErrorCode::BlobUploadUnknown, S::NOT_FOUND, msg)
            }
            RegistryError::DigestMismatch { .. } => {
                ApiError::bad_request(ErrorCode::DigestInvalid, msg)
            }
            RegistryError::RangeInvalid { expected, .. } => {
                let range = format!("0-{}", expected.saturating_sub(1));
                let mut err = ApiError::new(ErrorCode::RangeInvalid, S::RANGE_NOT_SATISFIABLE, msg);
                if let Ok(v) = HeaderValue::from_str(&range) {
                    err = err.with_header(header::RANGE, v);
                }
                err
            }
            RegistryError::ChunkLengthMismatch { .. } => {
                ApiError::new(ErrorCode::SizeInvalid, S::RANGE_NOT_SATISFIABLE, msg)
            }
            RegistryError::UploadInvalid(_) => {
                ApiError::bad_request(ErrorCode::BlobUploadInvalid, msg)
            }
            RegistryError::ManifestUnknown(_) => {
                ApiError::new(ErrorCode::ManifestUnknown, S::NOT_FOUND, msg)
            }
            RegistryError::ManifestBlobUnknown(_) => {
                ApiError::bad_request(ErrorCode::ManifestBlobUnknown, msg)
            }
            // MANIFEST_UNKNOWN names what is missing; registry:2 sends MANIFEST_BLOB_UNKNOWN
            // here, so it follows for clients that look for that code.
            RegistryError::ManifestChildUnknown(_) => {
                let mut e = ApiError::bad_request(ErrorCode::ManifestUnknown, msg.clone());
                e.also.push((ErrorCode::ManifestBlobUnknown, msg));
                e
            }
            RegistryError::NameUnknown(_) => {
                ApiError::new(ErrorCode::NameUnknown, S::NOT_FOUND, msg)
            }
            RegistryError::DeleteDisabled => {
                ApiError::new(ErrorCode::Unsupported, S::METHOD_NOT_ALLOWED, msg)
            }
            RegistryError::ReadOnly => {
                ApiError::new(ErrorCode::Unsupported, S::METHOD_NOT_ALLOWED, msg)
            }
            RegistryError::Body(e) => {
                tracing::info!(error = %e, "request body cut short");
                ApiError::bad_request(ErrorCode::BlobUploadInvalid, "request body was cut short")
            }
            RegistryError::SpaceLow(reason) => {
                tracing::warn!(reason, "upload refused: disk above its watermark");
                ApiError::new(ErrorCode::Denied, S::INSUFFICIENT_STORAGE, reason.clone())
            }
            RegistryError::Storage(StorageError::Full(path)) => {
                tracing::error!(path, "storage is full");
                ApiError::new(
                    ErrorCode::Denied,
                    S::INSUFFICIENT_STORAGE,
                    "the registry's storage is full; pushes are refused until space is freed",
                )
            }
            // The object store failed or could not be reached (after its retries): clients may
            // retry later; what the store answered goes to the log only.
            RegistryError::Storage(StorageError::Backend { path, message }) => {
                tracing::error!(path, message, "storage backend failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    S::SERVICE_UNAVAILABLE,
                    "the registry's storage is unavailable; try again later",
                )
            }
            RegistryError::Storage(e) => ApiError::internal(e),
            e @ (RegistryError::WouldLoseData(_) | RegistryError::Corrupt(_)) => {
                ApiError::internal(e)
            }
        }
    }
}

/// A failed read, from the registry or through the pull-through cache. An upstream's own
/// words are logged, not sent.
impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        use StatusCode as S;
        match e {
            ReadError::NotFound { what, host, detail } => {
                tracing::info!(upstream = host, detail, "not found upstream");
                let (code, thing) = match what {
                    What::Manifest => (ErrorCode::ManifestUnknown, "manifest unknown"),
                    What::Blob => (ErrorCode::BlobUnknown, "blob unknown to registry"),
                    What::Repository => (
                        ErrorCode::NameUnknown,
                        "repository name not known to registry",
                    ),
                };
                ApiError::new(
                    code,
                    S::NOT_FOUND,
                    format!("{thing}: not found at upstream {host}"),
                )
            }
            ReadError::TooManyRequests { host, retry_after } => {
                let e = ApiError::new(
                    ErrorCode::TooManyRequests,
                    S::TOO_MANY_REQUESTS,
                    format!("upstream {host} is rate limiting this registry and the content is not cached yet; try again later"),
                );
                match retry_after {
                    Some(d) => {
                        e.with_header(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)))
                    }
                    None => e,
                }
            }
            ReadError::Unavailable { host, detail } => {
                tracing::warn!(
                    upstream = host,
                    detail,
                    "upstream failed and nothing is cached"
                );
                ApiError::new(
                    ErrorCode::Unknown,
                    S::BAD_GATEWAY,
                    format!("upstream {host} is unavailable and the content is not cached yet; try again later"),
                )
            }
            ReadError::Registry(e) => ApiError::from(e.as_ref()),
            ReadError::Storage(detail) => ApiError::internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut errors =
            vec![json!({"code": self.code.as_str(), "message": self.message, "detail": null})];
        for (code, message) in &self.also {
            errors.push(json!({"code": code.as_str(), "message": message, "detail": null}));
        }
        let body = json!({ "errors": errors }).to_string();
        let len = body.len();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
