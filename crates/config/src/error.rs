//! Errors that stop Berth from starting: each names where the bad setting came from (the config
//! file, the embedded default or a `REGISTRY_*` environment variable), the key path, and what to
//! write instead.

use std::path::PathBuf;

/// A configuration that cannot be used. The `Display` text is meant to be printed as-is to the
/// operator: it starts with the origin (file path or environment variable), then the key path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source} (check the path and its permissions)", path.display())]
    Read {
        /// The path that was given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid YAML, or its top level is not a mapping of keys.
    #[error("{origin}: invalid YAML: {message}")]
    Yaml {
        /// File path or "embedded default".
        origin: String,
        /// What the YAML parser reported, with the position when known.
        message: String,
    },

    /// The required `version` key is absent (registry:2 refuses such files too).
    #[error("{origin}: missing required key \"version\": add `version: 0.1` as the first line (or set REGISTRY_VERSION=0.1)")]
    MissingVersion {
        /// File path or "embedded default".
        origin: String,
    },

    /// `version` is not `0.1`, the only version registry:2 (and so Berth) understands.
    #[error("{origin}: version: unsupported configuration version {version:?}: the only supported version is 0.1")]
    UnsupportedVersion {
        /// File path, "embedded default" or the environment variable that set it.
        origin: String,
        /// The version found.
        version: String,
    },

    /// A key has a value of the wrong type or outside the allowed set.
    #[error("{origin}: {key}: invalid value {value}: expected {expected}")]
    InvalidValue {
        /// File path, "embedded default" or the environment variable that set the value.
        origin: String,
        /// Dotted key path such as `storage.delete.enabled`.
        key: String,
        /// The offending value, quoted for strings.
        value: String,
        /// What would have been accepted, e.g. `a boolean (true or false)`.
        expected: String,
    },

    /// A key that must be present when its section is used is missing.
    #[error("{origin}: {key}: missing required key ({hint})")]
    MissingKey {
        /// File path or "embedded default".
        origin: String,
        /// Dotted key path of the missing key, e.g. `auth.htpasswd.path`.
        key: String,
        /// Why it is required or what to write.
        hint: String,
    },

    /// No storage driver is configured.
    #[error("{origin}: storage: no storage driver configured: add for example `storage: {{filesystem: {{rootdirectory: /var/lib/registry}}}}` (or set REGISTRY_STORAGE=inmemory)")]
    NoStorage {
        /// File path or "embedded default".
        origin: String,
    },

    /// More than one storage driver is configured (from the file, the environment, or both).
    #[error("{origin}: storage: {} storage drivers configured ({}): configure exactly one{hint}", drivers.len(), drivers.join(", "))]
    MultipleStorageDrivers {
        /// File path or "embedded default".
        origin: String,
        /// The driver names found, in order.
        drivers: Vec<String>,
        /// Extra advice, e.g. which environment variable added a driver; empty or starting with "; ".
        hint: String,
    },

    /// More than one auth provider, or an auth provider registry:2 does not know.
    #[error("{origin}: auth: {message}")]
    Auth {
        /// File path, "embedded default" or the environment variable that set it.
        origin: String,
        /// What is wrong and what to write.
        message: String,
    },

    /// The `proxy` section is inconsistent (e.g. `default` names no upstream).
    #[error("{origin}: proxy: {message}")]
    Proxy {
        /// File path or the environment variable that set it.
        origin: String,
        /// What is wrong and what to write.
        message: String,
    },

    /// A `REGISTRY_*` variable could not be applied (e.g. a list index that does not exist).
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable name.
        var: String,
        /// What is wrong.
        message: String,
    },
}
