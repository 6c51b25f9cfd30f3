//! `storage.s3` turned into a checked [`S3Driver`]: the configuration's settings, then the
//! standard AWS variables for what it leaves unset; the bucket must answer before Berth serves.

use std::sync::Arc;

use anyhow::Context;
use berth_config::{Config, S3Settings};
use berth_storage::s3::{S3Driver, S3Options, DEFAULT_PART_SIZE};
use berth_storage::StorageDriver;

/// The driver options for `settings`, with `storage.redirect` and the process environment.
pub fn options(config: &Config, s: &S3Settings) -> S3Options {
    let mut o = S3Options::new(s.bucket.clone().unwrap_or_default());
    o.region = s.region.clone();
    o.endpoint = s.regionendpoint.clone();
    o.access_key = s.accesskey.clone();
    o.secret_key = s.secretkey.clone();
    o.session_token = s.sessiontoken.clone();
    o.root_directory = s.rootdirectory.clone().unwrap_or_default();
    o.force_path_style = s.forcepathstyle;
    o.secure = s.secure.unwrap_or(true);
    o.skip_verify = s.skipverify.unwrap_or(false);
    o.encrypt = s.encrypt.unwrap_or(false);
    o.key_id = s.keyid.clone();
    o.part_size = s.chunksize.unwrap_or(DEFAULT_PART_SIZE);
    o.storage_class = s.storageclass.clone();
    o.user_agent = s.useragent.clone();
    // registry:2's default: blob downloads redirect to a presigned URL of the object.
    o.redirect = !config.storage.redirect_disabled;
    o.with_env(|name| std::env::var(name).ok())
}

/// Builds the driver, checks that the bucket answers (a LIST of at most one key), and probes
/// whether the store honours create-only writes (skipped in read-only mode: it writes).
pub async fn driver(
    config: &Config,
    settings: &S3Settings,
) -> anyhow::Result<Arc<dyn StorageDriver>> {
    let options = options(config, settings);
    let driver = S3Driver::new(&options).context("cannot use storage.s3")?;
    driver.check_bucket().await.with_context(|| {
        format!(
            "storage.s3: bucket {:?} at {} does not answer",
            options.bucket,
            options.service_url()
        )
    })?;
    if !config.storage.maintenance.readonly_enabled {
        match driver.probe_conditional_writes().await {
            Ok(true) => tracing::info!(bucket = options.bucket, "the S3 store honours conditional writes (If-None-Match)"),
            Ok(false) => tracing::info!(
                bucket = options.bucket,
                "the S3 store ignores conditional writes (If-None-Match), as Garage does; Berth does not rely on them"
            ),
            Err(e) => tracing::warn!(bucket = options.bucket, error = %e, "could not probe the S3 store for conditional writes"),
        }
    }
    tracing::info!(
        bucket = options.bucket,
        endpoint = options.service_url(),
        part_size = options.part_size,
        redirect = options.redirect,
        "S3 storage ready"
    );
    Ok(Arc::new(driver))
}
