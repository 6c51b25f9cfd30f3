//! `storage.maintenance.retention` (Berth extension): which tags and untagged manifests the
//! retention run deletes, per repository pattern (docs/lifecycle.md, "Retention").
//!
//! ```yaml
//! storage:
//!   maintenance:
//!     retention:
//!       enabled: false          # scheduled runs
//!       interval: 24h
//!       dryrun: false
//!       policies:
//!         - repositories: ["team-a/*", "library/**"]
//!           keeplast: 10
//!           olderthan: 30d
//!           keeptags: ['^v\d+\.\d+\.\d+$', '^latest$']
//!           deletetags: ['^pr-']
//!           deleteuntagged: true
//! ```
//!
//! Keys are spelled like registry:2's (`uploadpurging`, `blobdescriptorsize`): without
//! underscores, so that `REGISTRY_STORAGE_MAINTENANCE_RETENTION_POLICIES_0_KEEPLAST` works.
//! Patterns and regexes are checked here, so a bad one stops startup with its key path.

use std::time::Duration;

use berth_oci::RepoPattern;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::duration::{format_go_duration, parse_go_duration};
use crate::error::ConfigError;
use crate::values::{get, Cx};

const SECTION: &str = "storage.maintenance.retention";
const DAY: u64 = 24 * 3600;

/// `storage.maintenance.retention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionConfig {
    /// `enabled`: run the policies in the background every `interval` (default false; the
    /// `berth retention` command works either way).
    pub enabled: bool,
    /// `interval` between scheduled runs, default 24h (`d` is accepted: `7d`).
    #[serde(with = "age")]
    pub interval: Duration,
    /// `dryrun`: scheduled runs only log what they would delete, default false.
    pub dryrun: bool,
    /// `policies`: for each repository the first policy whose patterns match it applies.
    pub policies: Vec<RetentionPolicyConfig>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: false,
            interval: Duration::from_secs(DAY),
            dryrun: false,
            policies: Vec::new(),
        }
    }
}

/// An entry of `storage.maintenance.retention.policies`, checked: the patterns parse with
/// [`RepoPattern::parse`] and the regexes compile with the `regex` crate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RetentionPolicyConfig {
    /// `repositories`: patterns (`*` one segment, `**` any depth), at least one.
    pub repositories: Vec<String>,
    /// `keeplast`: the newest N tags by push time, among those `keeptags` and `deletetags`
    /// do not match, are kept.
    pub keep_last: Option<u32>,
    /// `olderthan`: tags pushed longer ago than this are deleted (after `keeplast`).
    #[serde(with = "age_opt")]
    pub older_than: Option<Duration>,
    /// `keeptags`: regexes; a tag matching one is always kept.
    pub keep_tags: Vec<String>,
    /// `deletetags`: regexes; a tag matching one (and no `keeptags`) is always deleted.
    pub delete_tags: Vec<String>,
    /// `deleteuntagged`: also delete manifests no remaining tag reaches (index children and
    /// referrers of kept manifests stay).
    pub delete_untagged: bool,
}

impl RetentionPolicyConfig {
    /// Whether the policy has any rule that can delete something.
    pub fn deletes_anything(&self) -> bool {
        self.keep_last.is_some()
            || self.older_than.is_some()
            || !self.delete_tags.is_empty()
            || self.delete_untagged
    }
}

/// Parses a duration in Go syntax, or whole days (`30d`) optionally followed by one
/// (`1d12h`): registry:2's durations have no `d`, retention ages usually do.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && text[digits..].starts_with('d') {
        let days: u64 = text[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        let rest = &text[digits + 1..];
        let extra = if rest.is_empty() {
            Duration::ZERO
        } else {
            parse_go_duration(rest)?
        };
        return days
            .checked_mul(DAY)
            .and_then(|s| Duration::from_secs(s).checked_add(extra))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"));
    }
    parse_go_duration(text)
}

/// Formats whole days as `30d`, anything else in Go syntax, so that [`parse_age`] reads it
/// back to the same value.
pub fn format_age(d: Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() > 0 && d.as_secs().checked_rem(DAY) == Some(0) {
        format!("{}d", d.as_secs() / DAY)
    } else {
        format_go_duration(d)
    }
}

