//! `ui` (Berth extension): the web UI served by the `berth` binary under `http.prefix`. This
//! module is the one place for these keys: their schema (unknown keys warn, `REGISTRY_UI_*`
//! overrides apply), the typed model, reading, and writing them back for `berth config check`.
//!
//! ```yaml
//! ui:
//!   enabled: true                   # serve the UI at <http.prefix>ui/ (default true)
//!   title: Acme registry            # shown in the page header (default "Berth")
//!   pullhost: registry.example.com  # host written in pull commands (default: http.host, else the request's Host)
//! ```
//!
//! `REGISTRY_UI_ENABLED=false`, `REGISTRY_UI_TITLE=…` and `REGISTRY_UI_PULLHOST=…` work.

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::error::ConfigError;
use crate::keys::{closed, yes, Node, SCALAR};
use crate::values::Cx;

/// The section's key, at the top level of `config.yml`.
pub(crate) const SECTION: &str = "ui";
const ENABLED: &str = "enabled";
const TITLE: &str = "title";
const PULLHOST: &str = "pullhost";

/// The longest `ui.title` accepted: it is shown in every page header.
const MAX_TITLE: usize = 100;

/// The schema of `ui`, hung under the root of [`crate::keys::ROOT`].
pub(crate) static KEYS: Node = closed(&[
    yes(ENABLED, &SCALAR),
    yes(TITLE, &SCALAR),
    yes(PULLHOST, &SCALAR),
]);

/// `ui` (Berth extension): the embedded web UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiConfig {
    /// `ui.enabled`, default true: serve the UI at `<http.prefix>ui/` (when the binary was
    /// built with its `ui` feature).
    pub enabled: bool,
    /// `ui.title`, default `Berth`: the name shown in the page header and title.
    pub title: String,
    /// `ui.pullhost`: the registry host written in the UI's pull commands
    /// (`registry.example.com` or `registry.example.com:5000`, no scheme). Unset: the host of
    /// `http.host`, else the `Host` the browser used.
    pub pullhost: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            title: "Berth".to_owned(),
            pullhost: None,
        }
    }
}

/// Reads `ui` from the top level, with the defaults for anything unset.
pub(crate) fn extract(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<UiConfig, ConfigError> {
    let ui = cx.section(root, SECTION, "")?;
    let defaults = UiConfig::default();
    let title = match cx.opt_string(ui, TITLE, SECTION)? {
        Some(t) if t.chars().count() > MAX_TITLE || t.chars().any(char::is_control) => {
            return Err(cx.invalid(
                &format!("{SECTION}.{TITLE}"),
                &Value::String(t),
                "a one-line title of at most 100 characters",
            ));
        }
        Some(t) => t,
        None => defaults.title,
    };
    let pullhost = match cx.opt_string(ui, PULLHOST, SECTION)? {
        Some(h) if !valid_host(&h) => {
            return Err(cx.invalid(
                &format!("{SECTION}.{PULLHOST}"),
                &Value::String(h),
                "a host name with an optional port and path, without a scheme, such as \"registry.example.com:5000\"",
            ));
        }
        other => other,
    };
    Ok(UiConfig {
        enabled: cx
            .opt_bool(ui, ENABLED, SECTION)?
            .unwrap_or(defaults.enabled),
        title,
        pullhost,
    })
}

/// Whether `host` can go in front of a repository name in a pull command: a host, optional
/// port and path, no scheme, no spaces.
fn valid_host(host: &str) -> bool {
    !host.contains("://")
        && !host.starts_with('/')
        && host.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '/' | '_' | '[' | ']')
        })
}

/// The section in `config.yml` shape for `berth config check`, `None` when it is all defaults
/// (as `cluster`, so the output of a plain registry:2 file keeps registry:2's shape); loading
/// it back gives the same [`UiConfig`].
pub(crate) fn emit(ui: &UiConfig) -> Option<Value> {
    if *ui == UiConfig::default() {
        return None;
    }
    let mut m = Mapping::new();
    m.insert(ENABLED.into(), ui.enabled.into());
    m.insert(TITLE.into(), ui.title.clone().into());
    if let Some(host) = &ui.pullhost {
        m.insert(PULLHOST.into(), host.clone().into());
    }
    Some(Value::Mapping(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_only_when_set_with_the_documented_spelling() {
        assert_eq!(emit(&UiConfig::default()), None);
        let ui = UiConfig {
            enabled: false,
            pullhost: Some("r.example:5000".to_owned()),
            ..UiConfig::default()
        };
        let text = serde_yaml::to_string(&emit(&ui)).expect("yaml");
        assert_eq!(
            text,
            "enabled: false\ntitle: Berth\npullhost: r.example:5000\n"
        );
    }

    #[test]
    fn hosts() {
        assert!(valid_host("registry.example.com:5000"));
        assert!(valid_host("[::1]:5000"));
        assert!(!valid_host("https://registry.example.com"));
        assert!(!valid_host("a b"));
        assert!(!valid_host("<script>"));
    }
}
