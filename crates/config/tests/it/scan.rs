//! `scan` (Berth extension): the scanner of `berth scan`. Defaults when absent, values from
//! the file and from `REGISTRY_SCAN_*`, invalid values refused naming the key, unknown keys
//! warned about, and the section written back by `to_yaml`.

use std::time::Duration;

use berth_config::{ScanConfig, ScanFormat};

use crate::{assert_warning, err, ok, MINIMAL};

#[test]
fn defaults_when_absent() {
    let loaded = ok(MINIMAL, &[]);
    assert_eq!(loaded.config.scan, ScanConfig::default());
    assert_eq!(loaded.config.scan.command, "trivy");
    assert_eq!(loaded.config.scan.format, ScanFormat::Sarif);
    assert!(!loaded.config.to_yaml().contains("\nscan:"));
}

#[test]
fn values_from_yaml_and_env_written_back() {
    let yaml = format!(
        "{MINIMAL}scan:\n  enabled: true\n  command: /usr/local/bin/trivy\n  format: cyclonedx\n  timeout: 90s\n  concurrency: 3\n"
    );
    let loaded = ok(&yaml, &[("REGISTRY_SCAN_FORMAT", "json")]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let expected = ScanConfig {
        configured: true,
        enabled: true,
        command: "/usr/local/bin/trivy".to_owned(),
        format: ScanFormat::Json,
        timeout: Duration::from_secs(90),
        concurrency: 3,
    };
    assert_eq!(loaded.config.scan, expected);
    let written = loaded.config.to_yaml();
    assert!(written.contains("scan:\n  enabled: true\n"), "{written}");
    assert_eq!(ok(&written, &[]).config.scan, expected);
    let from_env = ok(MINIMAL, &[("REGISTRY_SCAN_COMMAND", "grype-wrapper")]);
    assert_eq!(from_env.config.scan.command, "grype-wrapper");
}

#[test]
fn invalid_values_name_the_key() {
    for (yaml, key) in [
        ("scan: {format: xml}\n", "scan.format"),
        ("scan: {timeout: 0s}\n", "scan.timeout"),
        ("scan: {concurrency: 0}\n", "scan.concurrency"),
        ("scan: {enabled: maybe}\n", "scan.enabled"),
    ] {
        let e = err(&format!("{MINIMAL}{yaml}"), &[]);
        assert!(e.contains(key), "{yaml}: {e}");
    }
}

#[test]
fn unknown_keys_warn() {
    let loaded = ok(&format!("{MINIMAL}scan:\n  severity: HIGH\n"), &[]);
    assert_warning(&loaded, &["scan.severity"]);
}
