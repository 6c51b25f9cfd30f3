//! registry:2's stock configurations, defaults and the embedded default.

use std::path::PathBuf;
use std::time::Duration;

use berth_config::*;

use crate::{assert_warning, env, err, ok, MINIMAL};

/// Equivalent of the `/etc/docker/registry/config.yml` shipped in the registry:2 image.
const REGISTRY2_IMAGE_CONFIG: &str = "\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

/// Equivalent of distribution's `cmd/registry/config-dev.yml` (4-space indents included).
const REGISTRY2_DEV_CONFIG: &str = "\
version: 0.1
log:
  level: debug
  fields:
    service: registry
    environment: development
storage:
    delete:
      enabled: true
    cache:
        blobdescriptor: inmemory
    filesystem:
        rootdirectory: /var/lib/registry
    maintenance:
        uploadpurging:
            enabled: false
http:
    addr: :5000
    debug:
        addr: :5001
        prometheus:
            enabled: true
            path: /metrics
    headers:
        X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

#[test]
fn registry2_image_config_loads_without_warnings() {
    let loaded = ok(REGISTRY2_IMAGE_CONFIG, &[]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert!(loaded.source.ends_with("config.yml"), "{}", loaded.source);
    let c = &loaded.config;
    assert_eq!(c.version, "0.1");
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.formatter, LogFormatter::Text);
    assert_eq!(
        c.log.fields.get("service"),
        Some(&serde_yaml::Value::from("registry"))
    );
    assert!(!c.log.accesslog_disabled);
    assert_eq!(
        c.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: PathBuf::from("/var/lib/registry"),
            maxthreads: 100,
            fsync: true
        }
    );
    assert_eq!(c.storage.cache.blobdescriptor.as_deref(), Some("inmemory"));
    assert!(
        !c.storage.delete_enabled,
        "registry:2 defaults delete to off"
    );
    assert!(!c.storage.redirect_disabled);
    assert!(!c.storage.maintenance.readonly_enabled);
    assert_eq!(
        c.storage.maintenance.uploadpurging,
        UploadPurgingConfig {
            enabled: true,
            age: Duration::from_secs(168 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dryrun: false,
        }
    );
    assert_eq!(c.http.addr, ":5000");
    assert_eq!(c.http.net, "tcp");
    assert_eq!(c.listen_addr(), "0.0.0.0:5000");
    assert_eq!(
        c.http.headers.get("X-Content-Type-Options"),
        Some(&vec!["nosniff".to_owned()])
    );
    assert_eq!(c.http.headers.len(), 1);
    assert_eq!(c.http.draintimeout, None);
    assert!(
        c.http.tls.is_none()
            && c.http.debug.is_none()
            && c.http.host.is_none()
            && c.http.secret.is_none()
    );
    assert!(c.health.storagedriver.enabled);
    assert_eq!(c.health.storagedriver.interval, Duration::from_secs(10));
    assert_eq!(c.health.storagedriver.threshold, 3);
    assert!(c.auth.is_none() && c.proxy.is_none() && c.notifications.is_none());
}

#[test]
fn registry2_dev_config_loads_and_reports_debug_server() {
    let loaded = ok(REGISTRY2_DEV_CONFIG, &[]);
    let c = &loaded.config;
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(
        c.log.fields.get("environment"),
        Some(&serde_yaml::Value::from("development"))
    );
    assert!(c.storage.delete_enabled);
    assert!(!c.storage.maintenance.uploadpurging.enabled);
    assert_eq!(
        c.storage.maintenance.uploadpurging.age,
        Duration::from_secs(168 * 3600),
        "other keys keep defaults"
    );
    let debug = c.http.debug.as_ref().expect("debug parsed");
    assert_eq!(debug.addr, ":5001");
    assert!(debug.prometheus.enabled);
    assert_eq!(debug.prometheus.path, "/metrics");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
}

