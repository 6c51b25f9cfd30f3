//! `ui` (Berth extension): the embedded web UI. Defaults when absent, values from the file and
//! from `REGISTRY_UI_*`, invalid values refused naming the key, unknown keys warned about, and
//! the section written back by `to_yaml`.

use berth_config::UiConfig;

use crate::{assert_warning, err, ok, MINIMAL};

#[test]
fn defaults_when_absent() {
    let expected = UiConfig {
        enabled: true,
        title: "Berth".to_owned(),
        pullhost: None,
    };
    assert_eq!(UiConfig::default(), expected);
    for yaml in [
        MINIMAL.to_owned(),
        format!("{MINIMAL}ui:\n"),
        format!("{MINIMAL}ui: {{}}\n"),
    ] {
        let loaded = ok(&yaml, &[]);
        assert!(loaded.warnings.is_empty(), "{yaml}: {:#?}", loaded.warnings);
        assert_eq!(loaded.config.ui, expected, "{yaml}");
    }
}

#[test]
fn values_from_yaml_and_written_back() {
    let yaml = format!(
        "{MINIMAL}ui:\n  enabled: false\n  title: Acme images\n  pullhost: registry.acme.test:5000\n"
    );
    let loaded = ok(&yaml, &[]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let expected = UiConfig {
        enabled: false,
        title: "Acme images".to_owned(),
        pullhost: Some("registry.acme.test:5000".to_owned()),
    };
    assert_eq!(loaded.config.ui, expected);
    let written = loaded.config.to_yaml();
    assert!(
        written.contains(
            "ui:\n  enabled: false\n  title: Acme images\n  pullhost: registry.acme.test:5000\n"
        ),
        "{written}"
    );
    assert_eq!(ok(&written, &[]).config.ui, expected);
    // All defaults: no `ui` section in the output, as for a registry:2 file.
    assert!(!ok(MINIMAL, &[]).config.to_yaml().contains("\nui:"));
}

#[test]
fn env_overrides() {
    let loaded = ok(
        &format!("{MINIMAL}ui:\n  title: from the file\n"),
        &[
            ("REGISTRY_UI_ENABLED", "false"),
            ("REGISTRY_UI_PULLHOST", "reg.example"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.config.ui,
        UiConfig {
            enabled: false,
            title: "from the file".to_owned(),
            pullhost: Some("reg.example".to_owned()),
        }
    );
    let loaded = ok(MINIMAL, &[("REGISTRY_UI_TITLE", "Env title")]);
    assert_eq!(loaded.config.ui.title, "Env title");
    assert!(loaded.config.ui.enabled);
}

#[test]
fn invalid_values_name_the_key() {
    for (yaml, key) in [
        ("ui: {enabled: maybe}\n", "ui.enabled"),
        ("ui: {pullhost: \"https://reg.example\"}\n", "ui.pullhost"),
        ("ui: {pullhost: \"reg example\"}\n", "ui.pullhost"),
        ("ui: {title: \"line\\nbreak\"}\n", "ui.title"),
        ("ui: 5\n", "ui"),
    ] {
        let e = err(&format!("{MINIMAL}{yaml}"), &[]);
        assert!(e.contains(key), "{yaml}: {e}");
    }
}

#[test]
fn unknown_keys_warn() {
    let loaded = ok(&format!("{MINIMAL}ui:\n  theme: dark\n"), &[]);
    assert_warning(&loaded, &["ui.theme"]);
}
