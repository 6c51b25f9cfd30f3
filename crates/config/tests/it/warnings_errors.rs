//! Warnings for ignored keys, and errors that name the file and the key.

use berth_config::*;

use crate::{assert_warning, err, ok, MINIMAL};

#[test]
fn keys_registry2_knows_but_berth_ignores_are_named() {
    let yaml = format!(
        "{MINIMAL}  cache:\n    blobdescriptor: redis\n  tag:\n    concurrencylimit: 8\n\
redis:\n  addr: localhost:6379\n\
middleware:\n  registry:\n    - name: foo\n\
reporting:\n  bugsnag:\n    apikey: x\n\
validation:\n  disabled: true\n\
compatibility:\n  schema1:\n    enabled: true\n\
log:\n  hooks:\n    - type: mail\n\
http:\n  tls:\n    letsencrypt:\n      cachefile: /le\n      email: a@b.c\n"
    );
    let loaded = ok(&yaml, &[]);
    for key in [
        "redis",
        "middleware",
        "reporting",
        "validation",
        "compatibility",
        "log.hooks",
        "storage.tag",
        "http.tls.letsencrypt",
    ] {
        assert_warning(
            &loaded,
            &[&format!(
                "config key \"{key}\" is not supported by Berth yet and is ignored"
            )],
        );
    }
    assert_warning(
        &loaded,
        &[
            "storage.cache.blobdescriptor",
            "\"redis\"",
            "not supported by Berth yet",
        ],
    );
    assert_eq!(loaded.warnings.len(), 9, "{:#?}", loaded.warnings);
    assert!(
        loaded.config.http.tls.is_some(),
        "letsencrypt-only TLS is still reported as TLS, so the server can refuse it"
    );
}

#[test]
fn unknown_keys_warn_with_suggestions() {
    let yaml = format!(
        "{MINIMAL}http:\n  adr: ':5000'\nlogg:\n  level: info\nrootdirectory: /x\n\
notifications:\n  endpoints:\n    - name: a\n      url: http://a/\n      urll: http://b/\nwhatever: 1\n"
    );
    let loaded = ok(&yaml, &[]);
    assert_warning(
        &loaded,
        &["unknown config key \"http.adr\" (ignored); did you mean \"http.addr\"?"],
    );
    assert_warning(
        &loaded,
        &["unknown config key \"logg\" (ignored); did you mean \"log\"?"],
    );
    assert_warning(
        &loaded,
        &[
            "unknown config key \"rootdirectory\"",
            "did you mean \"storage.filesystem.rootdirectory\"?",
        ],
    );
    assert_warning(
        &loaded,
        &[
            "unknown config key \"notifications.endpoints[0].urll\"",
            "\"notifications.endpoints[0].url\"",
        ],
    );
    assert_warning(&loaded, &["unknown config key \"whatever\" (ignored)"]);
    assert_eq!(loaded.warnings.len(), 5, "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.config.http.addr, ":5000",
        "the misspelt key did not take effect"
    );
}

#[test]
fn unknown_storage_driver_is_kept_and_warned() {
    let loaded = ok(
        "version: 0.1\nstorage:\n  filesytem:\n    rootdirectory: /x\n",
        &[],
    );
    assert_eq!(loaded.config.storage.driver.name(), "filesytem");
    assert!(matches!(
        loaded.config.storage.driver,
        StorageDriverConfig::Other { .. }
    ));
    assert_warning(
        &loaded,
        &[
            "unknown storage driver \"filesytem\"",
            "did you mean \"filesystem\"?",
        ],
    );
    let gcs = ok("version: 0.1\nstorage:\n  gcs:\n    bucket: b\n", &[]);
    assert!(gcs.warnings.is_empty(), "{:#?}", gcs.warnings);
    let StorageDriverConfig::Other { name, params } = &gcs.config.storage.driver else {
        panic!("gcs is Other")
    };
    assert_eq!(
        (name.as_str(), params.get("bucket")),
        ("gcs", Some(&serde_yaml::Value::from("b")))
    );
}

