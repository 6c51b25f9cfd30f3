//! `proxy.cache` and `proxy.upstreams[].cache` (Berth extensions): how much the pull-through
//! cache may hold and how long an image that nobody pulls stays (docs/mirror.md, "Cache size
//! and expiry").
//!
//! ```yaml
//! proxy:
//!   cache:
//!     maxsize: 50GiB    # all cached images together; least recently pulled go first
//!     maxage: 30d       # images not pulled for this long go (upstreams mode; registry:2 mode uses proxy.ttl)
//!     interval: 10m     # how often the expiry and eviction pass runs
//!   upstreams:
//!     - host: docker.io
//!       url: https://registry-1.docker.io
//!       cache: {maxsize: 20GiB, maxage: 7d}   # this upstream's own limits, on top of the above
//! ```
//!
//! Sizes are bytes (`1048576`) or a number with a unit: `KB`, `MB`, `GB`, `TB` (powers of
//! 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), case-insensitive. Ages are Go
//! durations or whole days (`7d`, `1d12h`), like retention's.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::error::ConfigError;
use crate::retention::{format_age, parse_age};
use crate::values::{get, Cx};

/// `proxy.cache`: limits on everything the pull-through cache holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCacheConfig {
    /// `maxsize`: bytes all cached images may use together; least recently pulled images are
    /// evicted beyond it. `None`: no limit.
    pub maxsize: Option<u64>,
    /// `maxage`: images not pulled for longer than this are evicted (many-upstreams mode; in
    /// registry:2 mode `proxy.ttl` says it). `None`: never.
    pub maxage: Option<Duration>,
    /// `interval` between expiry and eviction passes; [`ProxyCacheConfig::DEFAULT_INTERVAL`] when
    /// unset.
    pub interval: Option<Duration>,
}

/// `proxy.upstreams[].cache`: one upstream's own limits, applied on top of `proxy.cache`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamCacheConfig {
    /// `maxsize`: bytes this upstream's cached images may use.
    pub maxsize: Option<u64>,
    /// `maxage`: this upstream's images not pulled for longer than this are evicted
    /// (replaces `proxy.cache.maxage` for it).
    pub maxage: Option<Duration>,
}

impl ProxyCacheConfig {
    /// Time between passes when `interval` is unset.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10 * 60);

    /// The time between passes.
    pub fn pass_interval(&self) -> Duration {
        self.interval.unwrap_or(Self::DEFAULT_INTERVAL)
    }
}

/// Parses a size: plain bytes or a number (fractions allowed) with a decimal or binary unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let bad = || format!("invalid size {text:?}");
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000 * 1000,
        "gb" | "g" => 1000 * 1000 * 1000,
        "tb" | "t" => 1000 * 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    match number.split_once('.') {
        None => number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .ok_or_else(bad),
        Some((whole, fraction)) => {
            let whole: u64 = whole.parse().map_err(|_| bad())?;
            // Exact decimal arithmetic: `1.5GiB` is 1.5 * 2^30 bytes, rounded down.
            let digits = u32::try_from(fraction.len()).map_err(|_| bad())?;
            let scale = 10u128.checked_pow(digits).ok_or_else(bad)?;
            let fraction: u128 = fraction.parse().map_err(|_| bad())?;
            let bytes =
                u128::from(whole) * u128::from(factor) + fraction * u128::from(factor) / scale;
            u64::try_from(bytes).map_err(|_| bad())
        }
    }
}

/// Formats a size with the largest binary unit that divides it, so [`parse_size`] reads it
/// back to the same value (`52428800` → `50MiB`).
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes > 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn opt_size(cx: &Cx<'_>, parent: Option<&Mapping>, path: &str) -> Result<Option<u64>, ConfigError> {
    let Some(v) = get(parent, "maxsize") else {
        return Ok(None);
    };
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_size(s).ok(),
        _ => None,
    };
    match parsed {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => Err(cx.invalid(
            &format!("{path}.maxsize"),
            v,
            "a size greater than zero: bytes, or a number with KB, MB, GB, TB, KiB, MiB, GiB or TiB (\"50GiB\")",
        )),
    }
}

fn opt_age(
    cx: &Cx<'_>,
    parent: Option<&Mapping>,
    key: &str,
    path: &str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = get(parent, key) else {
        return Ok(None);
    };
    let parsed = match v {
        Value::String(s) => parse_age(s).ok(),
        _ => None,
    };
    match parsed {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(cx.invalid(
            &format!("{path}.{key}"),
            v,
            "a duration greater than zero, such as \"10m\", \"168h\" or \"30d\"",
        )),
    }
}

/// Reads `proxy.cache`.
pub(crate) fn extract(
    cx: &Cx<'_>,
    proxy: Option<&Mapping>,
) -> Result<ProxyCacheConfig, ConfigError> {
    let path = "proxy.cache";
    let cache = cx.section(proxy, "cache", "proxy")?;
    Ok(ProxyCacheConfig {
        maxsize: opt_size(cx, cache, path)?,
        maxage: opt_age(cx, cache, "maxage", path)?,
        interval: opt_age(cx, cache, "interval", path)?,
    })
}

/// Reads `cache` of one upstream entry at `path` (`proxy.upstreams[0]`).
pub(crate) fn extract_upstream(
    cx: &Cx<'_>,
    item: Option<&Mapping>,
    path: &str,
) -> Result<UpstreamCacheConfig, ConfigError> {
    let cache = cx.section(item, "cache", path)?;
    let path = format!("{path}.cache");
    Ok(UpstreamCacheConfig {
        maxsize: opt_size(cx, cache, &path)?,
        maxage: opt_age(cx, cache, "maxage", &path)?,
    })
}

fn put(m: &mut Mapping, key: &str, value: String) {
    m.insert(Value::String(key.to_owned()), Value::String(value));
}

/// `proxy.cache` in `config.yml` shape, or `None` when nothing is set.
pub(crate) fn emit(cache: &ProxyCacheConfig) -> Option<Value> {
    let mut m = Mapping::new();
    if let Some(size) = cache.maxsize {
        put(&mut m, "maxsize", format_size(size));
    }
    if let Some(age) = cache.maxage {
        put(&mut m, "maxage", format_age(age));
    }
    if let Some(interval) = cache.interval {
        put(&mut m, "interval", format_age(interval));
    }
    (!m.is_empty()).then_some(Value::Mapping(m))
}

/// `proxy.upstreams[].cache` in `config.yml` shape, or `None` when nothing is set.
pub(crate) fn emit_upstream(cache: &UpstreamCacheConfig) -> Option<Value> {
    emit(&ProxyCacheConfig {
        maxsize: cache.maxsize,
        maxage: cache.maxage,
        interval: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("50GiB"), Ok(50 << 30));
        assert_eq!(parse_size("50 gib"), Ok(50 << 30));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("300KiB"), Ok(300 * 1024));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("0.5KB"), Ok(500));
        for bad in [
            "",
            "GiB",
            "1.",
            ".5G",
            "12XB",
            "-1",
            "1e9",
            "99999999999TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_format_back_to_the_same_value() {
        for n in [1, 1000, 1024, 500 << 20, 50 << 30, 3 << 29, (1 << 40) + 1] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(50 << 30), "50GiB");
        assert_eq!(format_size(1536), "1536");
    }
}
