//! `storage.s3`: registry:2's S3 driver parameters. Every key registry:2 knows is accepted;
//! the ones that change nothing in Berth are named in a warning when set to something that
//! would matter. Berth adds `accesskey_file` and `secretkey_file` (Kubernetes secrets).

use serde_yaml::Mapping;

use crate::error::ConfigError;
use crate::model::{S3Settings, StorageDriverConfig};
use crate::values::{params, Cx};

const PATH: &str = "storage.s3";

/// registry:2's bounds on `chunksize`: S3's minimum part size, and its maximum.
const MIN_CHUNK: u64 = 5 << 20;
const MAX_CHUNK: u64 = 5 << 30;

/// Reads `storage.s3` (the mapping `p`).
pub(crate) fn extract(
    cx: &Cx<'_>,
    p: Option<&Mapping>,
) -> Result<StorageDriverConfig, ConfigError> {
    let settings = S3Settings {
        region: cx.opt_string(p, "region", PATH)?,
        bucket: cx.opt_string(p, "bucket", PATH)?,
        regionendpoint: cx.opt_string(p, "regionendpoint", PATH)?,
        accesskey: cx.secret(p, "accesskey", PATH)?,
        secretkey: cx.secret(p, "secretkey", PATH)?,
        sessiontoken: cx.opt_string(p, "sessiontoken", PATH)?,
        rootdirectory: cx.opt_string(p, "rootdirectory", PATH)?,
        forcepathstyle: cx.opt_bool(p, "forcepathstyle", PATH)?,
        encrypt: cx.opt_bool(p, "encrypt", PATH)?,
        keyid: cx.opt_string(p, "keyid", PATH)?,
        secure: cx.opt_bool(p, "secure", PATH)?,
        skipverify: cx.opt_bool(p, "skipverify", PATH)?,
        chunksize: cx.opt_uint_in(p, "chunksize", PATH, MIN_CHUNK, MAX_CHUNK)?,
        storageclass: cx.opt_string(p, "storageclass", PATH)?,
        useragent: cx.opt_string(p, "useragent", PATH)?,
    };
    warn_without_effect(cx, p, &settings)?;
    Ok(StorageDriverConfig::S3 {
        params: params(p),
        settings: Box::new(settings),
    })
}

/// Warns, by key, about settings registry:2 has and Berth does not act on.
fn warn_without_effect(
    cx: &Cx<'_>,
    p: Option<&Mapping>,
    settings: &S3Settings,
) -> Result<(), ConfigError> {
    if cx.opt_bool(p, "v4auth", PATH)? == Some(false) {
        cx.warn(format!("{PATH}.v4auth: false has no effect: Berth always signs requests with AWS Signature Version 4"));
    }
    for key in ["usedualstack", "accelerate"] {
        if cx.opt_bool(p, key, PATH)? == Some(true) {
            cx.warn(format!("{PATH}.{key}: not supported by Berth and ignored; set {PATH}.regionendpoint to the endpoint to use"));
        }
    }
    for key in [
        "multipartcopychunksize",
        "multipartcopymaxconcurrency",
        "multipartcopythresholdsize",
    ] {
        if cx.opt_uint(p, key, PATH, u64::MAX)?.is_some() {
            cx.warn(format!("{PATH}.{key} has no effect in Berth: a copy is one server-side CopyObject (streamed above 5 GiB)"));
        }
    }
    if let Some(acl) = cx.opt_string(p, "objectacl", PATH)? {
        if acl != "private" {
            cx.warn(format!("{PATH}.objectacl: {acl:?} is not supported by Berth and ignored; objects get the bucket's default ACL"));
        }
    }
    if let Some(level) = cx.opt_string(p, "loglevel", PATH)? {
        if level != "off" {
            cx.warn(format!("{PATH}.loglevel has no effect in Berth: failed S3 requests are logged as warnings, the others with log.level: debug"));
        }
    }
    if settings.keyid.is_some() && settings.encrypt != Some(true) {
        cx.warn(format!(
            "{PATH}.keyid is ignored without {PATH}.encrypt: true"
        ));
    }
    Ok(())
}
