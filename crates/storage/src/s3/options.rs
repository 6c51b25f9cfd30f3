//! What the S3 driver is configured with: registry:2's `storage.s3` parameters, typed, plus the
//! standard AWS environment variables as fallbacks. Parsing the config file is `berth-config`'s
//! job; this module only knows the meaning of each setting and where a default comes from.

use std::path::PathBuf;
use std::time::Duration;

/// The S3 minimum part size (all parts of a multipart upload but the last): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// The part size when `chunksize` is not set. registry:2 uses 10 MiB; Berth uses the S3 minimum
/// so that a writer's memory (one part filling, at most one in flight) stays small: 32
/// concurrent pushes then need about 32 x 5 MiB plus the shared in-flight budget.
pub const DEFAULT_PART_SIZE: u64 = MIN_PART_SIZE;

/// How long a presigned redirect URL stays valid (registry:2's s3 driver: 20 minutes).
pub const DEFAULT_PRESIGN_TTL: Duration = Duration::from_secs(20 * 60);

/// Credential-provider variables passed through to `object_store` unchanged when no static keys
/// are configured (web identity, ECS/EKS container credentials, instance metadata, STS).
const PASSTHROUGH_ENV: &[&str] = &[
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
];

/// Settings of one S3 driver. Field names follow registry:2's `storage.s3` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Options {
    /// `bucket` (required).
    pub bucket: String,
    /// `region`; else `AWS_REGION` / `AWS_DEFAULT_REGION`; else `us-east-1`.
    pub region: Option<String>,
    /// `regionendpoint`: URL of an S3-compatible service; else `AWS_ENDPOINT_URL_S3` /
    /// `AWS_ENDPOINT_URL`; else AWS's own endpoint for the region. A value without a scheme
    /// gets `https://` (or `http://` with `secure: false`).
    pub endpoint: Option<String>,
    /// `accesskey`; with `secretkey` the static credentials. Without both, the AWS variables
    /// and then the usual provider chain (web identity, container, instance metadata).
    pub access_key: Option<String>,
    /// `secretkey`.
    pub secret_key: Option<String>,
    /// `sessiontoken`, or `AWS_SESSION_TOKEN` with keys from the environment.
    pub session_token: Option<String>,
    /// `rootdirectory`: key prefix inside the bucket, as registry:2 applies it.
    pub root_directory: String,
    /// `forcepathstyle`. Unset: path style when an endpoint is given (registry:2 2.8 forces it
    /// whenever `regionendpoint` is set), virtual-hosted style on AWS.
    pub force_path_style: Option<bool>,
    /// `secure` (default true): the scheme for an endpoint written without one, and for AWS.
    pub secure: bool,
    /// `skipverify`: accept any TLS certificate from the endpoint.
    pub skip_verify: bool,
    /// `encrypt`: server-side encryption, SSE-S3 (AES256) or SSE-KMS with `keyid`.
    pub encrypt: bool,
    /// `keyid`: the KMS key for SSE-KMS (only with `encrypt`).
    pub key_id: Option<String>,
    /// `chunksize`: the multipart part size in bytes (at least 5 MiB).
    pub part_size: u64,
    /// `storageclass`: sent with every write unless `NONE` or unset.
    pub storage_class: Option<String>,
    /// `useragent`: the User-Agent of requests to the store.
    pub user_agent: Option<String>,
    /// `storage.redirect.disable: false` (registry:2's default): blob GETs answer 307 to a
    /// presigned URL of the object.
    pub redirect: bool,
    /// How long presigned URLs are valid.
    pub presign_ttl: Duration,
    /// `AWS_CA_BUNDLE`: extra root certificates (a PEM file) for the endpoint.
    pub ca_bundle: Option<PathBuf>,
    /// Credential-provider variables from the environment, passed to `object_store`.
    pub provider_env: Vec<(String, String)>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long a response may stay silent (headers or body) before the request fails.
    pub read_timeout: Duration,
    /// Upper bound of a whole request except streamed reads (a part upload, a listing page).
    pub request_timeout: Duration,
    /// Retries of a failed request (connection errors, 5xx, throttling), with backoff.
    pub max_retries: usize,
    /// The longest wait between two retries.
    pub max_backoff: Duration,
}

