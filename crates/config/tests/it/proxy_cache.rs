//! `proxy.cache` and `proxy.upstreams[].cache`: sizes and ages parsed, set from
//! `REGISTRY_PROXY_CACHE_*`, written back, and mistakes named; `proxy.ttl` is the expiry in
//! registry:2 mode.

use std::time::Duration;

use crate::{err, ok, MINIMAL};

const CACHED: &str = "\
proxy:
  cache: {maxsize: 50GiB, maxage: 30d, interval: 5m}
  upstreams:
    - host: docker.io
      url: https://registry-1.docker.io
      cache: {maxsize: 500MiB, maxage: 7d}
    - host: ghcr.io
      url: https://ghcr.io
";

#[test]
fn limits_parse_and_round_trip() {
    let loaded = ok(&format!("{MINIMAL}{CACHED}"), &[]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let proxy = loaded.config.proxy.clone().expect("proxy");
    assert_eq!(proxy.cache.maxsize, Some(50 << 30));
    assert_eq!(proxy.cache.pass_interval(), Duration::from_secs(300));
    assert_eq!(proxy.upstreams[0].cache.maxsize, Some(500 << 20));
    assert_eq!(proxy.expiry(0), Some(Duration::from_secs(7 * 86400)));
    assert_eq!(proxy.expiry(1), Some(Duration::from_secs(30 * 86400)));
    let text = loaded.config.to_yaml();
    assert!(text.contains("maxsize: 50GiB"), "{text}");
    let again = berth_config::load_str(&text, "effective.yml", &[]).expect("loads");
    assert_eq!(again.config, loaded.config, "{text}");
}

#[test]
fn limits_come_from_the_environment() {
    let loaded = ok(
        &format!("{MINIMAL}proxy:\n  remoteurl: https://registry-1.docker.io\n"),
        &[
            ("REGISTRY_PROXY_CACHE_MAXSIZE", "1048576"),
            ("REGISTRY_PROXY_CACHE_INTERVAL", "1m"),
            ("REGISTRY_PROXY_TTL", "1s"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let proxy = loaded.config.proxy.expect("proxy");
    assert_eq!(proxy.cache.maxsize, Some(1 << 20));
    assert_eq!(proxy.cache.interval, Some(Duration::from_secs(60)));
    assert_eq!(proxy.expiry(0), Some(Duration::from_secs(1)));
}

#[test]
fn registry2_ttl_defaults_to_a_week_and_zero_never_expires() {
    let week = ok(
        &format!("{MINIMAL}proxy: {{remoteurl: https://registry-1.docker.io}}\n"),
        &[],
    );
    let proxy = week.config.proxy.expect("proxy");
    assert_eq!(proxy.expiry(0), Some(Duration::from_secs(168 * 3600)));
    let never = ok(
        &format!("{MINIMAL}proxy: {{remoteurl: https://registry-1.docker.io, ttl: 0s}}\n"),
        &[],
    );
    assert_eq!(never.config.proxy.expect("proxy").expiry(0), None);
}

#[test]
fn mistakes_are_named() {
    let e = err(
        &format!("{MINIMAL}proxy:\n  remoteurl: https://x.io\n  cache: {{maxsize: 12XB}}\n"),
        &[],
    );
    assert!(e.contains("proxy.cache.maxsize"), "{e}");
    let e = err(
        &format!("{MINIMAL}proxy:\n  remoteurl: https://x.io\n  cache: {{maxage: 7d}}\n"),
        &[],
    );
    assert!(e.contains("proxy.ttl"), "{e}");
    let e = err(
        &format!("{MINIMAL}proxy:\n  upstreams: [{{host: a.io, url: https://a.io, cache: {{maxage: 0s}}}}]\n"),
        &[],
    );
    assert!(e.contains("proxy.upstreams[0].cache.maxage"), "{e}");
}
