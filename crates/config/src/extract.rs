//! Builds the typed [`Config`] from the YAML tree (after overrides), applying registry:2's
//! defaults and refusing values registry:2 would refuse, with errors naming the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Mapping;

use crate::error::ConfigError;
use crate::keys::{closest, join, key_text, KNOWN_DRIVERS, STORAGE_SETTINGS};
use crate::model::*;
use crate::values::{get, params, scalar_text, Cx};

/// The only configuration version registry:2 understands.
pub const SUPPORTED_VERSION: &str = "0.1";

/// registry:2's default for every health check interval.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Builds the whole configuration.
pub(crate) fn config(cx: &Cx<'_>, root: &Mapping) -> Result<Config, ConfigError> {
    let root = Some(root);
    let version = match get(root, "version") {
        None => {
            return Err(ConfigError::MissingVersion {
                origin: cx.source.to_owned(),
            })
        }
        Some(v) => scalar_text(v).ok_or_else(|| cx.invalid("version", v, "the string 0.1"))?,
    };
    if version != SUPPORTED_VERSION {
        return Err(ConfigError::UnsupportedVersion {
            origin: cx.origin("version"),
            version,
        });
    }
    Ok(Config {
        version,
        log: log(cx, root)?,
        storage: storage(cx, root)?,
        http: http(cx, root)?,
        health: health(cx, root)?,
        auth: auth(cx, root)?,
        oidc: oidc(cx, root)?,
        proxy: crate::proxy::extract(cx, root)?,
        notifications: notifications(cx, root)?,
        limits: crate::limits::extract(cx, root)?,
        cluster: crate::cluster::extract(cx, root)?,
        ui: crate::ui::extract(cx, root)?,
        scan: crate::scan::extract(cx, root)?,
        sync: crate::sync::extract(cx, root)?,
    })
}