impl S3Options {
    /// Defaults for `bucket`, as registry:2 has them (with redirects on).
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: None,
            endpoint: None,
            access_key: None,
            secret_key: None,
            session_token: None,
            root_directory: String::new(),
            force_path_style: None,
            secure: true,
            skip_verify: false,
            encrypt: false,
            key_id: None,
            part_size: DEFAULT_PART_SIZE,
            storage_class: None,
            user_agent: None,
            redirect: true,
            presign_ttl: DEFAULT_PRESIGN_TTL,
            ca_bundle: None,
            provider_env: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            max_retries: 3,
            max_backoff: Duration::from_secs(10),
        }
    }

    /// Fills what the configuration left unset from the standard AWS variables (`env` looks one
    /// up): `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) when neither key is
    /// configured, `AWS_CA_BUNDLE`, and the credential-provider variables.
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        if self.region.is_none() {
            self.region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION"));
        }
        if self.endpoint.is_none() {
            self.endpoint = get("AWS_ENDPOINT_URL_S3").or_else(|| get("AWS_ENDPOINT_URL"));
        }
        if self.access_key.is_none() && self.secret_key.is_none() {
            self.access_key = get("AWS_ACCESS_KEY_ID");
            self.secret_key = get("AWS_SECRET_ACCESS_KEY");
            if self.session_token.is_none() {
                self.session_token = get("AWS_SESSION_TOKEN");
            }
        }
        if self.ca_bundle.is_none() {
            self.ca_bundle = get("AWS_CA_BUNDLE").map(PathBuf::from);
        }
        for name in PASSTHROUGH_ENV {
            if let Some(value) = get(name) {
                self.provider_env.push(((*name).to_owned(), value));
            }
        }
        self
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }

    /// Whether bucket URLs are path style (`endpoint/bucket/key`).
    pub fn path_style(&self) -> bool {
        self.force_path_style.unwrap_or(self.endpoint.is_some())
    }

    /// The endpoint URL with its scheme, if one is configured.
    pub fn endpoint_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim_end_matches('/');
        if endpoint.contains("://") {
            return Some(endpoint.to_owned());
        }
        let scheme = if self.secure { "https" } else { "http" };
        Some(format!("{scheme}://{endpoint}"))
    }

    /// The URL of the service: the endpoint, or AWS's for the region.
    pub fn service_url(&self) -> String {
        self.endpoint_url().unwrap_or_else(|| {
            let scheme = if self.secure { "https" } else { "http" };
            format!("{scheme}://s3.{}.amazonaws.com", self.region())
        })
    }

    /// The URL of the bucket itself: path style appends the bucket to the service URL, virtual
    /// hosted style puts it in front of the host (as the AWS SDKs do).
    pub fn bucket_url(&self) -> String {
        let service = self.service_url();
        match service.split_once("://") {
            Some((scheme, host)) if !self.path_style() => {
                format!("{scheme}://{}.{host}", self.bucket)
            }
            _ => format!("{service}/{}", self.bucket),
        }
    }

    /// The storage class header value, if one is to be sent.
    pub fn storage_class_header(&self) -> Option<&str> {
        self.storage_class
            .as_deref()
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("NONE"))
    }
}

/// A setting the S3 driver cannot work with, named by its `storage.s3` key.
#[derive(Debug, thiserror::Error)]
#[error("storage.s3.{key}: {message}")]
pub struct S3SetupError {
    /// The `storage.s3` key to fix (`bucket`, `accesskey`, `regionendpoint`, ...).
    pub key: &'static str,
    /// What is wrong, including what the store answered when it was asked.
    pub message: String,
}

impl S3SetupError {
    pub(crate) fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn configured_values_win_over_the_environment() {
        let vars = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "envkey"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "envtoken"),
            ("AWS_ENDPOINT_URL", "http://env:9000"),
            ("AWS_CA_BUNDLE", "/etc/ca.pem"),
            ("AWS_ROLE_ARN", "arn:x"),
        ];
        let o = S3Options::new("b").with_env(env(&vars));
        assert_eq!(o.region(), "eu-west-1");
        assert_eq!(o.access_key.as_deref(), Some("envkey"));
        assert_eq!(o.secret_key.as_deref(), Some("envsecret"));
        assert_eq!(o.session_token.as_deref(), Some("envtoken"));
        assert_eq!(o.endpoint_url().as_deref(), Some("http://env:9000"));
        assert_eq!(o.ca_bundle, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(o.provider_env, [("AWS_ROLE_ARN".into(), "arn:x".into())]);

        let mut configured = S3Options::new("b");
        configured.region = Some("us-west-2".into());
        configured.access_key = Some("cfgkey".into());
        configured.endpoint = Some("minio:9000".into());
        configured.secure = false;
        let o = configured.with_env(env(&vars));
        assert_eq!(o.region(), "us-west-2");
        assert_eq!(o.access_key.as_deref(), Some("cfgkey"));
        assert_eq!(o.secret_key, None, "keys come from one place, never mixed");
        assert_eq!(o.endpoint_url().as_deref(), Some("http://minio:9000"));
    }

    #[test]
    fn bucket_urls_follow_registry2() {
        let mut o = S3Options::new("bk");
        assert_eq!(o.bucket_url(), "https://bk.s3.us-east-1.amazonaws.com");
        o.force_path_style = Some(true);
        o.region = Some("eu-west-3".into());
        assert_eq!(o.bucket_url(), "https://s3.eu-west-3.amazonaws.com/bk");
        // An endpoint forces path style, as in registry:2 2.8, unless turned off explicitly.
        o.force_path_style = None;
        o.endpoint = Some("https://s3.example.com/".into());
        assert_eq!(o.bucket_url(), "https://s3.example.com/bk");
        o.force_path_style = Some(false);
        assert_eq!(o.bucket_url(), "https://bk.s3.example.com");
    }
}
