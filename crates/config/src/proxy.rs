//! The `proxy` section: registry:2's single-upstream pull-through cache (`remoteurl`,
//! `username`, `password`, `ttl`) and Berth's extension for many upstreams in one instance
//! (`upstreams`, `default`, `private`), read from the YAML tree and written back.
//!
//! ```yaml
//! proxy:
//!   upstreams:
//!     - host: docker.io                      # the registry host this upstream stands for
//!       url: https://registry-1.docker.io    # where to fetch from
//!       username: user                       # optional credentials (masked in output)
//!       password: secret
//!       ttl: 5m                              # how long a tag is trusted before a HEAD re-check
//!       proxy: http://127.0.0.1:3128         # optional outbound HTTP(S) proxy
//!       timeout: 5s                          # time allowed for the response headers
//!       allowprivateredirects: false         # follow redirects/token realms to private addresses
//!   default: docker.io                       # plain names (Docker's registry-mirrors) go here
//!   private: [team, ci]                      # name prefixes that stay local even with a default
//!   spooldir: /var/lib/registry              # where cold blobs are spooled while they download
//! ```

use std::path::PathBuf;
use std::time::Duration;

use berth_oci::RepoName;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::duration::{format_go_duration, go_duration_opt};
use crate::error::ConfigError;
use crate::proxy_cache::{ProxyCacheConfig, UpstreamCacheConfig};
use crate::values::Cx;

/// `proxy`: the pull-through cache, present when `proxy.remoteurl` or `proxy.upstreams` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// `remoteurl`: registry:2's mode, where the whole registry mirrors this one upstream
    /// (e.g. `https://registry-1.docker.io`) and refuses pushes.
    pub remoteurl: Option<String>,
    /// `username` for `remoteurl`.
    pub username: Option<String>,
    /// `password` for `remoteurl` (masked in output).
    pub password: Option<String>,
    /// `ttl` as written: in registry:2 mode, how long cached content stays without being
    /// pulled; see [`ProxyConfig::cache_ttl`].
    #[serde(with = "go_duration_opt")]
    pub ttl: Option<Duration>,
    /// `upstreams` (Berth extension): many upstreams in one instance, each standing for a
    /// registry host; cached repositories are stored as `<host>/<name>`.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// `default` (Berth extension): the host of the upstream that plain names (no `?ns=`, no
    /// host prefix) are pulled from; without it plain names are private repositories.
    #[serde(default)]
    pub default: Option<String>,
    /// `private` (Berth extension): repository name prefixes (whole path segments) that are
    /// private repositories even when a `default` upstream is set.
    #[serde(default)]
    pub private: Vec<String>,
    /// `cache` (Berth extension): size limit, expiry and pass interval of cached content.
    #[serde(default)]
    pub cache: ProxyCacheConfig,
    /// `spooldir` (Berth extension): the local directory cold blob downloads are spooled in
    /// (as unnamed files, gone with the process). Unset: the filesystem storage's
    /// `rootdirectory`, else the system temp directory. Checked at startup.
    #[serde(default)]
    pub spooldir: Option<PathBuf>,
}

/// One entry of `proxy.upstreams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamConfig {
    /// `host`: the registry host this upstream stands for (`docker.io`, `ghcr.io`): matched
    /// against containerd's `?ns=` and the first path segment, and the storage prefix.
    pub host: String,
    /// `url`: the base URL requests go to (`https://registry-1.docker.io`).
    pub url: String,
    /// `username` for the upstream's basic or token auth.
    pub username: Option<String>,
    /// `password` (masked in output).
    pub password: Option<String>,
    /// `ttl`: how long a cached tag is served before it is re-checked upstream with a HEAD;
    /// [`UpstreamConfig::DEFAULT_TTL`] when unset.
    #[serde(with = "go_duration_opt")]
    pub ttl: Option<Duration>,
    /// `proxy`: outbound HTTP(S) proxy URL for this upstream (else `HTTPS_PROXY`/`HTTP_PROXY`/
    /// `NO_PROXY` from the environment apply).
    pub proxy: Option<String>,
    /// `timeout`: how long to wait for the upstream's response headers (connecting included);
    /// [`UpstreamConfig::DEFAULT_TIMEOUT`] when unset.
    #[serde(with = "go_duration_opt")]
    pub timeout: Option<Duration>,
    /// `cache` (Berth extension): this upstream's own size limit and expiry.
    #[serde(default)]
    pub cache: UpstreamCacheConfig,
    /// `allowprivateredirects` (Berth extension), default false: follow this upstream's
    /// redirects and token realms to loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
    /// link-local (169.254/16, fe80::/10) and CGNAT addresses on other hosts. Without it they
    /// are refused unless the upstream's own `url` host is `localhost` or such an address (an
    /// in-house registry whose storage is in-house too).
    #[serde(default)]
    pub allowprivateredirects: bool,
}