#[test]
fn minimal_config_gets_registry2_defaults() {
    let loaded = ok("version: 0.1\nstorage: inmemory\n", &[]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.storage.driver, StorageDriverConfig::InMemory);
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.http.addr, ":5000");
    assert_eq!(c.http.net, "tcp");
    assert_eq!(c.http.prefix, "");
    assert!(!c.http.relativeurls && !c.http.http2_disabled);
    assert_eq!(
        c.http.headers.get("X-Content-Type-Options"),
        Some(&vec!["nosniff".to_owned()])
    );
    assert_eq!(c.health, HealthConfig::default());
    assert!(!c.health.storagedriver.enabled);
    assert_eq!(c.health.storagedriver.interval, Duration::from_secs(10));
    assert_eq!(
        c.health.storagedriver.threshold, 1,
        "registry:2: no threshold = one failure"
    );
    assert_eq!(c.storage.cache, CacheConfig::default());
    assert_eq!(
        c.limits,
        LimitsConfig::default(),
        "Berth's limits apply without a limits section"
    );

    let fs = ok("version: 0.1\nstorage:\n  filesystem:\n", &[]).config;
    assert_eq!(
        fs.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/var/lib/registry".into(),
            maxthreads: 100,
            fsync: true
        }
    );
    let explicit_empty = ok(&format!("{MINIMAL}http:\n  headers: {{}}\n"), &[]).config;
    assert!(
        explicit_empty.http.headers.is_empty(),
        "explicit empty headers are kept empty"
    );
}

#[test]
fn full_reference_config_parses_every_implemented_section() {
    let yaml = "\
version: 0.1
log:
  accesslog: {disabled: true}
  level: warn
  formatter: json
  fields: {service: registry, replicas: 3}
storage:
  filesystem: {rootdirectory: /data, maxthreads: 50}
  delete: {enabled: yes}
  redirect: {disable: true}
  cache: {blobdescriptor: inmemory, blobdescriptorsize: 5000}
  maintenance:
    uploadpurging: {enabled: true, age: 2h, interval: 30m, dryrun: true}
    readonly: {enabled: true}
http:
  addr: 127.0.0.1:5055
  prefix: /my/registry/
  host: https://registry.example.com:5000
  secret: asecretforlocaldevelopment
  relativeurls: true
  draintimeout: 1h30m
  tls:
    certificate: /certs/domain.crt
    key: /certs/domain.key
    clientcas: [/certs/ca1.pem, /certs/ca2.pem]
    minimumtls: tls1.3
  headers:
    X-Content-Type-Options: [nosniff]
    Strict-Transport-Security: max-age=31536000
  http2: {disabled: true}
auth:
  htpasswd: {realm: basic-realm, path: /auth/htpasswd}
notifications:
  events: {includereferences: true}
  endpoints:
    - name: alistener
      url: https://listener.example.com/event
      headers: {Authorization: [Bearer abc]}
      timeout: 500ms
      backoff: 3s
      ignoredmediatypes: [application/octet-stream]
      ignore: {mediatypes: [a/b], actions: [pull]}
    - name: second
      disabled: true
      url: http://other/
health:
  storagedriver: {enabled: true, interval: 30s, threshold: 5}
  file:
    - file: /tmp/down
  http:
    - uri: http://server/health
      headers: {Authorization: [Basic QWxh]}
      timeout: 3s
      threshold: 2
  tcp:
    - addr: redis:6379
      interval: 1m
proxy:
  remoteurl: https://registry-1.docker.io
  username: user
  password: hunter2
  ttl: 72h
";
    let loaded = ok(yaml, &[]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.log.level, LogLevel::Warn);
    assert_eq!(c.log.formatter, LogFormatter::Json);
    assert!(c.log.accesslog_disabled);
    assert_eq!(
        c.log.fields.get("replicas"),
        Some(&serde_yaml::Value::from(3))
    );
    assert_eq!(
        c.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/data".into(),
            maxthreads: 50,
            fsync: true
        }
    );
    assert!(
        c.storage.delete_enabled,
        "YAML 1.1 `yes` is true, as in registry:2"
    );
    assert!(c.storage.redirect_disabled);
    assert_eq!(c.storage.cache.blobdescriptorsize, Some(5000));
    let up = &c.storage.maintenance.uploadpurging;
    assert_eq!(
        (up.age, up.interval, up.dryrun),
        (Duration::from_secs(7200), Duration::from_secs(1800), true)
    );
    assert!(c.storage.maintenance.readonly_enabled);
    assert_eq!(c.listen_addr(), "127.0.0.1:5055");
    assert_eq!(c.http.prefix, "/my/registry/");
    assert_eq!(
        c.http.host.as_deref(),
        Some("https://registry.example.com:5000")
    );
    assert_eq!(c.http.secret.as_deref(), Some("asecretforlocaldevelopment"));
    assert!(c.http.relativeurls && c.http.http2_disabled);
    assert_eq!(c.http.draintimeout, Some(Duration::from_secs(5400)));
    assert_eq!(
        c.http.headers.get("Strict-Transport-Security"),
        Some(&vec!["max-age=31536000".to_owned()])
    );
    let tls = c.http.tls.expect("tls");
    assert_eq!(tls.certificate, Some(PathBuf::from("/certs/domain.crt")));
    assert_eq!(tls.key, Some(PathBuf::from("/certs/domain.key")));
    assert_eq!(
        tls.clientcas,
        vec![
            PathBuf::from("/certs/ca1.pem"),
            PathBuf::from("/certs/ca2.pem")
        ]
    );
    assert_eq!(tls.minimumtls.as_deref(), Some("tls1.3"));
    assert_eq!(
        c.auth,
        Some(AuthConfig::Htpasswd {
            realm: "basic-realm".into(),
            path: "/auth/htpasswd".into(),
            extra: Default::default()
        })
    );
    let n = c.notifications.expect("notifications");
    assert!(n.events.includereferences);
    assert_eq!(n.endpoints.len(), 2);
    let first = &n.endpoints[0];
    assert_eq!(
        (first.timeout, first.backoff, first.threshold),
        (Duration::from_millis(500), Duration::from_secs(3), 10)
    );
    assert_eq!(first.ignore.actions, vec!["pull".to_owned()]);
    assert_eq!(
        first.headers.get("Authorization"),
        Some(&vec!["Bearer abc".to_owned()])
    );
    let second = &n.endpoints[1];
    assert!(second.disabled);
    assert_eq!(
        (second.timeout, second.backoff),
        (Duration::from_secs(1), Duration::from_secs(1)),
        "defaults"
    );
    assert_eq!(c.health.storagedriver.threshold, 5);
    assert_eq!(c.health.file[0].file, PathBuf::from("/tmp/down"));
    assert_eq!(c.health.file[0].interval, Duration::from_secs(10));
    let hc = &c.health.http[0];
    assert_eq!(
        (hc.statuscode, hc.timeout, hc.threshold),
        (200, Some(Duration::from_secs(3)), 2)
    );
    assert_eq!(c.health.tcp[0].interval, Duration::from_secs(60));
    assert_eq!(c.health.tcp[0].timeout, None);
    let proxy = c.proxy.expect("proxy");
    assert_eq!(
        proxy.remoteurl.as_deref(),
        Some("https://registry-1.docker.io")
    );
    assert_eq!(proxy.password.as_deref(), Some("hunter2"));
    assert_eq!(proxy.cache_ttl(), Some(Duration::from_secs(72 * 3600)));
}

