//! Startup checks of an S3 driver: the bucket answers with these credentials, and whether the
//! store honours create-only writes (Garage silently ignores `If-None-Match: *`).

use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use super::{map_err, S3Driver, S3SetupError};
use crate::StorageError;

impl S3Driver {
    /// Lists at most one key of the bucket (under the root directory). A missing bucket, refused
    /// credentials or an unreachable endpoint come back as an error naming the `storage.s3` key
    /// to fix and quoting what the store answered.
    pub async fn check_bucket(&self) -> Result<(), S3SetupError> {
        let prefix = (!self.prefix.is_empty()).then(|| format!("{}/", self.prefix));
        let options = PaginatedListOptions {
            max_keys: Some(1),
            ..Default::default()
        };
        match self.store.list_paginated(prefix.as_deref(), options).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&self.bucket, e)),
        }
    }

    /// Writes a probe object twice with `If-None-Match: *` and records whether the second write
    /// was refused (see [`S3Driver::conditional_writes`]); the probe object is deleted again.
    pub async fn probe_conditional_writes(&self) -> Result<bool, StorageError> {
        // With Berth's other private state, which registry:2 never reads.
        let path = format!(
            "{}/probe/conditional-{:016x}",
            crate::paths::berth_root(),
            rand::random::<u64>()
        );
        let key = self.key(&path)?;
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let first = self
            .store
            .put_opts(&key, "probe".into(), create())
            .await
            .map_err(|e| map_err(&path, e));
        let honoured = match first {
            Ok(_) => match self.store.put_opts(&key, "probe".into(), create()).await {
                Err(object_store::Error::AlreadyExists { .. }) => Ok(true),
                Ok(_) => Ok(false),
                Err(e) => Err(map_err(&path, e)),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = self.store.delete(&key).await {
            tracing::warn!(path, error = %e, "could not delete the conditional-write probe");
        }
        let honoured = honoured?;
        let _ = self.conditional_writes.set(honoured);
        Ok(honoured)
    }
}

/// Names the setting most likely at fault for a failed bucket listing.
fn classify(bucket: &str, e: object_store::Error) -> S3SetupError {
    let answer = e.to_string();
    match &e {
        object_store::Error::NotFound { .. } => S3SetupError::new(
            "bucket",
            format!("bucket {bucket:?} does not exist or is not visible with these credentials: {answer}"),
        ),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => S3SetupError::new(
            "accesskey",
            format!("the store refused the credentials (check accesskey, secretkey and region): {answer}"),
        ),
        _ if unreachable(&e) => S3SetupError::new(
            "regionendpoint",
            format!("cannot reach the store: {answer}"),
        ),
        _ if answer.contains("NoSuchBucket") => S3SetupError::new(
            "bucket",
            format!("bucket {bucket:?} does not exist: {answer}"),
        ),
        _ if ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"]
            .iter()
            .any(|code| answer.contains(code)) =>
        {
            S3SetupError::new(
                "accesskey",
                format!("the store refused the credentials (check accesskey, secretkey and region): {answer}"),
            )
        }
        _ => S3SetupError::new("regionendpoint", format!("the store failed the bucket check: {answer}")),
    }
}

/// Whether the error chain holds a connection-level failure (no HTTP answer at all).
fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            if matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                return true;
            }
        }
        next = err.source();
    }
    false
}
