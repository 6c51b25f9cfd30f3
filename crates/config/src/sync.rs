//! `sync` (Berth extension): a skopeo sync file that `berth serve` runs periodically into its
//! own storage (`berth sync` into local repositories), to keep a private copy of upstream
//! images or pre-seed what clients will pull. This module is the one place for these keys:
//! schema (unknown keys warn, `REGISTRY_SYNC_*` overrides apply), typed model, reading, and
//! writing them back for `berth config check`.
//!
//! ```yaml
//! sync:
//!   file: /etc/berth/sync.yml   # skopeo sync's YAML (required)
//!   interval: 6h                # between runs; the first starts with the server (1m to 30d)
//!   prefix: mirror              # local repositories go under this prefix (default: none)
//!   scoped: false               # PREFIX/<registry>/<repository> instead of PREFIX/<last component>
//!   referrers: false            # copy signatures, SBOMs and other referrers too
//!   imagesatonce: 2             # images copied at the same time (1 to 64)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::duration::{format_go_duration, go_duration};
use crate::error::ConfigError;
use crate::keys::{closed, join, yes, Node, SCALAR};
use crate::values::{get, Cx};

/// The section's key, at the top level of `config.yml`.
pub(crate) const SECTION: &str = "sync";
const FILE: &str = "file";
const INTERVAL: &str = "interval";
const PREFIX: &str = "prefix";
const SCOPED: &str = "scoped";
const REFERRERS: &str = "referrers";
const IMAGES_AT_ONCE: &str = "imagesatonce";

const MIN_INTERVAL: Duration = Duration::from_secs(60);
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The schema of `sync`, hung under the root of [`crate::keys::ROOT`].
pub(crate) static KEYS: Node = closed(&[
    yes(FILE, &SCALAR),
    yes(INTERVAL, &SCALAR),
    yes(PREFIX, &SCALAR),
    yes(SCOPED, &SCALAR),
    yes(REFERRERS, &SCALAR),
    yes(IMAGES_AT_ONCE, &SCALAR),
]);

/// `sync` (Berth extension): a sync file run periodically by `berth serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConfig {
    /// `sync.file`: the skopeo sync YAML; `None` when the section is absent (no sync runs).
    pub file: Option<PathBuf>,
    /// `sync.interval`, default 6h.
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// `sync.prefix`: where the copies go in the local storage.
    pub prefix: Option<String>,
    /// `sync.scoped`, default false.
    pub scoped: bool,
    /// `sync.referrers`, default false.
    pub referrers: bool,
    /// `sync.imagesatonce`, default 2.
    pub images_at_once: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            file: None,
            interval: Duration::from_secs(6 * 3600),
            prefix: None,
            scoped: false,
            referrers: false,
            images_at_once: 2,
        }
    }
}

/// Reads `sync` from the top level, with the defaults for anything unset.
pub(crate) fn extract(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<SyncConfig, ConfigError> {
    let defaults = SyncConfig::default();
    let Some(map) = cx.section(root, SECTION, "")? else {
        return Ok(defaults);
    };
    let section = Some(map);
    let file = cx.required(section, FILE, SECTION, "the skopeo sync file to run")?;
    let interval = match cx.opt_duration(section, INTERVAL, SECTION)? {
        None => defaults.interval,
        Some(d) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) => d,
        Some(_) => {
            let value = get(section, INTERVAL).cloned().unwrap_or(Value::Null);
            return Err(cx.invalid(
                &join(SECTION, INTERVAL),
                &value,
                "a duration from 1m to 30d",
            ));
        }
    };
    let prefix = match cx.opt_string(section, PREFIX, SECTION)? {
        Some(p) if !valid_prefix(&p) => {
            return Err(cx.invalid(
                &join(SECTION, PREFIX),
                &Value::String(p),
                "a repository path such as \"mirror\" or \"team/mirror\"",
            ))
        }
        other => other.map(|p| p.trim_matches('/').to_owned()),
    };
    Ok(SyncConfig {
        file: Some(PathBuf::from(file)),
        interval,
        prefix,
        scoped: cx.bool(section, SCOPED, SECTION, false)?,
        referrers: cx.bool(section, REFERRERS, SECTION, false)?,
        images_at_once: cx
            .opt_uint_in(section, IMAGES_AT_ONCE, SECTION, 1, 64)?
            .map_or(defaults.images_at_once, |n| n as u32),
    })
}

/// Lower-case path components of letters, digits and `._-`, as repository names have.
fn valid_prefix(p: &str) -> bool {
    let p = p.trim_matches('/');
    !p.is_empty()
        && p.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// The section in `config.yml` shape for `berth config check`; absent when the file had none.
pub(crate) fn emit(sync: &SyncConfig) -> Option<Value> {
    let file = sync.file.as_ref()?;
    let mut m = Mapping::new();
    m.insert(FILE.into(), file.display().to_string().into());
    m.insert(INTERVAL.into(), format_go_duration(sync.interval).into());
    if let Some(p) = &sync.prefix {
        m.insert(PREFIX.into(), p.clone().into());
    }
    m.insert(SCOPED.into(), sync.scoped.into());
    m.insert(REFERRERS.into(), sync.referrers.into());
    m.insert(IMAGES_AT_ONCE.into(), u64::from(sync.images_at_once).into());
    Some(Value::Mapping(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(valid_prefix("mirror"));
        assert!(valid_prefix("team/mirror-1/"));
        assert!(!valid_prefix("Mirror"));
        assert!(!valid_prefix("a//b"));
        assert!(!valid_prefix(""));
    }
}