fn log(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<LogConfig, ConfigError> {
    let log = cx.section(root, "log", "")?;
    let level = match (get(log, "level"), get(root, "loglevel")) {
        (Some(_), _) => level(cx, log, "log")?,
        (None, Some(_)) => level(cx, root, "")?,
        (None, None) => LogLevel::Info,
    };
    if get(root, "loglevel").is_some() {
        cx.warn(
            "config key \"loglevel\" is deprecated (as in registry:2); use \"log.level\" instead"
                .to_owned(),
        );
    }
    let formatter = match cx.opt_string(log, "formatter", "log")? {
        None => LogFormatter::Text,
        Some(f) => match f.to_ascii_lowercase().as_str() {
            "text" => LogFormatter::Text,
            "json" => LogFormatter::Json,
            "logstash" => LogFormatter::Logstash,
            _ => return Err(cx.invalid("log.formatter", &f.into(), "one of text, json, logstash")),
        },
    };
    let fields = params(cx.section(log, "fields", "log")?);
    let accesslog = cx.section(log, "accesslog", "log")?;
    let accesslog_disabled = cx.bool(accesslog, "disabled", "log.accesslog", false)?;
    Ok(LogConfig {
        level,
        formatter,
        fields,
        accesslog_disabled,
    })
}

/// Reads `level` (under `log`) or `loglevel` (top level) into a [`LogLevel`].
fn level(cx: &Cx<'_>, parent: Option<&Mapping>, path: &str) -> Result<LogLevel, ConfigError> {
    let key = if path.is_empty() { "loglevel" } else { "level" };
    let text = cx.string(parent, key, path, "info")?;
    match text.to_ascii_lowercase().as_str() {
        "error" | "panic" | "fatal" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" | "trace" => Ok(LogLevel::Debug),
        _ => Err(cx.invalid(
            &join(path, key),
            &text.into(),
            "one of error, warn, info, debug",
        )),
    }
}

fn storage(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<StorageConfig, ConfigError> {
    let Some(storage) = cx.section(root, "storage", "")? else {
        return Err(ConfigError::NoStorage {
            origin: cx.source.to_owned(),
        });
    };
    let drivers: Vec<String> = storage
        .keys()
        .map(key_text)
        .filter(|k| !STORAGE_SETTINGS.contains(&k.as_str()))
        .collect();
    let name = match drivers.as_slice() {
        [] => {
            return Err(ConfigError::NoStorage {
                origin: cx.origin("storage"),
            })
        }
        [one] => one.clone(),
        many => {
            let mut hint = String::new();
            for d in many {
                if let Some(var) = cx.env_var_below(&format!("storage.{d}")) {
                    hint.push_str(&format!("; {d} was added by environment variable {var}"));
                }
            }
            if !hint.is_empty() {
                hint.push_str(" (to switch drivers from the environment, also set REGISTRY_STORAGE=<driver>: it replaces the whole storage section before the other REGISTRY_STORAGE_* variables apply)");
            }
            return Err(ConfigError::MultipleStorageDrivers {
                origin: cx.source.to_owned(),
                drivers: many.to_vec(),
                hint,
            });
        }
    };
    let driver = driver(cx, storage, &name)?;

    let delete = cx.section(Some(storage), "delete", "storage")?;
    let redirect = cx.section(Some(storage), "redirect", "storage")?;
    let cache = cx.section(Some(storage), "cache", "storage")?;
    let maintenance = cx.section(Some(storage), "maintenance", "storage")?;
    let purging = cx.section(maintenance, "uploadpurging", "storage.maintenance")?;
    let readonly = cx.section(maintenance, "readonly", "storage.maintenance")?;
    let defaults = UploadPurgingConfig::default();
    let p = "storage.maintenance.uploadpurging";
    let uploadpurging = UploadPurgingConfig {
        enabled: cx.bool(purging, "enabled", p, defaults.enabled)?,
        age: cx.duration(purging, "age", p, defaults.age)?,
        interval: cx.duration(purging, "interval", p, defaults.interval)?,
        dryrun: cx.bool(purging, "dryrun", p, defaults.dryrun)?,
    };
    let gc_section = cx.section(maintenance, "gc", "storage.maintenance")?;
    let gc_defaults = OnlineGcConfig::default();
    let p = "storage.maintenance.gc";
    let gc = OnlineGcConfig {
        enabled: cx.bool(gc_section, "enabled", p, gc_defaults.enabled)?,
        interval: cx.duration(gc_section, "interval", p, gc_defaults.interval)?,
        delay: match cx.opt_duration(gc_section, "delay", p)? {
            // Zero elsewhere means "the default" (registry:2); here it would silently mean an
            // hour, or if honoured let a collection delete what a push is about to reference.
            Some(d) if d.is_zero() => {
                return Err(cx.invalid(
                    &format!("{p}.delay"),
                    &serde_yaml::Value::from("0s"),
                    "a duration longer than any request takes (default 1h)",
                ))
            }
            Some(d) => d,
            None => gc_defaults.delay,
        },
        dryrun: cx.bool(gc_section, "dryrun", p, gc_defaults.dryrun)?,
    };
    let diskwatermark = disk_watermark(cx, maintenance)?;
    let retention = crate::retention::extract(cx, maintenance)?;

    let mut blobdescriptor = cx.opt_string(cache, "blobdescriptor", "storage.cache")?;
    if blobdescriptor.is_none() {
        blobdescriptor = cx.opt_string(cache, "layerinfo", "storage.cache")?;
        if blobdescriptor.is_some() {
            cx.warn("config key \"storage.cache.layerinfo\" is deprecated (as in registry:2); use \"storage.cache.blobdescriptor\"".to_owned());
        }
    }
    match blobdescriptor.as_deref() {
        None | Some("inmemory") => {}
        Some("redis") => cx.warn(
            "config key \"storage.cache.blobdescriptor\" value \"redis\" is not supported by Berth yet and is ignored".to_owned(),
        ),
        Some(other) => cx.warn(format!(
            "storage.cache.blobdescriptor: unknown cache type {other:?} (registry:2 knows inmemory and redis); caching is off"
        )),
    }

    Ok(StorageConfig {
        driver,
        delete_enabled: cx.bool(delete, "enabled", "storage.delete", false)?,
        redirect_disabled: cx.bool(redirect, "disable", "storage.redirect", false)?,
        cache: CacheConfig {
            blobdescriptor,
            blobdescriptorsize: cx.opt_uint(
                cache,
                "blobdescriptorsize",
                "storage.cache",
                u64::MAX,
            )?,
        },
        maintenance: MaintenanceConfig {
            uploadpurging,
            readonly_enabled: cx.bool(
                readonly,
                "enabled",
                "storage.maintenance.readonly",
                false,
            )?,
            gc,
            diskwatermark,
            retention,
        },
    })
}

/// The driver named `name` with its parameters.
fn driver(cx: &Cx<'_>, storage: &Mapping, name: &str) -> Result<StorageDriverConfig, ConfigError> {
    let path = format!("storage.{name}");
    let p = cx
        .section(Some(storage), name, "storage")
        .map_err(|e| match e {
            ConfigError::InvalidValue {
                origin, key, value, ..
            } => ConfigError::InvalidValue {
                origin,
                key,
                value,
                expected: format!("a mapping of {name} driver parameters (or nothing)"),
            },
            other => other,
        })?;
    Ok(match name {
        "filesystem" => {
            let rootdirectory = cx.string(p, "rootdirectory", &path, "/var/lib/registry")?;
            let mut maxthreads = cx.u32(p, "maxthreads", &path, 100)?;
            if maxthreads < 25 {
                cx.warn(format!("storage.filesystem.maxthreads: {maxthreads} is below the minimum of 25; using 25 (as registry:2 does)"));
                maxthreads = 25;
            }
            StorageDriverConfig::Filesystem {
                rootdirectory: PathBuf::from(rootdirectory),
                maxthreads,
                fsync: cx.bool(p, "fsync", &path, true)?,
            }
        }
        "inmemory" => StorageDriverConfig::InMemory,
        "s3" => crate::s3::extract(cx, p)?,
        other => {
            if !KNOWN_DRIVERS.contains(&other) {
                let mut text = format!(
                    "storage: unknown storage driver {other:?} (registry:2 knows {})",
                    KNOWN_DRIVERS.join(", ")
                );
                if let Some(best) = closest(KNOWN_DRIVERS.iter().copied(), other) {
                    text.push_str(&format!("; did you mean {best:?}?"));
                }
                cx.warn(text);
            }
            StorageDriverConfig::Other {
                name: other.to_owned(),
                params: params(p),
            }
        }
    })
}

fn http(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<HttpConfig, ConfigError> {
    let http = cx.section(root, "http", "")?;
    let net = cx.string(http, "net", "http", "tcp")?;
    if !matches!(net.as_str(), "tcp" | "tcp4" | "tcp6" | "unix") {
        return Err(cx.invalid("http.net", &net.into(), "tcp or unix"));
    }
    let addr = cx.string(http, "addr", "http", ":5000")?;
    if net != "unix" && !valid_tcp_addr(&addr) {
        return Err(cx.invalid(
            "http.addr",
            &addr.into(),
            "HOST:PORT such as \":5000\" or \"127.0.0.1:5000\"",
        ));
    }
    let headers = match get(http, "headers") {
        None if http.is_none_or(|h| !h.contains_key("headers")) => default_headers(),
        _ => cx.headers(http, "headers", "http")?,
    };
    let debug = cx.section(http, "debug", "http")?;
    let prometheus = cx.section(debug, "prometheus", "http.debug")?;
    let debug = match cx.opt_string(debug, "addr", "http.debug")? {
        None => None,
        Some(addr) => Some(DebugConfig {
            addr,
            prometheus: PrometheusConfig {
                enabled: cx.bool(prometheus, "enabled", "http.debug.prometheus", false)?,
                path: cx.string(prometheus, "path", "http.debug.prometheus", "/metrics")?,
            },
        }),
    };
    let http2 = cx.section(http, "http2", "http")?;
    Ok(HttpConfig {
        addr,
        net,
        prefix: cx.string(http, "prefix", "http", "")?,
        host: cx.opt_string(http, "host", "http")?,
        secret: cx.opt_string(http, "secret", "http")?,
        relativeurls: cx.bool(http, "relativeurls", "http", false)?,
        draintimeout: cx.opt_duration(http, "draintimeout", "http")?,
        headers,
        tls: tls(cx, http)?,
        debug,
        http2_disabled: cx.bool(http2, "disabled", "http.http2", false)?,
    })
}

/// registry:2's stock config sends `X-Content-Type-Options: nosniff`; so does Berth by default.
fn default_headers() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(
        "X-Content-Type-Options".to_owned(),
        vec!["nosniff".to_owned()],
    )])
}

