//! `scan` (Berth extension): the scanner `berth scan` runs, called with Trivy's command line
//! (`COMMAND image --format FORMAT --output FILE REF`, so `command: trivy` just works), whose
//! report is attached to the image as an OCI referrer. This module is the one place for these
//! keys: schema (unknown keys warn, `REGISTRY_SCAN_*` overrides apply), typed model, reading,
//! and writing them back for `berth config check`.
//!
//! ```yaml
//! scan:
//!   enabled: true        # serve scans each image pushed by tag (default false; `berth scan`
//!                        # runs either way)
//!   command: trivy       # program name or path (default trivy)
//!   format: sarif        # sarif | cyclonedx | json (default sarif)
//!   timeout: 5m          # a scan running longer is killed (1s to 24h, default 5m)
//!   concurrency: 2       # scans at the same time (1 to 64, default 2)
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::duration::{format_go_duration, go_duration};
use crate::error::ConfigError;
use crate::keys::{closed, join, yes, Node, SCALAR};
use crate::values::{get, Cx};

/// The section's key, at the top level of `config.yml`.
pub(crate) const SECTION: &str = "scan";
const ENABLED: &str = "enabled";
const COMMAND: &str = "command";
const FORMAT: &str = "format";
const TIMEOUT: &str = "timeout";
const CONCURRENCY: &str = "concurrency";

const MIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MAX_CONCURRENCY: u64 = 64;

/// The schema of `scan`, hung under the root of [`crate::keys::ROOT`].
pub(crate) static KEYS: Node = closed(&[
    yes(ENABLED, &SCALAR),
    yes(COMMAND, &SCALAR),
    yes(FORMAT, &SCALAR),
    yes(TIMEOUT, &SCALAR),
    yes(CONCURRENCY, &SCALAR),
]);

/// A report format the scanner is asked for (Trivy's `--format` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanFormat {
    /// SARIF 2.1.0 (code-scanning tools read it).
    Sarif,
    /// CycloneDX JSON (an SBOM with vulnerabilities).
    Cyclonedx,
    /// The scanner's own JSON.
    Json,
}

impl ScanFormat {
    /// The name passed to `--format`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanFormat::Sarif => "sarif",
            ScanFormat::Cyclonedx => "cyclonedx",
            ScanFormat::Json => "json",
        }
    }

    /// Parses a `--format` name.
    pub fn parse(s: &str) -> Option<ScanFormat> {
        match s {
            "sarif" => Some(ScanFormat::Sarif),
            "cyclonedx" => Some(ScanFormat::Cyclonedx),
            "json" => Some(ScanFormat::Json),
            _ => None,
        }
    }
}

/// `scan` (Berth extension): the scanner and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanConfig {
    /// Whether the file (or a `REGISTRY_SCAN_*` variable) has a `scan` section.
    pub configured: bool,
    /// `scan.enabled`, default false: `berth serve` scans every image pushed by tag.
    pub enabled: bool,
    /// `scan.command`, default `trivy`.
    pub command: String,
    /// `scan.format`, default `sarif`.
    pub format: ScanFormat,
    /// `scan.timeout`, default 5m: a scan running longer is killed and counted as failed.
    #[serde(with = "go_duration")]
    pub timeout: Duration,
    /// `scan.concurrency`, default 2: scans running at the same time.
    pub concurrency: u32,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            configured: false,
            enabled: false,
            command: "trivy".to_owned(),
            format: ScanFormat::Sarif,
            timeout: Duration::from_secs(300),
            concurrency: 2,
        }
    }
}

/// Reads `scan` from the top level, with the defaults for anything unset.
pub(crate) fn extract(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<ScanConfig, ConfigError> {
    let defaults = ScanConfig::default();
    let Some(map) = cx.section(root, SECTION, "")? else {
        return Ok(defaults);
    };
    let section = Some(map);
    let command = match cx.opt_string(section, COMMAND, SECTION)? {
        Some(c) if c.trim().is_empty() || c.chars().any(char::is_control) => {
            return Err(cx.invalid(
                &join(SECTION, COMMAND),
                &Value::String(c),
                "a program name or path",
            ))
        }
        Some(c) => c,
        None => defaults.command,
    };
    let format = match cx.opt_string(section, FORMAT, SECTION)? {
        None => defaults.format,
        Some(f) => ScanFormat::parse(&f).ok_or_else(|| {
            cx.invalid(
                &join(SECTION, FORMAT),
                &Value::String(f),
                "sarif, cyclonedx or json",
            )
        })?,
    };
    let timeout = match cx.opt_duration(section, TIMEOUT, SECTION)? {
        None => defaults.timeout,
        Some(d) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) => d,
        Some(_) => {
            let value = get(section, TIMEOUT).cloned().unwrap_or(Value::Null);
            return Err(cx.invalid(&join(SECTION, TIMEOUT), &value, "a duration from 1s to 24h"));
        }
    };
    let concurrency = cx
        .opt_uint_in(section, CONCURRENCY, SECTION, 1, MAX_CONCURRENCY)?
        .map_or(defaults.concurrency, |n| n as u32);
    Ok(ScanConfig {
        configured: true,
        enabled: cx.bool(section, ENABLED, SECTION, false)?,
        command,
        format,
        timeout,
        concurrency,
    })
}

/// The section in `config.yml` shape for `berth config check`; absent when the file had none.
pub(crate) fn emit(scan: &ScanConfig) -> Option<Value> {
    if !scan.configured {
        return None;
    }
    let mut m = Mapping::new();
    m.insert(ENABLED.into(), scan.enabled.into());
    m.insert(COMMAND.into(), scan.command.clone().into());
    m.insert(FORMAT.into(), scan.format.as_str().into());
    m.insert(TIMEOUT.into(), format_go_duration(scan.timeout).into());
    m.insert(CONCURRENCY.into(), u64::from(scan.concurrency).into());
    Some(Value::Mapping(m))
}