#[test]
fn wrong_values_are_errors_naming_file_and_key() {
    let cases = [
        ("http:\n  draintimeout: banana\n", "http.draintimeout: invalid value \"banana\": expected a duration"),
        ("  delete:\n    enabled: maybe\n", "storage.delete.enabled: invalid value \"maybe\": expected a boolean"),
        ("log:\n  level: loud\n", "log.level: invalid value \"loud\": expected one of error, warn, info, debug"),
        ("log:\n  formatter: xml\n", "log.formatter: invalid value \"xml\""),
        ("http:\n  addr: '5000'\n", "http.addr: invalid value \"5000\": expected HOST:PORT"),
        ("http:\n  net: udp\n", "http.net: invalid value \"udp\""),
        ("http:\n  headers: [a]\n", "http.headers: invalid value (a list): expected a mapping"),
        ("http:\n  tls:\n    certificate: /c\n    key: /k\n    minimumtls: tls9\n", "http.tls.minimumtls: invalid value \"tls9\""),
        ("health:\n  storagedriver:\n    threshold: -1\n", "health.storagedriver.threshold: invalid value -1"),
        ("health:\n  http:\n    - uri: http://x/\n      statuscode: abc\n", "health.http[0].statuscode: invalid value \"abc\""),
        ("proxy:\n  remoteurl: http://x/\n  ttl: 7d\n", "proxy.ttl: invalid value \"7d\": expected a duration"),
        ("proxy:\n  remoteurl: http://x/\n  username: [user]\n", "proxy.username: invalid value (a list): expected a string"),
        ("  maintenance:\n    readonly: true\n", "storage.maintenance.readonly: invalid value true: expected a mapping"),
        ("  maintenance:\n    uploadpurging:\n      age: forever\n", "storage.maintenance.uploadpurging.age: invalid value \"forever\""),
        ("notifications:\n  endpoints:\n    - name: a\n      url: http://a/\n      timeout: soon\n", "notifications.endpoints[0].timeout: invalid value \"soon\""),
    ];
    for (extra, expected) in cases {
        // Storage-level snippets (indented) extend the storage section of MINIMAL.
        let text = err(&format!("{MINIMAL}{extra}"), &[]);
        assert!(
            text.contains("config.yml: "),
            "error should name the file: {text}"
        );
        assert!(text.contains(expected), "expected {expected:?} in {text:?}");
    }
}

#[test]
fn missing_required_keys_are_errors() {
    let cases = [
        (
            "auth:\n  htpasswd:\n    realm: r\n",
            "auth.htpasswd.path: missing required key",
        ),
        (
            "auth:\n  silly:\n    realm: r\n",
            "auth.silly.service: missing required key",
        ),
        (
            "auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n",
            "auth.token.rootcertbundle: missing required key",
        ),
        (
            "http:\n  tls:\n    certificate: /c\n",
            "http.tls.key: missing required key",
        ),
        (
            "http:\n  tls:\n    key: /k\n",
            "http.tls.certificate: missing required key",
        ),
        (
            "notifications:\n  endpoints:\n    - name: a\n",
            "notifications.endpoints[0].url: missing required key",
        ),
        (
            "health:\n  tcp:\n    - timeout: 1s\n",
            "health.tcp[0].addr: missing required key",
        ),
    ];
    for (extra, expected) in cases {
        let text = err(&format!("{MINIMAL}{extra}"), &[]);
        assert!(
            text.contains("config.yml: ") && text.contains(expected),
            "expected {expected:?} in {text:?}"
        );
    }
}

#[test]
fn auth_providers_are_exclusive_and_known() {
    let text = err(&format!("{MINIMAL}auth:\n  silly: {{realm: r, service: s}}\n  htpasswd: {{realm: r, path: /p}}\n"), &[]);
    assert!(
        text.contains("auth: only one auth provider can be configured, found silly, htpasswd"),
        "{text}"
    );
    let text = err(
        &format!("{MINIMAL}auth:\n  htpassword: {{realm: r, path: /p}}\n"),
        &[],
    );
    assert!(
        text.contains("unknown auth provider \"htpassword\"")
            && text.contains("did you mean \"htpasswd\"?"),
        "{text}"
    );
    let token = ok(&format!("{MINIMAL}auth:\n  token: {{realm: https://auth/token, service: reg, issuer: iss, jwks: /jwks.json, autoredirect: true, signingalgorithms: [EdDSA]}}\n"), &[]);
    let Some(AuthConfig::Token {
        jwks,
        autoredirect,
        extra,
        ..
    }) = &token.config.auth
    else {
        panic!("token auth")
    };
    assert_eq!(jwks.as_deref(), Some(std::path::Path::new("/jwks.json")));
    assert!(*autoredirect);
    assert!(extra.contains_key("signingalgorithms"), "extras kept raw");
    assert_warning(
        &token,
        &["config key \"auth.token.signingalgorithms\" is not supported by Berth yet"],
    );
    assert!(ok(&format!("{MINIMAL}auth:\n"), &[]).config.auth.is_none());
}