/// `HOST:PORT` with a non-empty port (`:5000`, `127.0.0.1:5000`, `[::1]:5000`, `localhost:5000`).
fn valid_tcp_addr(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
        }
        None => false,
    }
}

fn tls(cx: &Cx<'_>, http: Option<&Mapping>) -> Result<Option<TlsConfig>, ConfigError> {
    let Some(tls) = cx.section(http, "tls", "http")? else {
        return Ok(None);
    };
    let tls = Some(tls);
    let p = "http.tls";
    let certificate = cx.opt_string(tls, "certificate", p)?.map(PathBuf::from);
    let key = cx.opt_string(tls, "key", p)?.map(PathBuf::from);
    let clientcas: Vec<PathBuf> = cx
        .strings(tls, "clientcas", p)?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let minimumtls = cx.opt_string(tls, "minimumtls", p)?;
    if let Some(m) = &minimumtls {
        if !matches!(m.as_str(), "tls1.0" | "tls1.1" | "tls1.2" | "tls1.3") {
            return Err(cx.invalid(
                "http.tls.minimumtls",
                &m.as_str().into(),
                "one of tls1.0, tls1.1, tls1.2, tls1.3",
            ));
        }
    }
    let letsencrypt = get(tls, "letsencrypt")
        .filter(|v| v.as_mapping().is_some_and(|m| !m.is_empty()))
        .cloned();
    if certificate.is_some() && key.is_none() {
        return Err(cx.missing(
            "http.tls.key",
            "http.tls.certificate is set, so the matching private key file is needed",
        ));
    }
    if certificate.is_none() && letsencrypt.is_none() {
        if key.is_some() || !clientcas.is_empty() {
            return Err(cx.missing(
                "http.tls.certificate",
                "http.tls has a key or client CAs but no certificate to serve",
            ));
        }
        return Ok(None);
    }
    Ok(Some(TlsConfig {
        certificate,
        key,
        clientcas,
        minimumtls,
        ciphersuites: cx.strings(tls, "ciphersuites", p)?,
        letsencrypt,
    }))
}

