//! Writes a [`Config`] back as a registry:2-shaped `config.yml` (the effective configuration
//! after defaults and overrides), optionally with secrets replaced by `*****`. The output is
//! itself a valid config file: loading it gives the same `Config` (unmasked).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::duration::format_go_duration;
use crate::model::*;

/// What masked secrets are replaced with.
pub const MASK: &str = "*****";

/// Parameter names whose values are secrets wherever they appear (driver parameters, auth
/// extras, ...). File paths such as `http.tls.key` are not secrets and stay visible.
const SECRET_KEYS: &[&str] = &[
    "password",
    "secret",
    "secretkey",
    "accesskey",
    "accountkey",
    "accesskeysecret",
    "sessiontoken",
    "privatekey",
    "private_key",
    "apikey",
    "licensekey",
    "clientsecret",
    "token",
];

/// Header names whose values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

impl Config {
    /// The effective configuration as YAML, with secrets (`http.secret`, `proxy.password`,
    /// storage credentials, `Authorization` headers of notification endpoints and health
    /// checks, ...) replaced by `*****`. Safe to print or log.
    pub fn to_masked_yaml(&self) -> String {
        to_yaml_text(&self.to_yaml_value(true))
    }

    /// The effective configuration as YAML without masking: a complete registry:2-compatible
    /// `config.yml` that loads back to this same `Config`. Contains secrets.
    pub fn to_yaml(&self) -> String {
        to_yaml_text(&self.to_yaml_value(false))
    }

    /// The effective configuration as a YAML tree in registry:2's key layout.
    pub fn to_yaml_value(&self, mask: bool) -> Value {
        let e = Emitter { mask };
        let mut root = Mapping::new();
        put(&mut root, "version", self.version.as_str().into());
        put(&mut root, "log", e.log(&self.log));
        put(&mut root, "storage", e.storage(&self.storage));
        put(&mut root, "http", e.http(&self.http));
        put(&mut root, "health", e.health(&self.health));
        if let Some(auth) = &self.auth {
            let mut section = e.auth(auth);
            if let (Some(oidc), Value::Mapping(m)) = (&self.oidc, &mut section) {
                put(
                    m,
                    crate::oidc::KEY,
                    crate::oidc::emit(oidc, |s| e.secret(s)),
                );
            }
            put(&mut root, "auth", section);
        }
        if let Some(proxy) = &self.proxy {
            put(
                &mut root,
                "proxy",
                crate::proxy::emit(proxy, |pw| e.secret(pw)),
            );
        }
        if let Some(n) = &self.notifications {
            put(&mut root, "notifications", e.notifications(n));
        }
        put(
            &mut root,
            crate::limits::SECTION,
            crate::limits::emit(&self.limits),
        );
        if let Some(cluster) = crate::cluster::emit(&self.cluster) {
            put(&mut root, crate::cluster::SECTION, cluster);
        }
        if let Some(ui) = crate::ui::emit(&self.ui) {
            put(&mut root, crate::ui::SECTION, ui);
        }
        if let Some(scan) = crate::scan::emit(&self.scan) {
            put(&mut root, crate::scan::SECTION, scan);
        }
        if let Some(sync) = crate::sync::emit(&self.sync) {
            put(&mut root, crate::sync::SECTION, sync);
        }
        Value::Mapping(root)
    }
}

fn to_yaml_text(value: &Value) -> String {
    // Serializing a tree of plain values cannot fail.
    serde_yaml::to_string(value).unwrap_or_default()
}

fn put(map: &mut Mapping, key: &str, value: Value) {
    map.insert(Value::String(key.to_owned()), value);
}

fn opt(map: &mut Mapping, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        put(map, key, v.into());
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut m = Mapping::new();
    put(&mut m, key, value);
    Value::Mapping(m)
}

pub(crate) fn duration(d: Duration) -> Value {
    Value::String(format_go_duration(d))
}

