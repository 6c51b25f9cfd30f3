//! `REGISTRY_*` overrides, with registry:2's semantics (and its crashes turned into results).

use std::path::PathBuf;

use berth_config::*;

use crate::{assert_warning, env, err, ok, MINIMAL};

const FILE: &str = "\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: false
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
";

fn rootdir(c: &Config) -> PathBuf {
    match &c.storage.driver {
        StorageDriverConfig::Filesystem { rootdirectory, .. } => rootdirectory.clone(),
        other => panic!("expected filesystem, got {other:?}"),
    }
}

#[test]
fn documented_examples_override_file_values() {
    let loaded = ok(
        FILE,
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:5055"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/tmp/x"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_LOG_LEVEL", "debug"),
            ("REGISTRY_HTTP_SECRET", "0123456"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.http.addr, "127.0.0.1:5055");
    assert_eq!(c.listen_addr(), "127.0.0.1:5055");
    assert_eq!(rootdir(c), PathBuf::from("/tmp/x"));
    assert!(c.storage.delete_enabled);
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(
        c.http.secret.as_deref(),
        Some("0123456"),
        "secret text kept exactly, not read as a number"
    );
}

#[test]
fn overrides_create_missing_sections() {
    let loaded = ok(
        MINIMAL,
        &[
            ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io"),
            ("REGISTRY_PROXY_TTL", "24h"),
        ],
    );
    let proxy = loaded
        .config
        .proxy
        .expect("proxy created from the environment");
    assert_eq!(
        proxy.remoteurl.as_deref(),
        Some("https://registry-1.docker.io")
    );
    assert_eq!(proxy.ttl, Some(std::time::Duration::from_secs(86400)));
    assert!(proxy.username.is_none() && proxy.password.is_none());
}

#[test]
fn readonly_as_yaml_value() {
    let loaded = ok(
        FILE,
        &[("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: true}")],
    );
    assert!(loaded.config.storage.maintenance.readonly_enabled);
    assert!(
        loaded.config.storage.maintenance.uploadpurging.enabled,
        "sibling defaults untouched"
    );
    let off = ok(
        FILE,
        &[("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: false}")],
    );
    assert!(!off.config.storage.maintenance.readonly_enabled);
}

#[test]
fn readonly_enabled_form_works_where_registry2_crashes() {
    let loaded = ok(
        FILE,
        &[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")],
    );
    assert!(loaded.config.storage.maintenance.readonly_enabled);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let with_file_value = format!("{MINIMAL}  maintenance:\n    readonly:\n      enabled: false\n");
    assert!(
        !ok(&with_file_value, &[])
            .config
            .storage
            .maintenance
            .readonly_enabled
    );
    let over = ok(
        &with_file_value,
        &[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")],
    );
    assert!(over.config.storage.maintenance.readonly_enabled);
}

#[test]
fn adding_a_second_driver_from_env_is_an_error_naming_both() {
    let text = err(FILE, &[("REGISTRY_STORAGE_S3_BUCKET", "mybucket")]);
    assert!(
        text.contains("config.yml: storage: 2 storage drivers configured (filesystem, s3)"),
        "{text}"
    );
    assert!(text.contains("REGISTRY_STORAGE_S3_BUCKET"), "{text}");
    assert!(text.contains("REGISTRY_STORAGE=<driver>"), "{text}");
}

#[test]
fn switching_driver_with_registry_storage_then_parameters() {
    // Given in an order where the parameter comes first: overrides are applied in lexical order.
    let loaded = ok(
        FILE,
        &[
            ("REGISTRY_STORAGE_S3_REGION", "eu-west-1"),
            ("REGISTRY_STORAGE_S3_BUCKET", "mybucket"),
            ("REGISTRY_STORAGE_S3_SECURE", "false"),
            ("REGISTRY_STORAGE", "s3"),
        ],
    );
    let StorageDriverConfig::S3 { params, settings } = &loaded.config.storage.driver else {
        panic!("expected s3, got {:?}", loaded.config.storage.driver);
    };
    assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
    assert_eq!(settings.bucket.as_deref(), Some("mybucket"));
    assert_eq!(settings.secure, Some(false));
    assert_eq!(params.len(), 3);
    assert!(
        !loaded.config.storage.delete_enabled,
        "REGISTRY_STORAGE replaced the whole section"
    );

    let mem = ok(
        FILE,
        &[
            ("REGISTRY_STORAGE", "inmemory"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ],
    );
    assert_eq!(mem.config.storage.driver, StorageDriverConfig::InMemory);
    assert!(mem.config.storage.delete_enabled);
}

#[test]
fn version_can_come_from_the_environment() {
    let no_version = "storage: inmemory\n";
    let loaded = ok(no_version, &[("REGISTRY_VERSION", "0.1")]);
    assert_eq!(loaded.config.version, "0.1");
    let text = err(no_version, &[]);
    assert!(
        text.contains("config.yml: missing required key \"version\""),
        "{text}"
    );
    let text = err(MINIMAL, &[("REGISTRY_VERSION", "0.2")]);
    assert!(text.contains("environment variable REGISTRY_VERSION: version: unsupported configuration version \"0.2\""), "{text}");
}

#[test]
fn other_variables_are_ignored_and_unknown_registry_ones_warn() {
    let loaded = ok(
        MINIMAL,
        &[
            ("HTTP_ADDR", "1.2.3.4:1"),
            ("PATH", "/usr/bin"),
            ("MY_REGISTRY_HTTP_ADDR", "1.2.3.4:2"),
            ("REGISTRY_HTTP_ADR", "1.2.3.4:3"),
            ("REGISTRY_NOSUCHSECTION", "x"),
        ],
    );
    assert_eq!(loaded.config.http.addr, ":5000");
    assert_eq!(loaded.warnings.len(), 2, "{:#?}", loaded.warnings);
    assert_warning(
        &loaded,
        &[
            "REGISTRY_HTTP_ADR ",
            "does not match",
            "did you mean REGISTRY_HTTP_ADDR?",
        ],
    );
    assert_warning(&loaded, &["REGISTRY_NOSUCHSECTION", "ignored"]);
}

#[test]
fn invalid_values_from_env_name_the_variable() {
    let text = err(FILE, &[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")]);
    assert_eq!(
        text,
        "environment variable REGISTRY_STORAGE_DELETE_ENABLED: storage.delete.enabled: invalid value \"maybe\": expected a boolean (true or false)"
    );
    let text = err(
        FILE,
        &[(
            "REGISTRY_STORAGE_MAINTENANCE_READONLY",
            "{enabled: perhaps}",
        )],
    );
    assert!(text.starts_with("environment variable REGISTRY_STORAGE_MAINTENANCE_READONLY: storage.maintenance.readonly.enabled"), "{text}");
}

#[test]
fn overrides_apply_to_the_embedded_default() {
    let loaded = berth_config::load(
        None,
        &env(&[
            ("BERTH_DATA_DIR", "/tmp/berth-env"),
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
        ]),
    )
    .expect("loads");
    assert_eq!(loaded.config.http.addr, "127.0.0.1:0");
    assert!(!loaded.config.storage.delete_enabled);
    assert_eq!(rootdir(&loaded.config), PathBuf::from("/tmp/berth-env"));
    let moved = berth_config::load(
        None,
        &env(&[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/r")]),
    )
    .expect("loads");
    assert_eq!(rootdir(&moved.config), PathBuf::from("/srv/r"));
}

#[test]
fn existing_keys_match_ignoring_case() {
    let loaded = ok(
        FILE,
        &[(
            "REGISTRY_HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS",
            "[nosniff, extra]",
        )],
    );
    assert_eq!(
        loaded.config.http.headers.len(),
        1,
        "{:?}",
        loaded.config.http.headers
    );
    assert_eq!(
        loaded.config.http.headers["X-Content-Type-Options"],
        vec!["nosniff".to_owned(), "extra".to_owned()]
    );
    let added = ok(FILE, &[("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS", "DENY")]);
    assert_eq!(
        added.config.http.headers.get("x-frame-options"),
        Some(&vec!["DENY".to_owned()])
    );
    let mixed = ok(
        "version: 0.1\nStorage:\n  FileSystem:\n    RootDirectory: /a\n",
        &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/b")],
    );
    assert_eq!(rootdir(&mixed.config), PathBuf::from("/b"));
}

#[test]
fn list_items_by_index() {
    let loaded = ok(
        MINIMAL,
        &[
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME", "hook"),
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", "http://hook/"),
            (
                "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_HEADERS",
                "{Authorization: [Bearer x]}",
            ),
        ],
    );
    let n = loaded.config.notifications.expect("notifications");
    assert_eq!(n.endpoints.len(), 1);
    assert_eq!(n.endpoints[0].url, "http://hook/");
    let text = err(
        MINIMAL,
        &[("REGISTRY_NOTIFICATIONS_ENDPOINTS_3_URL", "http://x/")],
    );
    assert!(
        text.contains("environment variable REGISTRY_NOTIFICATIONS_ENDPOINTS_3_URL")
            && text.contains("past the end"),
        "{text}"
    );
}

#[test]
fn overrides_into_unsupported_sections_warn_as_unsupported() {
    let loaded = ok(MINIMAL, &[("REGISTRY_REDIS_ADDR", "localhost:6379")]);
    assert_eq!(
        loaded.warnings,
        vec!["config key \"redis\" is not supported by Berth yet and is ignored".to_owned()]
    );
}

#[test]
fn online_gc_section_from_file_and_env() {
    let defaults = ok(FILE, &[]).config.storage.maintenance.gc;
    assert_eq!(defaults, OnlineGcConfig::default());
    assert!(!defaults.enabled);
    assert_eq!(defaults.delay, std::time::Duration::from_secs(3600));

    let with_gc = |gc: &str| {
        FILE.replace(
            "  delete:\n",
            &format!("  maintenance:\n    gc: {gc}\n  delete:\n"),
        )
    };
    let from_file = ok(
        &with_gc("{enabled: true, interval: 30m, delay: 2h, dryrun: true}"),
        &[],
    );
    assert!(from_file.warnings.is_empty(), "{:?}", from_file.warnings);
    let gc = from_file.config.storage.maintenance.gc;
    assert!(gc.enabled && gc.dryrun);
    assert_eq!(gc.interval, std::time::Duration::from_secs(1800));
    assert_eq!(gc.delay, std::time::Duration::from_secs(7200));

    let loaded = ok(
        FILE,
        &[
            ("REGISTRY_STORAGE_MAINTENANCE_GC_ENABLED", "true"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "10m"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_DELAY", "90s"),
            ("REGISTRY_STORAGE_MAINTENANCE_GC_DRYRUN", "false"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let gc = loaded.config.storage.maintenance.gc;
    assert!(gc.enabled && !gc.dryrun);
    assert_eq!(gc.interval, std::time::Duration::from_secs(600));
    assert_eq!(gc.delay, std::time::Duration::from_secs(90));
    assert!(
        loaded.config.storage.maintenance.uploadpurging.enabled,
        "sibling defaults untouched"
    );
    let message = err(&with_gc("{delay: soon}"), &[]);
    assert!(
        message.contains("storage.maintenance.gc.delay"),
        "{message}"
    );
    // A zero delay is refused, not silently turned into the 1h default.
    let message = err(&with_gc("{enabled: true, delay: 0s}"), &[]);
    assert!(
        message.contains("storage.maintenance.gc.delay") && message.contains("longer than"),
        "{message}"
    );
}