fn health(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<HealthConfig, ConfigError> {
    let health = cx.section(root, "health", "")?;
    let sd = cx.section(health, "storagedriver", "health")?;
    let p = "health.storagedriver";
    let storagedriver = StorageDriverHealth {
        enabled: cx.bool(sd, "enabled", p, false)?,
        interval: cx.duration(sd, "interval", p, DEFAULT_CHECK_INTERVAL)?,
        threshold: cx.u32(sd, "threshold", p, 1)?,
    };
    let mut file = Vec::new();
    for (p, item) in cx.items(health, "file", "health")? {
        let item = Some(item);
        file.push(FileCheck {
            file: PathBuf::from(cx.required(
                item,
                "file",
                &p,
                "the path whose existence marks the registry unhealthy",
            )?),
            interval: cx.duration(item, "interval", &p, DEFAULT_CHECK_INTERVAL)?,
            threshold: cx.u32(item, "threshold", &p, 1)?,
        });
    }
    let mut http = Vec::new();
    for (p, item) in cx.items(health, "http", "health")? {
        let item = Some(item);
        http.push(HttpCheck {
            uri: cx.required(item, "uri", &p, "the URL to check with HEAD requests")?,
            headers: cx.headers(item, "headers", &p)?,
            statuscode: u16::try_from(
                cx.opt_uint(item, "statuscode", &p, 999)?
                    .filter(|c| *c != 0)
                    .unwrap_or(200),
            )
            .unwrap_or(200),
            timeout: cx
                .opt_duration(item, "timeout", &p)?
                .filter(|d| !d.is_zero()),
            interval: cx.duration(item, "interval", &p, DEFAULT_CHECK_INTERVAL)?,
            threshold: cx.u32(item, "threshold", &p, 1)?,
        });
    }
    let mut tcp = Vec::new();
    for (p, item) in cx.items(health, "tcp", "health")? {
        let item = Some(item);
        tcp.push(TcpCheck {
            addr: cx.required(item, "addr", &p, "the HOST:PORT to connect to")?,
            timeout: cx
                .opt_duration(item, "timeout", &p)?
                .filter(|d| !d.is_zero()),
            interval: cx.duration(item, "interval", &p, DEFAULT_CHECK_INTERVAL)?,
            threshold: cx.u32(item, "threshold", &p, 1)?,
        });
    }
    Ok(HealthConfig {
        storagedriver,
        file,
        http,
        tcp,
    })
}

fn auth(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<Option<AuthConfig>, ConfigError> {
    let Some(auth) = cx.section(root, "auth", "")? else {
        return Ok(None);
    };
    // `oidc` signs people in beside a provider; it is not one itself (crate::oidc).
    let names: Vec<String> = auth
        .keys()
        .map(key_text)
        .filter(|k| k != crate::oidc::KEY)
        .collect();
    let name = match names.as_slice() {
        [] => return Ok(None),
        [one] => one.clone(),
        many => {
            return Err(ConfigError::Auth {
                origin: cx.origin("auth"),
                message: format!(
                    "only one auth provider can be configured, found {}: keep one",
                    many.join(", ")
                ),
            })
        }
    };
    let path = format!("auth.{name}");
    let p = cx.section(Some(auth), &name, "auth")?;
    let extra = |known: &[&str]| -> BTreeMap<String, serde_yaml::Value> {
        params(p)
            .into_iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .collect()
    };
    Ok(Some(match name.as_str() {
        "htpasswd" => AuthConfig::Htpasswd {
            realm: cx.required(p, "realm", &path, "the realm sent in the Basic challenge")?,
            path: PathBuf::from(cx.required(
                p,
                "path",
                &path,
                "the htpasswd file with bcrypt entries",
            )?),
            extra: extra(&["realm", "path"]),
        },
        "token" => {
            let rootcertbundle = cx
                .opt_string(p, "rootcertbundle", &path)?
                .map(PathBuf::from);
            let jwks = cx.opt_string(p, "jwks", &path)?.map(PathBuf::from);
            let builtin = params(p).keys().any(|k| k.eq_ignore_ascii_case("builtin"));
            if rootcertbundle.is_none() && jwks.is_none() && !builtin {
                return Err(cx.missing(
                    "auth.token.rootcertbundle",
                    "the certificates that sign tokens (or auth.token.jwks, or Berth's auth.token.builtin)",
                ));
            }
            AuthConfig::Token {
                realm: cx.required(p, "realm", &path, "the URL of the token service")?,
                service: cx.required(
                    p,
                    "service",
                    &path,
                    "the service name tokens are issued for",
                )?,
                issuer: cx.required(p, "issuer", &path, "the issuer named in tokens")?,
                rootcertbundle,
                jwks,
                autoredirect: cx.bool(p, "autoredirect", &path, false)?,
                extra: extra(&[
                    "realm",
                    "service",
                    "issuer",
                    "rootcertbundle",
                    "jwks",
                    "autoredirect",
                ]),
            }
        }
        "silly" => AuthConfig::Silly {
            realm: cx.required(p, "realm", &path, "the realm sent in the challenge")?,
            service: cx.required(p, "service", &path, "the service sent in the challenge")?,
            extra: extra(&["realm", "service"]),
        },
        other => {
            let providers = ["htpasswd", "token", "silly"];
            let mut message =
                format!("unknown auth provider {other:?}: use one of htpasswd, token, silly");
            if let Some(best) = closest(providers.iter().copied(), other) {
                message.push_str(&format!(" (did you mean {best:?}?)"));
            }
            return Err(ConfigError::Auth {
                origin: cx.origin(&path),
                message,
            });
        }
    }))
}

/// `auth.oidc`, checked against the provider beside it (it needs `auth.token.builtin`).
fn oidc(
    cx: &Cx<'_>,
    root: Option<&Mapping>,
) -> Result<Option<crate::oidc::OidcConfig>, ConfigError> {
    let auth = cx.section(root, "auth", "")?;
    let token = cx.section(auth, "token", "auth")?;
    let builtin = params(token)
        .keys()
        .any(|k| k.eq_ignore_ascii_case("builtin"));
    crate::oidc::extract(cx, auth, builtin)
}

fn notifications(
    cx: &Cx<'_>,
    root: Option<&Mapping>,
) -> Result<Option<NotificationsConfig>, ConfigError> {
    let Some(n) = cx.section(root, "notifications", "")? else {
        return Ok(None);
    };
    let n = Some(n);
    let events = cx.section(n, "events", "notifications")?;
    let mut endpoints = Vec::new();
    for (p, item) in cx.items(n, "endpoints", "notifications")? {
        let item = Some(item);
        let ignore = cx.section(item, "ignore", &p)?;
        let ignore_path = join(&p, "ignore");
        endpoints.push(EndpointConfig {
            name: cx.required(item, "name", &p, "a name identifying the endpoint")?,
            disabled: cx.bool(item, "disabled", &p, false)?,
            url: cx.required(item, "url", &p, "the URL events are POSTed to")?,
            headers: cx.headers(item, "headers", &p)?,
            timeout: cx.duration(item, "timeout", &p, Duration::from_secs(1))?,
            threshold: cx.u32(item, "threshold", &p, 10)?,
            backoff: cx.duration(item, "backoff", &p, Duration::from_secs(1))?,
            ignoredmediatypes: cx.strings(item, "ignoredmediatypes", &p)?,
            ignore: IgnoreConfig {
                mediatypes: cx.strings(ignore, "mediatypes", &ignore_path)?,
                actions: cx.strings(ignore, "actions", &ignore_path)?,
            },
        });
    }
    Ok(Some(NotificationsConfig {
        events: EventsConfig {
            includereferences: cx.bool(
                events,
                "includereferences",
                "notifications.events",
                false,
            )?,
        },
        endpoints,
    }))
}

/// `storage.maintenance.diskwatermark`: percentages from 1 to 100, `warn` at most `refuse`.
fn disk_watermark(
    cx: &Cx<'_>,
    maintenance: Option<&Mapping>,
) -> Result<DiskWatermarkConfig, ConfigError> {
    let p = "storage.maintenance.diskwatermark";
    let section = cx.section(maintenance, "diskwatermark", "storage.maintenance")?;
    let d = DiskWatermarkConfig::default();
    let percent = |key: &str, default: u8| -> Result<u8, ConfigError> {
        let value = cx
            .opt_uint(section, key, p, 100)?
            .unwrap_or(u64::from(default));
        Ok(u8::try_from(value).unwrap_or(100))
    };
    let config = DiskWatermarkConfig {
        enabled: cx.bool(section, "enabled", p, d.enabled)?,
        warn: percent("warn", d.warn)?,
        refuse: percent("refuse", d.refuse)?,
        interval: cx.duration(section, "interval", p, d.interval)?,
    };
    if config.warn > config.refuse {
        let value = serde_yaml::Value::from(u64::from(config.warn));
        return Err(cx.invalid(
            &format!("{p}.warn"),
            &value,
            &format!("a percentage no higher than refuse ({})", config.refuse),
        ));
    }
    Ok(config)
}