#[test]
fn embedded_default_uses_the_data_dir_and_enables_deletes() {
    let loaded = berth_config::load(None, &env(&[("BERTH_DATA_DIR", "/tmp/berth-test-data")]))
        .expect("embedded loads");
    assert_eq!(loaded.source, "embedded default");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(
        c.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/tmp/berth-test-data".into(),
            maxthreads: 100,
            fsync: true
        }
    );
    assert!(c.storage.delete_enabled);
    assert_eq!(c.http.addr, ":5000");
    assert_eq!(
        c.http.headers.get("X-Content-Type-Options"),
        Some(&vec!["nosniff".to_owned()])
    );
    assert_eq!(
        c.log.fields.get("service"),
        Some(&serde_yaml::Value::from("registry"))
    );
    // registry:2's stock health section: storage checked every 10 s, threshold 3.
    assert!(c.health.storagedriver.enabled);
    assert_eq!(c.health.storagedriver.interval, Duration::from_secs(10));
    assert_eq!(c.health.storagedriver.threshold, 3);

    let xdg = berth_config::load(None, &env(&[("XDG_DATA_HOME", "/xdg")])).expect("loads");
    if std::env::var_os("BERTH_DATA_DIR").is_none() {
        assert_eq!(
            xdg.config.storage.driver,
            StorageDriverConfig::Filesystem {
                rootdirectory: "/xdg/berth/registry".into(),
                maxthreads: 100,
                fsync: true
            }
        );
    }
    let process = berth_config::load(None, &[]).expect("loads");
    assert_eq!(
        process.config.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: default_root_directory(),
            maxthreads: 100,
            fsync: true
        }
    );
}

#[test]
fn listen_addr_expands_only_the_all_interfaces_form() {
    let addr = |a: &str, net: &str| {
        ok(
            &format!("{MINIMAL}http:\n  addr: '{a}'\n  net: {net}\n"),
            &[],
        )
        .config
        .listen_addr()
    };
    assert_eq!(addr(":5000", "tcp"), "0.0.0.0:5000");
    assert_eq!(addr(":5000", "tcp6"), "[::]:5000");
    assert_eq!(addr("127.0.0.1:5055", "tcp"), "127.0.0.1:5055");
    assert_eq!(addr("[::1]:5000", "tcp"), "[::1]:5000");
    assert_eq!(addr("localhost:5000", "tcp"), "localhost:5000");
    assert_eq!(addr("/run/berth.sock", "unix"), "/run/berth.sock");
}

