//! The `proxy` section's Berth extension: many upstreams, a default, private prefixes; parsed,
//! validated, masked and written back; settable from `REGISTRY_PROXY_*`.

use std::time::Duration;

use berth_config::UpstreamConfig;

use crate::{err, ok, MINIMAL};

const MULTI: &str = "\
proxy:
  upstreams:
    - host: docker.io
      url: https://registry-1.docker.io/
      username: hubuser
      password: hub-secret
      ttl: 10m
      proxy: http://127.0.0.1:3128
      timeout: 2s
      allowprivateredirects: true
    - host: ghcr.io
      url: https://ghcr.io
  default: docker.io
  private: [team/, ci]
";

#[test]
fn many_upstreams_parse_without_warnings() {
    let loaded = ok(&format!("{MINIMAL}{MULTI}"), &[]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let proxy = loaded.config.proxy.expect("proxy");
    assert_eq!(proxy.remoteurl, None);
    assert_eq!(proxy.default.as_deref(), Some("docker.io"));
    assert_eq!(proxy.private, vec!["team".to_owned(), "ci".to_owned()]);
    let hub = &proxy.upstreams[0];
    assert_eq!(
        hub.url, "https://registry-1.docker.io",
        "trailing slash dropped"
    );
    assert_eq!(hub.tag_ttl(), Duration::from_secs(600));
    assert_eq!(hub.header_timeout(), Duration::from_secs(2));
    assert_eq!(hub.proxy.as_deref(), Some("http://127.0.0.1:3128"));
    let ghcr = &proxy.upstreams[1];
    assert_eq!(ghcr.tag_ttl(), UpstreamConfig::DEFAULT_TTL);
    assert_eq!(ghcr.header_timeout(), UpstreamConfig::DEFAULT_TIMEOUT);
    assert_eq!(ghcr.username, None);
    assert!(hub.allowprivateredirects && !ghcr.allowprivateredirects);
}

#[test]
fn passwords_are_masked_and_the_yaml_round_trips() {
    let loaded = ok(&format!("{MINIMAL}{MULTI}"), &[]);
    let masked = loaded.config.to_masked_yaml();
    assert!(!masked.contains("hub-secret"), "{masked}");
    assert!(masked.contains("hubuser"), "{masked}");
    let text = loaded.config.to_yaml();
    let again = berth_config::load_str(&text, "effective.yml", &[]).expect("loads");
    assert_eq!(again.config, loaded.config, "{text}");
}

#[test]
fn upstreams_can_be_set_from_the_environment() {
    let loaded = ok(
        MINIMAL,
        &[
            ("REGISTRY_PROXY_UPSTREAMS", "[]"),
            (
                "REGISTRY_PROXY_UPSTREAMS_0",
                "{host: docker.io, url: http://127.0.0.1:5001}",
            ),
            ("REGISTRY_PROXY_UPSTREAMS_0_TTL", "1m"),
            ("REGISTRY_PROXY_DEFAULT", "docker.io"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let proxy = loaded.config.proxy.expect("proxy");
    assert_eq!(proxy.upstreams[0].url, "http://127.0.0.1:5001");
    assert_eq!(proxy.upstreams[0].tag_ttl(), Duration::from_secs(60));
    assert_eq!(proxy.default.as_deref(), Some("docker.io"));
}

#[test]
fn inconsistent_settings_are_errors_naming_the_key() {
    let cases = [
        (
            "proxy:\n  remoteurl: https://a\n  upstreams: [{host: docker.io, url: https://b}]\n",
            "either proxy.remoteurl",
        ),
        (
            "proxy:\n  upstreams: [{host: docker.io, url: https://b}]\n  default: ghcr.io\n",
            "default: \"ghcr.io\" is not the host of any entry",
        ),
        (
            "proxy:\n  upstreams: [{host: docker.io, url: https://b}, {host: docker.io, url: https://c}]\n",
            "listed twice",
        ),
        (
            "proxy:\n  upstreams: [{host: \"localhost:5000\", url: https://b}]\n",
            "proxy.upstreams[0].host: invalid value",
        ),
        (
            "proxy:\n  upstreams: [{host: docker.io, url: registry-1.docker.io}]\n",
            "proxy.upstreams[0].url: invalid value",
        ),
        (
            "proxy:\n  upstreams: [{host: docker.io}]\n",
            "proxy.upstreams[0].url: missing required key",
        ),
        (
            "proxy:\n  upstreams: [{host: docker.io, url: https://b, proxy: squid:3128}]\n",
            "proxy.upstreams[0].proxy: invalid value",
        ),
        (
            "proxy:\n  upstreams: [{host: docker.io, url: https://b, timeout: 0s}]\n",
            "proxy.upstreams[0].timeout: invalid value",
        ),
        ("proxy:\n  remoteurl: ftp://x\n", "proxy.remoteurl: invalid value"),
    ];
    for (yaml, want) in cases {
        let text = err(&format!("{MINIMAL}{yaml}"), &[]);
        assert!(text.contains(want), "{yaml}: {text}");
    }
}

#[test]
fn unknown_upstream_keys_are_warned_about() {
    let loaded = ok(
        &format!(
            "{MINIMAL}proxy:\n  upstreams:\n    - {{host: docker.io, url: https://b, ttll: 5m}}\n"
        ),
        &[],
    );
    crate::assert_warning(&loaded, &["proxy.upstreams[0].ttll", "did you mean"]);
}

#[test]
fn the_spool_directory_is_read_written_back_and_set_from_the_environment() {
    let upstream = "proxy:\n  upstreams: [{host: docker.io, url: https://b}]\n";
    // Unset by default: the proxy crate picks the storage root, else the temp directory.
    let loaded = ok(&format!("{MINIMAL}{upstream}"), &[]);
    assert_eq!(loaded.config.proxy.as_ref().expect("proxy").spooldir, None);
    assert!(!loaded.config.to_yaml().contains("spooldir"));

    let loaded = ok(
        &format!("{MINIMAL}{upstream}  spooldir: /var/lib/registry\n"),
        &[],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let proxy = loaded.config.proxy.clone().expect("proxy");
    assert_eq!(
        proxy.spooldir.as_deref(),
        Some(std::path::Path::new("/var/lib/registry"))
    );
    let text = loaded.config.to_yaml();
    assert!(text.contains("spooldir: /var/lib/registry"), "{text}");
    let again = berth_config::load_str(&text, "effective.yml", &[]).expect("loads");
    assert_eq!(again.config, loaded.config, "{text}");

    // The environment wins over the file, in registry:2 mode too.
    let loaded = ok(
        &format!("{MINIMAL}{upstream}  spooldir: /var/lib/registry\n"),
        &[("REGISTRY_PROXY_SPOOLDIR", "/spool")],
    );
    assert_eq!(
        loaded.config.proxy.expect("proxy").spooldir.as_deref(),
        Some(std::path::Path::new("/spool"))
    );
    let loaded = ok(
        MINIMAL,
        &[
            ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io"),
            ("REGISTRY_PROXY_SPOOLDIR", "/data/spool"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.config.proxy.expect("proxy").spooldir.as_deref(),
        Some(std::path::Path::new("/data/spool"))
    );
}

#[test]
fn a_relative_spool_directory_is_an_error_naming_the_key() {
    let text = err(
        &format!(
            "{MINIMAL}proxy:\n  upstreams: [{{host: docker.io, url: https://b}}]\n  spooldir: spool\n"
        ),
        &[],
    );
    assert!(text.contains("proxy.spooldir: invalid value"), "{text}");
    assert!(text.contains("absolute path"), "{text}");
    // A typo is warned about with the right spelling.
    let loaded = ok(
        &format!(
            "{MINIMAL}proxy:\n  upstreams: [{{host: docker.io, url: https://b}}]\n  spooldri: /x\n"
        ),
        &[],
    );
    crate::assert_warning(&loaded, &["proxy.spooldri", "spooldir"]);
}