impl UpstreamConfig {
    /// Tag re-check interval when `ttl` is unset.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
    /// Response-header timeout when `timeout` is unset.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The tag re-check interval.
    pub fn tag_ttl(&self) -> Duration {
        self.ttl.unwrap_or(Self::DEFAULT_TTL)
    }

    /// The response-header timeout.
    pub fn header_timeout(&self) -> Duration {
        self.timeout.unwrap_or(Self::DEFAULT_TIMEOUT)
    }
}

impl ProxyConfig {
    /// How long cached content lives: `ttl`, 168h when unset (registry:2's default), and
    /// `None` (never expires) when set to 0.
    pub fn cache_ttl(&self) -> Option<Duration> {
        match self.ttl {
            None => Some(Duration::from_secs(168 * 3600)),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        }
    }

    /// How long an image of `upstream` (an index into `upstreams`; ignored in registry:2
    /// mode) may go unpulled before it is evicted: `proxy.ttl` in registry:2 mode, else the
    /// upstream's `cache.maxage` or `proxy.cache.maxage`. `None`: never.
    pub fn expiry(&self, upstream: usize) -> Option<Duration> {
        if self.remoteurl.is_some() {
            return self.cache_ttl();
        }
        let own = self.upstreams.get(upstream).and_then(|u| u.cache.maxage);
        own.or(self.cache.maxage)
    }
}

/// Whether `host` can stand for an upstream: a valid repository path segment (lowercase
/// letters and digits joined by `.`, `_` or `-`), since it prefixes stored names and is matched
/// against the first segment of request paths.
fn valid_host(host: &str) -> bool {
    !host.contains('/') && host.parse::<RepoName>().is_ok()
}

fn http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// Reads the `proxy` section.
pub(crate) fn extract(
    cx: &Cx<'_>,
    root: Option<&Mapping>,
) -> Result<Option<ProxyConfig>, ConfigError> {
    let proxy = cx.section(root, "proxy", "")?;
    let remoteurl = cx.opt_string(proxy, "remoteurl", "proxy")?;
    let mut upstreams = Vec::new();
    for (path, item) in cx.items(proxy, "upstreams", "proxy")? {
        upstreams.push(upstream(cx, &path, item)?);
    }
    let default = cx.opt_string(proxy, "default", "proxy")?;
    let private = cx.strings(proxy, "private", "proxy")?;
    if remoteurl.is_none() && upstreams.is_empty() {
        if proxy.is_some_and(|p| !p.is_empty()) {
            cx.warn("proxy: no proxy.remoteurl set, so the pull-through cache is off (as in registry:2)".to_owned());
        }
        return Ok(None);
    }
    if let Some(url) = &remoteurl {
        if !http_url(url) {
            return Err(cx.invalid(
                "proxy.remoteurl",
                &Value::String(url.clone()),
                "an http:// or https:// URL",
            ));
        }
        if !upstreams.is_empty() {
            return Err(ConfigError::Proxy {
                origin: cx.origin("proxy"),
                message: "use either proxy.remoteurl (registry:2's single upstream) or proxy.upstreams, not both".to_owned(),
            });
        }
    }
    for (i, u) in upstreams.iter().enumerate() {
        if upstreams[..i].iter().any(|o| o.host == u.host) {
            return Err(ConfigError::Proxy {
                origin: cx.origin("proxy.upstreams"),
                message: format!(
                    "upstreams[{i}].host: {:?} is listed twice; each host needs exactly one upstream",
                    u.host
                ),
            });
        }
    }
    if let Some(d) = &default {
        if !upstreams.iter().any(|u| &u.host == d) {
            let hosts: Vec<&str> = upstreams.iter().map(|u| u.host.as_str()).collect();
            return Err(ConfigError::Proxy {
                origin: cx.origin("proxy.default"),
                message: format!(
                    "default: {d:?} is not the host of any entry in proxy.upstreams (hosts: {})",
                    hosts.join(", ")
                ),
            });
        }
    }
    let private = private
        .into_iter()
        .map(|p| p.trim_matches('/').to_owned())
        .collect();
    let spooldir = cx.opt_string(proxy, "spooldir", "proxy")?;
    if let Some(dir) = &spooldir {
        if !dir.starts_with('/') {
            return Err(cx.invalid(
                "proxy.spooldir",
                &Value::String(dir.clone()),
                "an absolute path of a writable local directory, such as /var/lib/registry",
            ));
        }
    }
    let cache = crate::proxy_cache::extract(cx, proxy)?;
    if remoteurl.is_some() && cache.maxage.is_some() {
        return Err(ConfigError::Proxy {
            origin: cx.origin("proxy.cache.maxage"),
            message: "cache.maxage is for proxy.upstreams; with proxy.remoteurl, proxy.ttl says how long unpulled content stays (as in registry:2)".to_owned(),
        });
    }
    Ok(Some(ProxyConfig {
        remoteurl,
        username: cx.opt_string(proxy, "username", "proxy")?,
        password: cx.opt_string(proxy, "password", "proxy")?,
        ttl: cx.opt_duration(proxy, "ttl", "proxy")?,
        upstreams,
        default,
        private,
        cache,
        spooldir: spooldir.map(PathBuf::from),
    }))
}