#[test]
fn debug_addr_expands_like_the_main_address() {
    let addr = |yaml: &str| {
        ok(&format!("{MINIMAL}{yaml}"), &[])
            .config
            .debug_listen_addr()
    };
    // The stock config's `:5001` failed to bind before this was shared (found by
    // scripts/validate-deploy.sh in the container image).
    assert_eq!(
        addr("http:\n  debug: {addr: ':5001'}\n").as_deref(),
        Some("0.0.0.0:5001")
    );
    assert_eq!(
        addr("http:\n  debug: {addr: '127.0.0.1:5001'}\n").as_deref(),
        Some("127.0.0.1:5001")
    );
    assert_eq!(addr(""), None);
}

#[test]
fn log_levels_accept_registry2_spellings() {
    let level = |l: &str| {
        ok(&format!("{MINIMAL}log:\n  level: {l}\n"), &[])
            .config
            .log
            .level
    };
    assert_eq!(level("error"), LogLevel::Error);
    assert_eq!(level("panic"), LogLevel::Error);
    assert_eq!(level("fatal"), LogLevel::Error);
    assert_eq!(level("warn"), LogLevel::Warn);
    assert_eq!(level("warning"), LogLevel::Warn);
    assert_eq!(level("INFO"), LogLevel::Info);
    assert_eq!(level("debug"), LogLevel::Debug);
    let formatter = ok(&format!("{MINIMAL}log:\n  formatter: logstash\n"), &[])
        .config
        .log
        .formatter;
    assert_eq!(formatter, LogFormatter::Logstash);
}

#[test]
fn deprecated_loglevel_is_used_with_a_warning() {
    let loaded = ok(&format!("{MINIMAL}loglevel: debug\n"), &[]);
    assert_eq!(loaded.config.log.level, LogLevel::Debug);
    assert_warning(&loaded, &["\"loglevel\" is deprecated", "log.level"]);
    let both = ok(
        &format!("{MINIMAL}loglevel: debug\nlog:\n  level: error\n"),
        &[],
    );
    assert_eq!(
        both.config.log.level,
        LogLevel::Error,
        "log.level wins, as in registry:2"
    );
}

#[test]
fn keys_are_matched_ignoring_case() {
    let loaded = ok(
        "Version: 0.1\nSTORAGE:\n  FileSystem:\n    RootDirectory: /x\nHttp:\n  Addr: ':6000'\n",
        &[],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert_eq!(loaded.config.http.addr, ":6000");
    assert_eq!(
        loaded.config.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/x".into(),
            maxthreads: 100,
            fsync: true
        }
    );
}

#[test]
fn durations_follow_go_and_bare_numbers_are_nanoseconds() {
    let loaded = ok(&format!("{MINIMAL}http:\n  draintimeout: 60s\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 1500\n"), &[]);
    assert_eq!(
        loaded.config.http.draintimeout,
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        loaded.config.health.storagedriver.interval,
        Duration::from_nanos(1500)
    );
    assert_warning(
        &loaded,
        &[
            "health.storagedriver.interval",
            "1500 nanoseconds",
            "\"1500s\"",
        ],
    );
    let text = err(&format!("{MINIMAL}http:\n  draintimeout: 1.5\n"), &[]);
    assert!(
        text.contains("http.draintimeout: invalid value 1.5: expected a duration"),
        "{text}"
    );
}

#[test]
fn effective_yaml_round_trips() {
    let original = ok(
        REGISTRY2_DEV_CONFIG,
        &[
            ("REGISTRY_PROXY_REMOTEURL", "https://upstream"),
            ("REGISTRY_HTTP_SECRET", "s3cr3t"),
        ],
    );
    let text = original.config.to_yaml();
    let again =
        berth_config::load_str(&text, "effective.yml", &[]).expect("effective config loads");
    assert_eq!(again.config, original.config, "{text}");
    assert!(text.contains("s3cr3t"), "to_yaml is unmasked");
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let missing = PathBuf::from("/nonexistent/berth/config.yml");
    let e = berth_config::load(Some(&missing), &[]).expect_err("missing file");
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().contains("/nonexistent/berth/config.yml"),
        "{e}"
    );
}
