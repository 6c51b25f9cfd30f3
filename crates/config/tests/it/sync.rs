//! `sync` (Berth extension): a sync file `berth serve` runs. Absent by default, values from
//! the file and `REGISTRY_SYNC_*`, `file` required, invalid values refused naming the key,
//! the section written back by `to_yaml`.

use std::path::PathBuf;
use std::time::Duration;

use berth_config::SyncConfig;

use crate::{err, ok, MINIMAL};

#[test]
fn absent_by_default() {
    let loaded = ok(MINIMAL, &[]);
    assert_eq!(loaded.config.sync, SyncConfig::default());
    assert_eq!(loaded.config.sync.file, None);
    assert!(!loaded.config.to_yaml().contains("\nsync:"));
}

#[test]
fn values_from_yaml_and_env_written_back() {
    let yaml = format!(
        "{MINIMAL}sync:\n  file: /etc/berth/sync.yml\n  interval: 30m\n  prefix: mirror/\n  referrers: true\n"
    );
    let loaded = ok(&yaml, &[("REGISTRY_SYNC_IMAGESATONCE", "5")]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let expected = SyncConfig {
        file: Some(PathBuf::from("/etc/berth/sync.yml")),
        interval: Duration::from_secs(1800),
        prefix: Some("mirror".to_owned()),
        scoped: false,
        referrers: true,
        images_at_once: 5,
    };
    assert_eq!(loaded.config.sync, expected);
    let written = loaded.config.to_yaml();
    assert!(
        written.contains("sync:\n  file: /etc/berth/sync.yml\n"),
        "{written}"
    );
    assert_eq!(ok(&written, &[]).config.sync, expected);
}

#[test]
fn invalid_values_name_the_key() {
    for (yaml, key) in [
        ("sync: {interval: 1h}\n", "sync.file"),
        ("sync: {file: /s.yml, interval: 10s}\n", "sync.interval"),
        ("sync: {file: /s.yml, prefix: Upper}\n", "sync.prefix"),
        (
            "sync: {file: /s.yml, imagesatonce: 0}\n",
            "sync.imagesatonce",
        ),
    ] {
        let e = err(&format!("{MINIMAL}{yaml}"), &[]);
        assert!(e.contains(key), "{yaml}: {e}");
    }
}
