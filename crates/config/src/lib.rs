//! registry:2-compatible configuration for Berth.
//!
//! [`load`] reads a registry:2 `config.yml` (or the embedded default when no file is given),
//! applies `REGISTRY_*` environment overrides with registry:2's rules, checks every key, fills
//! in registry:2's defaults and returns a typed [`Config`] plus warnings for the operator:
//!
//! - keys registry:2 knows but Berth does not implement (`redis`, `middleware`,
//!   `http.tls.letsencrypt`, ...): `config key "redis" is not supported by Berth yet and is ignored`;
//! - keys nobody knows: `unknown config key "http.adr" (ignored); did you mean "http.addr"?`;
//! - `REGISTRY_*` variables naming no key, deprecated keys, durations written as bare numbers.
//!
//! A value of the wrong type or outside the allowed set is a [`ConfigError`] naming the file (or
//! the environment variable) and the key path, e.g.
//! `config.yml: storage.delete.enabled: invalid value "maybe": expected a boolean (true or false)`.
//!
//! Some sections are parsed fully but not acted on by every Berth build: `auth`, `http.tls`
//! and non-filesystem storage drivers are returned as data so the server can refuse them with
//! a precise message instead of silently serving without them.

mod cluster;
mod defaults;
mod duration;
mod emit;
mod env;
mod error;
mod extract;
mod keys;
mod limits;
mod model;
mod oidc;
mod proxy;
mod proxy_cache;
mod retention;
mod s3;
mod scan;
mod sync;
mod ui;
mod values;

use std::cell::RefCell;
use std::path::Path;

use serde_yaml::{Mapping, Value};

pub use cluster::{is_node_name, ClusterConfig};
pub use defaults::{
    default_root_directory, embedded_default_yaml, root_directory_from, EMBEDDED_DEFAULT_TEMPLATE,
    EMBEDDED_SOURCE,
};
pub use duration::{format_go_duration, go_duration, go_duration_opt, parse_go_duration};
pub use emit::MASK;
pub use env::ENV_PREFIX;
pub use error::ConfigError;
pub use extract::SUPPORTED_VERSION;
pub use limits::{LimitsConfig, LoginLimits};
pub use model::*;
pub use oidc::{OidcConfig, DEFAULT_GROUPS_CLAIM, DEFAULT_SCOPES};
pub use proxy_cache::{format_size, parse_size, ProxyCacheConfig, UpstreamCacheConfig};
pub use retention::{format_age, parse_age};
pub use scan::{ScanConfig, ScanFormat};
pub use sync::SyncConfig;
pub use ui::UiConfig;

/// A loaded configuration, with what the operator should be told about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// Human-readable warnings (ignored keys, unknown keys, deprecated keys, ...), to print at
    /// startup (as warnings) and in `berth config check`.
    pub warnings: Vec<String>,
    /// Where the configuration came from: the file path as given, or `"embedded default"`.
    pub source: String,
}

/// Loads the configuration from `path` (registry:2's `config.yml` format), or the embedded
/// default when `path` is `None`, then applies the `REGISTRY_*` variables found in `env`.
///
/// `env` is a list of `(name, value)` pairs, normally `std::env::vars().collect()`; variables
/// not starting with `REGISTRY_` are ignored, except that the embedded default's data directory
/// looks up `BERTH_DATA_DIR`, `XDG_DATA_HOME` and `HOME` in `env` first and in the process
/// environment second (so passing only the `REGISTRY_*` variables works too).
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            load_str(&text, &path.display().to_string(), env)
        }
        None => {
            let root = root_directory_from(|name| {
                env.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
            });
            load_str(&embedded_default_yaml(&root), EMBEDDED_SOURCE, env)
        }
    }
}

/// Like [`load`], from YAML text; `source` names it in messages (a file path, or
/// `"embedded default"`) and becomes [`Loaded::source`].
pub fn load_str(text: &str, source: &str, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let yaml_error = |message: String| ConfigError::Yaml {
        origin: source.to_owned(),
        message,
    };
    let mut root: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml::from_str(text).map_err(|e| yaml_error(e.to_string()))?
    };
    root.apply_merge().map_err(|e| yaml_error(e.to_string()))?;
    untag(&mut root);
    match root {
        Value::Null => root = Value::Mapping(Mapping::new()),
        Value::Mapping(_) => {}
        _ => {
            return Err(yaml_error(
                "the top level must be a mapping of keys (version, storage, http, ...)".to_owned(),
            ))
        }
    }
    env::normalize_short_forms(&mut root);
    keys::canonicalize(&keys::ROOT, &mut root);

    let mut warnings = Vec::new();
    let origins = env::apply(&mut root, env, &mut warnings)?;
    keys::check(&keys::ROOT, &root, "", &mut warnings);

    let Value::Mapping(map) = &root else {
        return Err(yaml_error(
            "the top level must be a mapping of keys".to_owned(),
        ));
    };
    let cx = values::Cx {
        source,
        origins: &origins,
        warnings: RefCell::new(warnings),
    };
    let config = extract::config(&cx, map)?;
    Ok(Loaded {
        config,
        warnings: cx.warnings.into_inner(),
        source: source.to_owned(),
    })
}

/// Replaces YAML-tagged values (`!!str 5`, custom tags) by the values themselves.
fn untag(value: &mut Value) {
    match value {
        Value::Tagged(tagged) => {
            let inner = std::mem::take(&mut tagged.value);
            *value = inner;
            untag(value);
        }
        Value::Mapping(map) => map.iter_mut().for_each(|(_, v)| untag(v)),
        Value::Sequence(items) => items.iter_mut().for_each(untag),
        _ => {}
    }
}

impl Config {
    /// The address to bind for `net: tcp`: registry:2's `:5000` (all interfaces) becomes
    /// `0.0.0.0:5000` (`[::]:5000` for `tcp6`); explicit hosts (`127.0.0.1:5055`, `[::1]:5000`,
    /// `localhost:5000`) are returned unchanged. For `net: unix` this is the socket path.
    pub fn listen_addr(&self) -> String {
        let addr = &self.http.addr;
        if self.http.net == "unix" {
            return addr.clone();
        }
        match addr.strip_prefix(':') {
            Some(port) if self.http.net == "tcp6" => format!("[::]:{port}"),
            Some(port) => format!("0.0.0.0:{port}"),
            None => addr.clone(),
        }
    }

    /// The address to bind for `http.debug.addr`, with the same `:PORT` expansion as
    /// [`Config::listen_addr`] (the stock config's `:5001`); `None` without a debug server.
    pub fn debug_listen_addr(&self) -> Option<String> {
        let addr = &self.http.debug.as_ref()?.addr;
        Some(match addr.strip_prefix(':') {
            Some(port) if self.http.net == "tcp6" => format!("[::]:{port}"),
            Some(port) => format!("0.0.0.0:{port}"),
            None => addr.clone(),
        })
    }
}