fn path(p: &Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

fn strings(items: &[String]) -> Value {
    Value::Sequence(items.iter().map(|s| Value::String(s.clone())).collect())
}

/// Builds the sections, masking when asked.
struct Emitter {
    mask: bool,
}

impl Emitter {
    fn secret(&self, value: &str) -> Value {
        if self.mask && !value.is_empty() {
            MASK.into()
        } else {
            value.into()
        }
    }

    /// Masks secret-named keys anywhere inside free-form parameters.
    fn params(&self, params: &BTreeMap<String, Value>) -> Value {
        Value::Mapping(
            params
                .iter()
                .map(|(k, v)| (Value::String(k.clone()), self.masked(k, v)))
                .collect(),
        )
    }

    fn masked(&self, key: &str, value: &Value) -> Value {
        if self.mask && SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) && !value.is_null()
        {
            return MASK.into();
        }
        match value {
            Value::Mapping(m) => Value::Mapping(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.masked(&crate::keys::key_text(k), v)))
                    .collect(),
            ),
            Value::Sequence(items) => {
                Value::Sequence(items.iter().map(|v| self.masked("", v)).collect())
            }
            other => other.clone(),
        }
    }

    fn headers(&self, headers: &BTreeMap<String, Vec<String>>, secret_values: bool) -> Value {
        let mut m = Mapping::new();
        for (name, values) in headers {
            let hide = secret_values
                && self.mask
                && SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str());
            let values = if hide {
                values.iter().map(|_| Value::from(MASK)).collect()
            } else {
                strings(values)
            };
            put(&mut m, name, values);
        }
        Value::Mapping(m)
    }

    fn log(&self, log: &LogConfig) -> Value {
        let mut m = Mapping::new();
        let level = match log.level {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        };
        let formatter = match log.formatter {
            LogFormatter::Text => "text",
            LogFormatter::Json => "json",
            LogFormatter::Logstash => "logstash",
        };
        put(&mut m, "level", level.into());
        put(&mut m, "formatter", formatter.into());
        if !log.fields.is_empty() {
            put(&mut m, "fields", self.params(&log.fields));
        }
        put(
            &mut m,
            "accesslog",
            single("disabled", log.accesslog_disabled.into()),
        );
        Value::Mapping(m)
    }

    fn storage(&self, s: &StorageConfig) -> Value {
        let mut m = Mapping::new();
        let driver = match &s.driver {
            StorageDriverConfig::Filesystem {
                rootdirectory,
                maxthreads,
                fsync,
            } => {
                let mut p = Mapping::new();
                put(&mut p, "rootdirectory", path(rootdirectory));
                put(&mut p, "maxthreads", (*maxthreads).into());
                put(&mut p, "fsync", (*fsync).into());
                Value::Mapping(p)
            }
            StorageDriverConfig::InMemory => Value::Null,
            StorageDriverConfig::S3 { params, .. } | StorageDriverConfig::Other { params, .. } => {
                self.params(params)
            }
        };
        put(&mut m, s.driver.name(), driver);
        put(&mut m, "delete", single("enabled", s.delete_enabled.into()));
        put(
            &mut m,
            "redirect",
            single("disable", s.redirect_disabled.into()),
        );
        if s.cache.blobdescriptor.is_some() || s.cache.blobdescriptorsize.is_some() {
            let mut c = Mapping::new();
            opt(&mut c, "blobdescriptor", s.cache.blobdescriptor.as_deref());
            if let Some(size) = s.cache.blobdescriptorsize {
                put(&mut c, "blobdescriptorsize", size.into());
            }
            put(&mut m, "cache", Value::Mapping(c));
        }
        let up = &s.maintenance.uploadpurging;
        let mut purging = Mapping::new();
        put(&mut purging, "enabled", up.enabled.into());
        put(&mut purging, "age", duration(up.age));
        put(&mut purging, "interval", duration(up.interval));
        put(&mut purging, "dryrun", up.dryrun.into());
        let mut maintenance = Mapping::new();
        put(&mut maintenance, "uploadpurging", Value::Mapping(purging));
        put(
            &mut maintenance,
            "readonly",
            single("enabled", s.maintenance.readonly_enabled.into()),
        );
        let gc = &s.maintenance.gc;
        let mut online = Mapping::new();
        put(&mut online, "enabled", gc.enabled.into());
        put(&mut online, "interval", duration(gc.interval));
        put(&mut online, "delay", duration(gc.delay));
        put(&mut online, "dryrun", gc.dryrun.into());
        put(&mut maintenance, "gc", Value::Mapping(online));
        let dw = &s.maintenance.diskwatermark;
        let mut watermark = Mapping::new();
        put(&mut watermark, "enabled", dw.enabled.into());
        put(&mut watermark, "warn", u64::from(dw.warn).into());
        put(&mut watermark, "refuse", u64::from(dw.refuse).into());
        put(&mut watermark, "interval", duration(dw.interval));
        put(&mut maintenance, "diskwatermark", Value::Mapping(watermark));
        let retention = crate::retention::emit(&s.maintenance.retention);
        put(&mut maintenance, "retention", retention);
        put(&mut m, "maintenance", Value::Mapping(maintenance));
        Value::Mapping(m)
    }

    fn http(&self, h: &HttpConfig) -> Value {
        let mut m = Mapping::new();
        put(&mut m, "addr", h.addr.as_str().into());
        put(&mut m, "net", h.net.as_str().into());
        if !h.prefix.is_empty() {
            put(&mut m, "prefix", h.prefix.as_str().into());
        }
        opt(&mut m, "host", h.host.as_deref());
        if let Some(secret) = &h.secret {
            put(&mut m, "secret", self.secret(secret));
        }
        put(&mut m, "relativeurls", h.relativeurls.into());
        if let Some(d) = h.draintimeout {
            put(&mut m, "draintimeout", duration(d));
        }
        put(&mut m, "headers", self.headers(&h.headers, false));
        if let Some(tls) = &h.tls {
            let mut t = Mapping::new();
            if let Some(c) = &tls.certificate {
                put(&mut t, "certificate", path(c));
            }
            if let Some(k) = &tls.key {
                put(&mut t, "key", path(k));
            }
            if !tls.clientcas.is_empty() {
                put(
                    &mut t,
                    "clientcas",
                    Value::Sequence(tls.clientcas.iter().map(|p| path(p)).collect()),
                );
            }
            opt(&mut t, "minimumtls", tls.minimumtls.as_deref());
            if !tls.ciphersuites.is_empty() {
                put(&mut t, "ciphersuites", strings(&tls.ciphersuites));
            }
            if let Some(le) = &tls.letsencrypt {
                put(&mut t, "letsencrypt", self.masked("letsencrypt", le));
            }
            put(&mut m, "tls", Value::Mapping(t));
        }
        if let Some(debug) = &h.debug {
            let mut d = Mapping::new();
            put(&mut d, "addr", debug.addr.as_str().into());
            let mut p = Mapping::new();
            put(&mut p, "enabled", debug.prometheus.enabled.into());
            put(&mut p, "path", debug.prometheus.path.as_str().into());
            put(&mut d, "prometheus", Value::Mapping(p));
            put(&mut m, "debug", Value::Mapping(d));
        }
        put(&mut m, "http2", single("disabled", h.http2_disabled.into()));
        Value::Mapping(m)
    }

    fn health(&self, h: &HealthConfig) -> Value {
        let mut m = Mapping::new();
        let mut sd = Mapping::new();
        put(&mut sd, "enabled", h.storagedriver.enabled.into());
        put(&mut sd, "interval", duration(h.storagedriver.interval));
        put(&mut sd, "threshold", h.storagedriver.threshold.into());
        put(&mut m, "storagedriver", Value::Mapping(sd));
        if !h.file.is_empty() {
            let items = h.file.iter().map(|c| {
                let mut i = Mapping::new();
                put(&mut i, "file", path(&c.file));
                put(&mut i, "interval", duration(c.interval));
                put(&mut i, "threshold", c.threshold.into());
                Value::Mapping(i)
            });
            put(&mut m, "file", Value::Sequence(items.collect()));
        }
        if !h.http.is_empty() {
            let items = h.http.iter().map(|c| {
                let mut i = Mapping::new();
                put(&mut i, "uri", c.uri.as_str().into());
                if !c.headers.is_empty() {
                    put(&mut i, "headers", self.headers(&c.headers, true));
                }
                put(&mut i, "statuscode", c.statuscode.into());
                if let Some(t) = c.timeout {
                    put(&mut i, "timeout", duration(t));
                }
                put(&mut i, "interval", duration(c.interval));
                put(&mut i, "threshold", c.threshold.into());
                Value::Mapping(i)
            });
            put(&mut m, "http", Value::Sequence(items.collect()));
        }
        if !h.tcp.is_empty() {
            let items = h.tcp.iter().map(|c| {
                let mut i = Mapping::new();
                put(&mut i, "addr", c.addr.as_str().into());
                if let Some(t) = c.timeout {
                    put(&mut i, "timeout", duration(t));
                }
                put(&mut i, "interval", duration(c.interval));
                put(&mut i, "threshold", c.threshold.into());
                Value::Mapping(i)
            });
            put(&mut m, "tcp", Value::Sequence(items.collect()));
        }
        Value::Mapping(m)
    }

    fn auth(&self, auth: &AuthConfig) -> Value {
        let (mut p, extra) = match auth {
            AuthConfig::Htpasswd {
                realm,
                path: file,
                extra,
            } => {
                let mut p = Mapping::new();
                put(&mut p, "realm", realm.as_str().into());
                put(&mut p, "path", path(file));
                (p, extra)
            }
            AuthConfig::Token {
                realm,
                service,
                issuer,
                rootcertbundle,
                jwks,
                autoredirect,
                extra,
            } => {
                let mut p = Mapping::new();
                put(&mut p, "realm", realm.as_str().into());
                put(&mut p, "service", service.as_str().into());
                put(&mut p, "issuer", issuer.as_str().into());
                if let Some(b) = rootcertbundle {
                    put(&mut p, "rootcertbundle", path(b));
                }
                if let Some(j) = jwks {
                    put(&mut p, "jwks", path(j));
                }
                put(&mut p, "autoredirect", (*autoredirect).into());
                (p, extra)
            }
            AuthConfig::Silly {
                realm,
                service,
                extra,
            } => {
                let mut p = Mapping::new();
                put(&mut p, "realm", realm.as_str().into());
                put(&mut p, "service", service.as_str().into());
                (p, extra)
            }
        };
        for (k, v) in extra {
            put(&mut p, k, self.masked(k, v));
        }
        single(auth.name(), Value::Mapping(p))
    }

    fn notifications(&self, n: &NotificationsConfig) -> Value {
        let mut m = Mapping::new();
        put(
            &mut m,
            "events",
            single("includereferences", n.events.includereferences.into()),
        );
        let endpoints = n.endpoints.iter().map(|ep| {
            let mut i = Mapping::new();
            put(&mut i, "name", ep.name.as_str().into());
            put(&mut i, "disabled", ep.disabled.into());
            put(&mut i, "url", ep.url.as_str().into());
            put(&mut i, "headers", self.headers(&ep.headers, true));
            put(&mut i, "timeout", duration(ep.timeout));
            put(&mut i, "threshold", ep.threshold.into());
            put(&mut i, "backoff", duration(ep.backoff));
            if !ep.ignoredmediatypes.is_empty() {
                put(&mut i, "ignoredmediatypes", strings(&ep.ignoredmediatypes));
            }
            let mut ignore = Mapping::new();
            put(&mut ignore, "mediatypes", strings(&ep.ignore.mediatypes));
            put(&mut ignore, "actions", strings(&ep.ignore.actions));
            put(&mut i, "ignore", Value::Mapping(ignore));
            Value::Mapping(i)
        });
        put(&mut m, "endpoints", Value::Sequence(endpoints.collect()));
        Value::Mapping(m)
    }
}