/// Serde support for durations written with [`format_age`].
mod age {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_age(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse_age(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Serde support for optional durations written with [`format_age`].
mod age_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_age(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::parse_age(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Reads `storage.maintenance.retention` from the `maintenance` section.
pub(crate) fn extract(
    cx: &Cx<'_>,
    maintenance: Option<&Mapping>,
) -> Result<RetentionConfig, ConfigError> {
    let section = cx.section(maintenance, "retention", "storage.maintenance")?;
    let defaults = RetentionConfig::default();
    let mut policies = Vec::new();
    for (p, item) in cx.items(section, "policies", SECTION)? {
        policies.push(policy(cx, &p, item)?);
    }
    Ok(RetentionConfig {
        enabled: cx.bool(section, "enabled", SECTION, defaults.enabled)?,
        interval: age_value(cx, section, "interval", SECTION)?
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults.interval),
        dryrun: cx.bool(section, "dryrun", SECTION, defaults.dryrun)?,
        policies,
    })
}

fn policy(cx: &Cx<'_>, p: &str, item: &Mapping) -> Result<RetentionPolicyConfig, ConfigError> {
    let item = Some(item);
    let repositories = cx.strings(item, "repositories", p)?;
    if repositories.is_empty() {
        return Err(cx.missing(
            &format!("{p}.repositories"),
            "the repository patterns this policy applies to, e.g. [\"team-a/*\"]",
        ));
    }
    for (i, pattern) in repositories.iter().enumerate() {
        if let Err(why) = RepoPattern::parse(pattern) {
            return Err(cx.invalid(
                &format!("{p}.repositories[{i}]"),
                &Value::from(pattern.as_str()),
                &format!("a repository pattern such as \"team-a/*\" or \"library/**\" ({why})"),
            ));
        }
    }
    let config = RetentionPolicyConfig {
        repositories,
        keep_last: cx
            .opt_uint(item, "keeplast", p, u64::from(u32::MAX))?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        older_than: age_value(cx, item, "olderthan", p)?,
        keep_tags: regexes(cx, item, "keeptags", p)?,
        delete_tags: regexes(cx, item, "deletetags", p)?,
        delete_untagged: cx.bool(item, "deleteuntagged", p, false)?,
    };
    if !config.deletes_anything() {
        cx.warn(format!(
            "{p}: the policy has none of keeplast, olderthan, deletetags, deleteuntagged, so it deletes nothing"
        ));
    }
    Ok(config)
}

/// A list of regexes, each compiled once to check it.
fn regexes(
    cx: &Cx<'_>,
    item: Option<&Mapping>,
    key: &str,
    p: &str,
) -> Result<Vec<String>, ConfigError> {
    let list = cx.strings(item, key, p)?;
    for (i, text) in list.iter().enumerate() {
        if let Err(e) = regex::Regex::new(text) {
            let why = e.to_string().replace('\n', " ");
            return Err(cx.invalid(
                &format!("{p}.{key}[{i}]"),
                &Value::from(text.as_str()),
                &format!("a regular expression (Rust regex syntax): {why}"),
            ));
        }
    }
    Ok(list)
}

/// A duration that may use days; a bare number is refused (registry:2 would read
/// nanoseconds, which is never what an age means).
fn age_value(
    cx: &Cx<'_>,
    parent: Option<&Mapping>,
    key: &str,
    p: &str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = get(parent, key) else {
        return Ok(None);
    };
    let expected = "a duration such as \"30d\", \"12h\" or \"1d12h\" (units: d, h, m, s, ms)";
    match v {
        Value::String(s) => parse_age(s)
            .map(Some)
            .map_err(|_| cx.invalid(&format!("{p}.{key}"), v, expected)),
        _ => Err(cx.invalid(&format!("{p}.{key}"), v, expected)),
    }
}

/// The section in registry:2's `config.yml` layout, for `berth config check`.
pub(crate) fn emit(r: &RetentionConfig) -> Value {
    let mut m = Mapping::new();
    m.insert("enabled".into(), r.enabled.into());
    m.insert("interval".into(), format_age(r.interval).into());
    m.insert("dryrun".into(), r.dryrun.into());
    if !r.policies.is_empty() {
        let policies = r.policies.iter().map(emit_policy).collect();
        m.insert("policies".into(), Value::Sequence(policies));
    }
    Value::Mapping(m)
}

fn emit_policy(p: &RetentionPolicyConfig) -> Value {
    let list =
        |items: &[String]| Value::Sequence(items.iter().map(|s| s.as_str().into()).collect());
    let mut m = Mapping::new();
    m.insert("repositories".into(), list(&p.repositories));
    if let Some(n) = p.keep_last {
        m.insert("keeplast".into(), u64::from(n).into());
    }
    if let Some(d) = p.older_than {
        m.insert("olderthan".into(), format_age(d).into());
    }
    if !p.keep_tags.is_empty() {
        m.insert("keeptags".into(), list(&p.keep_tags));
    }
    if !p.delete_tags.is_empty() {
        m.insert("deletetags".into(), list(&p.delete_tags));
    }
    m.insert("deleteuntagged".into(), p.delete_untagged.into());
    Value::Mapping(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "version: 0.1\nstorage:\n  inmemory:\n  maintenance:\n    retention:\n";

    fn load(section: &str, env: &[(&str, &str)]) -> Result<crate::Loaded, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        crate::load_str(&format!("{BASE}{section}"), "config.yml", &env)
    }

    fn error(section: &str) -> String {
        load(section, &[])
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn parses_policies_and_round_trips_through_yaml() {
        let loaded = load(
            r#"      enabled: true
      interval: 7d
      policies:
        - repositories: ["team-a/*", "library/**"]
          keeplast: 10
          olderthan: 30d
          keeptags: ['^v\d+\.\d+\.\d+$', '^latest$']
          deletetags: ['^pr-']
          deleteuntagged: true
        - repositories: [other]
          keeplast: 1
"#,
            &[],
        )
        .expect("config");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let r = &loaded.config.storage.maintenance.retention;
        assert!(r.enabled && !r.dryrun);
        assert_eq!(r.interval, Duration::from_secs(7 * DAY));
        assert_eq!(r.policies.len(), 2);
        let p = &r.policies[0];
        assert_eq!(p.repositories, ["team-a/*", "library/**"]);
        assert_eq!(p.keep_last, Some(10));
        assert_eq!(p.older_than, Some(Duration::from_secs(30 * DAY)));
        assert_eq!(p.keep_tags, [r"^v\d+\.\d+\.\d+$", "^latest$"]);
        assert_eq!(p.delete_tags, ["^pr-"]);
        assert!(p.delete_untagged);
        assert_eq!(r.policies[1].older_than, None);
        let again = crate::load_str(&loaded.config.to_yaml(), "emitted", &[]).expect("emitted");
        assert_eq!(again.config.storage.maintenance.retention, *r);
    }

    #[test]
    fn defaults_and_env_overrides() {
        let r = load("", &[])
            .expect("config")
            .config
            .storage
            .maintenance
            .retention;
        assert_eq!(r, RetentionConfig::default());
        let loaded = load(
            "      policies: [{repositories: [a], keeplast: 3}]\n",
            &[
                ("REGISTRY_STORAGE_MAINTENANCE_RETENTION_ENABLED", "true"),
                ("REGISTRY_STORAGE_MAINTENANCE_RETENTION_DRYRUN", "true"),
                ("REGISTRY_STORAGE_MAINTENANCE_RETENTION_INTERVAL", "12h"),
                (
                    "REGISTRY_STORAGE_MAINTENANCE_RETENTION_POLICIES_0_KEEPLAST",
                    "5",
                ),
            ],
        )
        .expect("config");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let r = loaded.config.storage.maintenance.retention;
        assert!(r.enabled && r.dryrun);
        assert_eq!(r.interval, Duration::from_secs(12 * 3600));
        assert_eq!(r.policies[0].keep_last, Some(5));
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad_regex = error("      policies: [{repositories: [a], keeptags: ['(']}]\n");
        assert!(
            bad_regex.starts_with("config.yml: storage.maintenance.retention.policies[0].keeptags[0]: invalid value \"(\""),
            "{bad_regex}"
        );
        let bad_pattern = error("      policies: [{repositories: [a, 'b//c'], keeplast: 1}]\n");
        assert!(
            bad_pattern.contains("storage.maintenance.retention.policies[0].repositories[1]"),
            "{bad_pattern}"
        );
        let no_repos = error("      policies: [{keeplast: 1}]\n");
        assert!(
            no_repos.contains("storage.maintenance.retention.policies[0].repositories: missing"),
            "{no_repos}"
        );
        let bad_age = error("      policies: [{repositories: [a], olderthan: 30}]\n");
        assert!(
            bad_age.contains("policies[0].olderthan: invalid value 30"),
            "{bad_age}"
        );
        let unknown = load("      policies: [{repositories: [a], keep_last: 1}]\n", &[])
            .expect("config")
            .warnings;
        assert!(
            unknown.iter().any(|w| w.contains("keep_last")),
            "{unknown:?}"
        );
    }

    #[test]
    fn ages_accept_days() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * DAY)));
        assert_eq!(parse_age("1d12h"), Ok(Duration::from_secs(DAY + 12 * 3600)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(90 * 60)));
        for bad in ["", "d", "30", "1.5d", "3dd", "-1d", "1d-5h", "5w"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
        for d in [30 * DAY, DAY + 3600, 3600, 90] {
            let d = Duration::from_secs(d);
            assert_eq!(parse_age(&format_age(d)), Ok(d));
        }
        assert_eq!(format_age(Duration::from_secs(7 * DAY)), "7d");
    }
}