#[test]
fn structural_errors() {
    let text = err("storage: inmemory\n", &[]);
    assert!(
        text.contains("config.yml: missing required key \"version\""),
        "{text}"
    );
    let text = err("version: 0.2\nstorage: inmemory\n", &[]);
    assert!(
        text.contains("config.yml: version: unsupported configuration version \"0.2\""),
        "{text}"
    );
    let text = err("version: 0.1\nhttp:\n  addr: ':5000'\n", &[]);
    assert!(
        text.contains("config.yml: storage: no storage driver configured"),
        "{text}"
    );
    let text = err(
        "version: 0.1\nstorage:\n  delete:\n    enabled: true\n",
        &[],
    );
    assert!(
        text.contains("no storage driver configured"),
        "only settings, no driver: {text}"
    );
    let text = err(
        "version: 0.1\nstorage:\n  filesystem: {}\n  inmemory:\n  delete: {enabled: true}\n",
        &[],
    );
    assert!(text.contains("config.yml: storage: 2 storage drivers configured (filesystem, inmemory): configure exactly one"), "{text}");
    let text = err(
        "version: 0.1\nstorage:\n  filesystem: /var/lib/registry\n",
        &[],
    );
    assert!(text.contains("storage.filesystem: invalid value \"/var/lib/registry\": expected a mapping of filesystem driver parameters"), "{text}");
    let text = err("version: 0.1\nstorage: [inmemory]\n", &[]);
    assert!(
        text.contains("config.yml: storage: invalid value (a list)"),
        "{text}"
    );
    let text = err("version: 0.1\nstorage:\n  inmemory: {\n", &[]);
    assert!(text.contains("config.yml: invalid YAML"), "{text}");
    let text = err("- version\n", &[]);
    assert!(
        text.contains("config.yml: invalid YAML: the top level must be a mapping"),
        "{text}"
    );
    let text = err("", &[]);
    assert!(
        text.contains("missing required key \"version\""),
        "empty file: {text}"
    );
}

#[test]
fn filesystem_maxthreads_is_clamped_like_registry2() {
    let loaded = ok(
        "version: 0.1\nstorage:\n  filesystem:\n    maxthreads: 5\n",
        &[],
    );
    assert_eq!(
        loaded.config.storage.driver,
        StorageDriverConfig::Filesystem {
            rootdirectory: "/var/lib/registry".into(),
            maxthreads: 25,
            fsync: true
        }
    );
    assert_warning(&loaded, &["storage.filesystem.maxthreads", "minimum of 25"]);
}

#[test]
fn proxy_without_remoteurl_is_off_with_a_warning() {
    let loaded = ok(&format!("{MINIMAL}proxy:\n  username: u\n"), &[]);
    assert!(loaded.config.proxy.is_none());
    assert_warning(&loaded, &["proxy.remoteurl", "pull-through cache is off"]);
    let zero = ok(
        &format!("{MINIMAL}proxy:\n  remoteurl: https://r\n  ttl: 0\n"),
        &[],
    )
    .config
    .proxy
    .expect("proxy");
    assert_eq!(zero.cache_ttl(), None, "ttl 0 = never expire");
    let unset = ok(&format!("{MINIMAL}proxy:\n  remoteurl: https://r\n"), &[])
        .config
        .proxy
        .expect("proxy");
    assert_eq!(
        unset.cache_ttl(),
        Some(std::time::Duration::from_secs(168 * 3600))
    );
}