fn upstream(cx: &Cx<'_>, path: &str, item: &Mapping) -> Result<UpstreamConfig, ConfigError> {
    let item = Some(item);
    let host = cx
        .required(
            item,
            "host",
            path,
            "the registry host it stands for, e.g. docker.io",
        )?
        .to_ascii_lowercase();
    if !valid_host(&host) {
        return Err(cx.invalid(
            &format!("{path}.host"),
            &Value::String(host),
            "a registry host name usable as a repository path segment (lowercase letters, digits, '.', '-'; no port), e.g. docker.io",
        ));
    }
    let url = cx.required(
        item,
        "url",
        path,
        "where to fetch from, e.g. https://registry-1.docker.io",
    )?;
    if !http_url(&url) {
        return Err(cx.invalid(
            &format!("{path}.url"),
            &Value::String(url),
            "an http:// or https:// URL",
        ));
    }
    let proxy = cx.opt_string(item, "proxy", path)?;
    if let Some(p) = &proxy {
        if !http_url(p) {
            return Err(cx.invalid(
                &format!("{path}.proxy"),
                &Value::String(p.clone()),
                "an http:// or https:// proxy URL, e.g. http://127.0.0.1:3128",
            ));
        }
    }
    let timeout = cx.opt_duration(item, "timeout", path)?;
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(cx.invalid(
            &format!("{path}.timeout"),
            &Value::from(0),
            "a duration greater than zero, such as \"5s\"",
        ));
    }
    Ok(UpstreamConfig {
        host,
        url: url.trim_end_matches('/').to_owned(),
        username: cx.opt_string(item, "username", path)?,
        password: cx.opt_string(item, "password", path)?,
        ttl: cx.opt_duration(item, "ttl", path)?,
        proxy,
        timeout,
        cache: crate::proxy_cache::extract_upstream(cx, item, path)?,
        allowprivateredirects: cx.bool(item, "allowprivateredirects", path, false)?,
    })
}

/// Writes the section back in `config.yml` shape; `secret` masks passwords when asked to.
pub(crate) fn emit(proxy: &ProxyConfig, secret: impl Fn(&str) -> Value) -> Value {
    let mut m = Mapping::new();
    let put = |m: &mut Mapping, k: &str, v: Value| {
        m.insert(Value::String(k.to_owned()), v);
    };
    let dur = |d: Duration| Value::String(format_go_duration(d));
    if let Some(url) = &proxy.remoteurl {
        put(&mut m, "remoteurl", url.as_str().into());
    }
    if let Some(user) = &proxy.username {
        put(&mut m, "username", user.as_str().into());
    }
    if let Some(pw) = &proxy.password {
        put(&mut m, "password", secret(pw));
    }
    if let Some(ttl) = proxy.ttl {
        put(&mut m, "ttl", dur(ttl));
    }
    if !proxy.upstreams.is_empty() {
        let items = proxy.upstreams.iter().map(|u| {
            let mut i = Mapping::new();
            put(&mut i, "host", u.host.as_str().into());
            put(&mut i, "url", u.url.as_str().into());
            if let Some(user) = &u.username {
                put(&mut i, "username", user.as_str().into());
            }
            if let Some(pw) = &u.password {
                put(&mut i, "password", secret(pw));
            }
            if let Some(ttl) = u.ttl {
                put(&mut i, "ttl", dur(ttl));
            }
            if let Some(p) = &u.proxy {
                put(&mut i, "proxy", p.as_str().into());
            }
            if let Some(t) = u.timeout {
                put(&mut i, "timeout", dur(t));
            }
            if let Some(c) = crate::proxy_cache::emit_upstream(&u.cache) {
                put(&mut i, "cache", c);
            }
            if u.allowprivateredirects {
                put(&mut i, "allowprivateredirects", Value::Bool(true));
            }
            Value::Mapping(i)
        });
        put(&mut m, "upstreams", Value::Sequence(items.collect()));
    }
    if let Some(d) = &proxy.default {
        put(&mut m, "default", d.as_str().into());
    }
    if !proxy.private.is_empty() {
        let items = proxy.private.iter().map(|p| Value::String(p.clone()));
        put(&mut m, "private", Value::Sequence(items.collect()));
    }
    if let Some(c) = crate::proxy_cache::emit(&proxy.cache) {
        put(&mut m, "cache", c);
    }
    if let Some(dir) = &proxy.spooldir {
        put(
            &mut m,
            "spooldir",
            dir.to_string_lossy().into_owned().into(),
        );
    }
    Value::Mapping(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_must_be_path_segments() {
        for ok in [
            "docker.io",
            "ghcr.io",
            "registry.k8s.io",
            "quay.io",
            "my-reg.lan",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "localhost:5000", "a/b", "Docker.io", ".io", "a..b"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
