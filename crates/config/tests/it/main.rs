//! Integration tests of `berth_config::load`: registry:2's stock configs, `REGISTRY_*`
//! overrides, warnings, errors and masking. The environment is always passed as a slice; the
//! real process environment is never modified.

mod cluster;
mod env_overrides;
mod limits;
mod masking;
mod proxy;
mod proxy_cache;
mod s3;
mod scan;
mod stock;
mod sync;
mod ui;
mod warnings_errors;

use std::path::PathBuf;

use berth_config::{ConfigError, Loaded};

/// `(name, value)` pairs for `load`'s `env` argument.
pub fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes `yaml` to `<tempdir>/config.yml` and loads it with `vars`.
pub fn load_yaml(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("config.yml");
    std::fs::write(&path, yaml).expect("write config");
    berth_config::load(Some(&path), &env(vars))
}

/// Loads `yaml`, which must succeed.
pub fn ok(yaml: &str, vars: &[(&str, &str)]) -> Loaded {
    match load_yaml(yaml, vars) {
        Ok(loaded) => loaded,
        Err(e) => panic!("config should load, got: {e}"),
    }
}

/// Loads `yaml`, which must fail; returns the error text.
pub fn err(yaml: &str, vars: &[(&str, &str)]) -> String {
    match load_yaml(yaml, vars) {
        Ok(loaded) => panic!("config should be rejected, got {:#?}", loaded.config),
        Err(e) => e.to_string(),
    }
}

/// Asserts that some warning contains every one of `parts`.
#[track_caller]
pub fn assert_warning(loaded: &Loaded, parts: &[&str]) {
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| parts.iter().all(|p| w.contains(p))),
        "no warning containing {parts:?} in {:#?}",
        loaded.warnings
    );
}

/// A minimal valid config body to extend in tests.
pub const MINIMAL: &str =
    "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry\n";
