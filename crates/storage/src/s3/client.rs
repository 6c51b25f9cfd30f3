//! Builds the `object_store` clients of the S3 driver from [`S3Options`]: endpoint and
//! addressing style, credentials, TLS (extra roots from `AWS_CA_BUNDLE`, `skipverify`),
//! timeouts, retries and server-side encryption.

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpClient, HttpConnector};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::options::{S3Options, S3SetupError};

/// The two clients of a driver. They differ only in their time limits: `control` bounds every
/// request as a whole (part uploads, listings, HEADs); `stream` serves `reader`, whose
/// responses may take as long as a client takes to download a blob, so only silence fails it.
pub(crate) struct Clients {
    pub control: AmazonS3,
    pub stream: AmazonS3,
}

/// Creates both clients; every error names the setting to fix.
pub(crate) fn build(o: &S3Options) -> Result<Clients, S3SetupError> {
    if o.bucket.is_empty() {
        return Err(S3SetupError::new("bucket", "no bucket configured"));
    }
    let roots = root_certificates(o)?;
    let connector = |total: Option<Duration>| Connector {
        connect_timeout: o.connect_timeout,
        read_timeout: o.read_timeout,
        total_timeout: total,
        roots: roots.clone(),
        skip_verify: o.skip_verify,
        user_agent: o.user_agent.clone(),
    };
    Ok(Clients {
        control: builder(o)?
            .with_http_connector(connector(Some(o.request_timeout)))
            .build()
            .map_err(|e| S3SetupError::new("bucket", e.to_string()))?,
        stream: builder(o)?
            .with_http_connector(connector(None))
            .build()
            .map_err(|e| S3SetupError::new("bucket", e.to_string()))?,
    })
}

fn builder(o: &S3Options) -> Result<AmazonS3Builder, S3SetupError> {
    // object_store appends the bucket to a path-style endpoint and takes a virtual-hosted one
    // as the bucket's own URL.
    let endpoint = if o.path_style() {
        o.service_url()
    } else {
        o.bucket_url()
    };
    let allow_http = endpoint.starts_with("http://");
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&o.bucket)
        .with_region(o.region())
        .with_endpoint(endpoint)
        .with_virtual_hosted_style_request(!o.path_style())
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: o.max_backoff,
                base: 2.0,
            },
            max_retries: o.max_retries,
            retry_timeout: Duration::from_secs(60),
        })
        // Same Content-Type as registry:2's s3 driver writes.
        .with_client_options(
            ClientOptions::new()
                .with_default_content_type("application/octet-stream")
                .with_allow_http(allow_http),
        );
    for (name, value) in &o.provider_env {
        if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            b = b.with_config(key, value);
        }
    }
    match (&o.access_key, &o.secret_key) {
        (Some(access), Some(secret)) => {
            b = b
                .with_access_key_id(access)
                .with_secret_access_key(secret);
            if let Some(token) = &o.session_token {
                b = b.with_token(token);
            }
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(S3SetupError::new(
                "secretkey",
                "accesskey is set but secretkey is not (set both, or neither to use the AWS environment and instance credentials)",
            ))
        }
        (None, Some(_)) => {
            return Err(S3SetupError::new(
                "accesskey",
                "secretkey is set but accesskey is not (set both, or neither to use the AWS environment and instance credentials)",
            ))
        }
    }
    if o.encrypt {
        b = match &o.key_id {
            Some(key) => b.with_sse_kms_encryption(key),
            // SSE-S3; the key enum is not exported, its name is.
            None => match "aws_server_side_encryption".parse::<AmazonS3ConfigKey>() {
                Ok(key) => b.with_config(key, "AES256"),
                Err(e) => return Err(S3SetupError::new("encrypt", e.to_string())),
            },
        };
    }
    Ok(b)
}

/// The PEM certificates of `AWS_CA_BUNDLE`, added to the built-in roots.
fn root_certificates(o: &S3Options) -> Result<Vec<reqwest::Certificate>, S3SetupError> {
    let Some(path) = &o.ca_bundle else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path).map_err(|e| {
        S3SetupError::new(
            "regionendpoint",
            format!("cannot read AWS_CA_BUNDLE {}: {e}", path.display()),
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        S3SetupError::new(
            "regionendpoint",
            format!("AWS_CA_BUNDLE {} is not a PEM bundle: {e}", path.display()),
        )
    })?;
    if certs.is_empty() {
        return Err(S3SetupError::new(
            "regionendpoint",
            format!("AWS_CA_BUNDLE {} holds no certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// A reqwest client per store with Berth's time limits (object_store's own only has a total
/// timeout, which would cut long blob downloads).
#[derive(Debug, Clone)]
struct Connector {
    connect_timeout: Duration,
    read_timeout: Duration,
    total_timeout: Option<Duration>,
    roots: Vec<reqwest::Certificate>,
    skip_verify: bool,
    user_agent: Option<String>,
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let agent = self
            .user_agent
            .clone()
            .unwrap_or_else(|| format!("berth/{}", env!("CARGO_PKG_VERSION")));
        let mut builder = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // Compressed answers would change Content-Length, which object_store reads as size.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .danger_accept_invalid_certs(self.skip_verify);
        if let Some(total) = self.total_timeout {
            builder = builder.timeout(total);
        }
        for cert in &self.roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        let client = builder.build().map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        Ok(HttpClient::new(client))
    }
}
