//! `storage.s3`: every registry:2 key accepted, the ones without effect named in warnings,
//! `REGISTRY_STORAGE_S3_*` overrides (also of the `*_file` keys), and secrets from files.

use berth_config::{S3Settings, StorageDriverConfig};

use crate::{assert_warning, err, ok};

fn settings(loaded: &berth_config::Loaded) -> &S3Settings {
    match &loaded.config.storage.driver {
        StorageDriverConfig::S3 { settings, .. } => settings,
        other => panic!("expected s3, got {other:?}"),
    }
}

const EVERY_KEY: &str = "version: 0.1
storage:
  s3:
    accesskey: AKIA
    secretkey: SECRET
    sessiontoken: TOKEN
    region: eu-west-1
    regionendpoint: https://s3.example.com
    forcepathstyle: true
    bucket: images
    encrypt: true
    keyid: arn:aws:kms:key
    secure: true
    skipverify: false
    v4auth: false
    chunksize: 8388608
    multipartcopychunksize: 33554432
    multipartcopymaxconcurrency: 100
    multipartcopythresholdsize: 33554432
    rootdirectory: /registry
    storageclass: REDUCED_REDUNDANCY
    useragent: berth-test
    usedualstack: true
    accelerate: true
    objectacl: public-read
    loglevel: debug
";

#[test]
fn every_registry2_key_is_accepted_and_the_ineffective_ones_are_named() {
    let loaded = ok(EVERY_KEY, &[]);
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("unknown")),
        "{:#?}",
        loaded.warnings
    );
    let s = settings(&loaded);
    assert_eq!(s.bucket.as_deref(), Some("images"));
    assert_eq!(s.sessiontoken.as_deref(), Some("TOKEN"));
    assert_eq!(s.keyid.as_deref(), Some("arn:aws:kms:key"));
    assert_eq!(s.chunksize, Some(8 << 20));
    assert_eq!(s.forcepathstyle, Some(true));
    assert_eq!(s.skipverify, Some(false));
    assert_eq!(s.storageclass.as_deref(), Some("REDUCED_REDUNDANCY"));
    assert_eq!(s.useragent.as_deref(), Some("berth-test"));
    for key in [
        "storage.s3.v4auth",
        "storage.s3.usedualstack",
        "storage.s3.accelerate",
        "storage.s3.multipartcopychunksize",
        "storage.s3.multipartcopymaxconcurrency",
        "storage.s3.multipartcopythresholdsize",
        "storage.s3.objectacl",
        "storage.s3.loglevel",
    ] {
        assert_warning(&loaded, &[key]);
    }
    // Settings that mean what registry:2's defaults mean stay quiet.
    let quiet = ok(
        "version: 0.1\nstorage:\n  s3: {bucket: b, v4auth: true, accelerate: false, objectacl: private, loglevel: off}\n",
        &[],
    );
    assert!(quiet.warnings.is_empty(), "{:#?}", quiet.warnings);
}

#[test]
fn environment_overrides_reach_every_key_including_file_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("access");
    std::fs::write(&key_file, "FROMFILE\n").expect("write");
    let loaded = ok(
        "version: 0.1\nstorage: {s3: {bucket: b}}\n",
        &[
            (
                "REGISTRY_STORAGE_S3_ACCESSKEY_FILE",
                key_file.to_str().expect("utf-8"),
            ),
            ("REGISTRY_STORAGE_S3_SECRETKEY", "s3cr3t"),
            (
                "REGISTRY_STORAGE_S3_REGIONENDPOINT",
                "http://127.0.0.1:3900",
            ),
            ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "false"),
            ("REGISTRY_STORAGE_S3_SKIPVERIFY", "true"),
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", "6291456"),
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/r"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let s = settings(&loaded);
    assert_eq!(s.accesskey.as_deref(), Some("FROMFILE"), "newline dropped");
    assert_eq!(s.secretkey.as_deref(), Some("s3cr3t"));
    assert_eq!(s.regionendpoint.as_deref(), Some("http://127.0.0.1:3900"));
    assert_eq!(s.forcepathstyle, Some(false));
    assert_eq!(s.skipverify, Some(true));
    assert_eq!(s.chunksize, Some(6 << 20));
    assert_eq!(s.rootdirectory.as_deref(), Some("/r"));
}

#[test]
fn secret_files_must_be_readable_and_exclusive() {
    let text = err(
        "version: 0.1\nstorage: {s3: {bucket: b, secretkey_file: /nonexistent/secret}}\n",
        &[],
    );
    assert!(text.contains("storage.s3.secretkey_file"), "{text}");
    assert!(text.contains("/nonexistent/secret"), "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secret");
    std::fs::write(&file, "x").expect("write");
    let yaml = format!(
        "version: 0.1\nstorage: {{s3: {{bucket: b, secretkey: y, secretkey_file: {}}}}}\n",
        file.display()
    );
    let text = err(&yaml, &[]);
    assert!(text.contains("not both"), "{text}");
    let masked = ok(
        &format!(
            "version: 0.1\nstorage: {{s3: {{bucket: b, secretkey_file: {}}}}}\n",
            file.display()
        ),
        &[],
    )
    .config
    .to_masked_yaml();
    assert!(!masked.contains("secretkey: x"), "{masked}");
}

#[test]
fn chunksize_below_the_s3_minimum_is_an_error() {
    let text = err(
        "version: 0.1\nstorage: {s3: {bucket: b, chunksize: 1048576}}\n",
        &[],
    );
    assert!(text.contains("storage.s3.chunksize"), "{text}");
    let loaded = ok(
        "version: 0.1\nstorage: {s3: {bucket: b, chunksiez: 1}}\n",
        &[],
    );
    assert_warning(&loaded, &["storage.s3.chunksiez", "chunksize"]);
}
