//! Typed reads from the YAML tree with registry:2's leniency (YAML 1.1 booleans such as `yes`,
//! any scalar where a string is expected, bare integers as nanosecond durations) and errors that
//! name the key path and where its value came from.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::duration::parse_go_duration;
use crate::env::Origins;
use crate::error::ConfigError;
use crate::keys::{join, key_text};

/// Extraction context: where values came from, and the warnings collected so far.
pub(crate) struct Cx<'a> {
    /// The config file path as given, or "embedded default".
    pub source: &'a str,
    /// Key paths set by `REGISTRY_*` variables.
    pub origins: &'a Origins,
    /// Warnings for the operator.
    pub warnings: RefCell<Vec<String>>,
}

impl Cx<'_> {
    /// Records a warning for the operator.
    pub fn warn(&self, text: String) {
        self.warnings.borrow_mut().push(text);
    }

    /// Where the value at `path` came from: the variable that set it (or a parent), else the file.
    pub fn origin(&self, path: &str) -> String {
        self.env_var(path).map_or_else(
            || self.source.to_owned(),
            |var| format!("environment variable {var}"),
        )
    }

    /// The `REGISTRY_*` variable that set `path` or one of its parents, if any.
    pub fn env_var(&self, path: &str) -> Option<&str> {
        self.origins
            .iter()
            .rev()
            .find(|(set, _)| {
                path == set
                    || path
                        .strip_prefix(set.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .map(|(_, var)| var.as_str())
    }

    /// A `REGISTRY_*` variable that set `path` or a key below it, if any.
    pub fn env_var_below(&self, path: &str) -> Option<&str> {
        self.origins
            .iter()
            .find(|(set, _)| {
                set == path
                    || set
                        .strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .map(|(_, var)| var.as_str())
    }

    /// An "invalid value" error for `value` at `path`.
    pub fn invalid(&self, path: &str, value: &Value, expected: &str) -> ConfigError {
        ConfigError::InvalidValue {
            origin: self.origin(path),
            key: path.to_owned(),
            value: show(value),
            expected: expected.to_owned(),
        }
    }

    /// A "missing required key" error.
    pub fn missing(&self, path: &str, hint: &str) -> ConfigError {
        let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
        ConfigError::MissingKey {
            origin: self.origin(parent),
            key: path.to_owned(),
            hint: hint.to_owned(),
        }
    }

    /// The mapping at `key` of `parent`: `None` when absent or null, an error when not a mapping.
    pub fn section<'v>(
        &self,
        parent: Option<&'v Mapping>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v Mapping>, ConfigError> {
        match get(parent, key) {
            None => Ok(None),
            Some(Value::Mapping(m)) => Ok(Some(m)),
            Some(other) => Err(self.invalid(&join(path, key), other, "a mapping of keys")),
        }
    }

    /// A string at `key`: any scalar is accepted as its text (registry:2 does the same).
    /// Empty strings count as absent.
    pub fn opt_string(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
    ) -> Result<Option<String>, ConfigError> {
        match get(parent, key) {
            None => Ok(None),
            Some(v) => match scalar_text(v) {
                Some(s) if s.is_empty() => Ok(None),
                Some(s) => Ok(Some(s)),
                None => Err(self.invalid(&join(path, key), v, "a string")),
            },
        }
    }

    /// `key`, or the content of the file named by `key_file` (one trailing newline dropped).
    pub fn secret(
        &self,
        p: Option<&Mapping>,
        key: &str,
        path: &str,
    ) -> Result<Option<String>, ConfigError> {
        let file_key = format!("{key}_file");
        let inline = self.opt_string(p, key, path)?;
        let Some(file) = self.opt_string(p, &file_key, path)? else {
            return Ok(inline);
        };
        let file_path = join(path, &file_key);
        if inline.is_some() {
            return Err(self.invalid(
                &file_path,
                &file.into(),
                &format!("either {path}.{key} or {file_path}, not both"),
            ));
        }
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let value = text.trim_end_matches(['\r', '\n']);
                if value.is_empty() {
                    return Err(self.invalid(
                        &file_path,
                        &file.into(),
                        &format!("a file holding the {key} (the file is empty)"),
                    ));
                }
                Ok(Some(value.to_owned()))
            }
            Err(e) => Err(self.invalid(
                &file_path,
                &file.into(),
                &format!("a readable file holding the {key} ({e})"),
            )),
        }
    }

    /// A string with a default.
    pub fn string(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
        default: &str,
    ) -> Result<String, ConfigError> {
        Ok(self
            .opt_string(parent, key, path)?
            .unwrap_or_else(|| default.to_owned()))
    }

    /// A required string.
    pub fn required(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
        hint: &str,
    ) -> Result<String, ConfigError> {
        self.opt_string(parent, key, path)?
            .ok_or_else(|| self.missing(&join(path, key), hint))
    }

    /// An optional boolean; accepts YAML 1.1 spellings (`yes`, `on`, ...) like registry:2.
    pub fn opt_bool(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
    ) -> Result<Option<bool>, ConfigError> {
        let Some(v) = get(parent, key) else {
            return Ok(None);
        };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" => Some(true),
                "false" | "no" | "n" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| self.invalid(&join(path, key), v, "a boolean (true or false)"))
    }

    /// A boolean with a default.
    pub fn bool(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        Ok(self.opt_bool(parent, key, path)?.unwrap_or(default))
    }

    /// An optional non-negative integer no larger than `max`.
    pub fn opt_uint(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        self.opt_uint_in(parent, key, path, 0, max)
    }

    /// An optional integer from `min` to `max`.
    pub fn opt_uint_in(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(v) = get(parent, key) else {
            return Ok(None);
        };
        let parsed = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let expected = if min == 0 {
            format!("a whole number from 0 to {max}")
        } else {
            format!("a whole number of at least {min} and at most {max}")
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(self.invalid(&join(path, key), v, &expected)),
        }
    }

    /// A `u32` with a default that also replaces an explicit 0 (registry:2 treats 0 as unset).
    pub fn u32(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
        default: u32,
    ) -> Result<u32, ConfigError> {
        let n = self
            .opt_uint(parent, key, path, u64::from(u32::MAX))?
            .unwrap_or(0);
        Ok(if n == 0 {
            default
        } else {
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }

    /// An optional Go duration. Strings use Go's syntax (`10s`); a bare integer is nanoseconds,
    /// as in registry:2, with a warning because that is rarely what was meant.
    pub fn opt_duration(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = get(parent, key) else {
            return Ok(None);
        };
        let key_path = join(path, key);
        let expected =
            "a duration such as \"10s\", \"1h30m\" or \"300ms\" (units: ns, us, ms, s, m, h)";
        match v {
            Value::String(s) => parse_go_duration(s.trim())
                .map(Some)
                .map_err(|_| self.invalid(&key_path, v, expected)),
            Value::Number(n) => match n.as_u64() {
                Some(nanos) => {
                    if nanos > 0 {
                        self.warn(format!(
                            "{}: {key_path}: the bare number {nanos} is read as {nanos} nanoseconds (as registry:2 does); write e.g. \"{nanos}s\" if you meant seconds",
                            self.origin(&key_path)
                        ));
                    }
                    Ok(Some(Duration::from_nanos(nanos)))
                }
                None => Err(self.invalid(&key_path, v, expected)),
            },
            _ => Err(self.invalid(&key_path, v, expected)),
        }
    }

    /// A duration where unset and zero both mean `default` (registry:2's intervals).
    pub fn duration(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        Ok(self
            .opt_duration(parent, key, path)?
            .filter(|d| !d.is_zero())
            .unwrap_or(default))
    }

    /// A list of strings; a single scalar is accepted as a one-item list.
    pub fn strings(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let key_path = join(path, key);
        match get(parent, key) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter(|(_, item)| !item.is_null())
                .map(|(i, item)| {
                    scalar_text(item)
                        .ok_or_else(|| self.invalid(&format!("{key_path}[{i}]"), item, "a string"))
                })
                .collect(),
            Some(v) => scalar_text(v)
                .map(|s| vec![s])
                .ok_or_else(|| self.invalid(&key_path, v, "a list of strings")),
        }
    }

    /// HTTP headers: a map of header name to a list of values (a single value is accepted too).
    pub fn headers(
        &self,
        parent: Option<&Mapping>,
        key: &str,
        path: &str,
    ) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
        let Some(map) = self.section(parent, key, path)? else {
            return Ok(BTreeMap::new());
        };
        let key_path = join(path, key);
        let mut out = BTreeMap::new();
        for (name, _) in map {
            let name = key_text(name);
            out.insert(name.clone(), self.strings(Some(map), &name, &key_path)?);
        }
        Ok(out)
    }

    /// A list of mappings at `key` (each item checked to be a mapping).
    pub fn items<'v>(
        &self,
        parent: Option<&'v Mapping>,
        key: &str,
        path: &str,
    ) -> Result<Vec<(String, &'v Mapping)>, ConfigError> {
        let key_path = join(path, key);
        match get(parent, key) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let item_path = format!("{key_path}[{i}]");
                    match item {
                        Value::Mapping(m) => Ok((item_path, m)),
                        other => Err(self.invalid(&item_path, other, "a mapping of keys")),
                    }
                })
                .collect(),
            Some(other) => Err(self.invalid(&key_path, other, "a list")),
        }
    }
}

/// The value at `key`, treating null as absent.
pub(crate) fn get<'v>(parent: Option<&'v Mapping>, key: &str) -> Option<&'v Value> {
    parent?.get(key).filter(|v| !v.is_null())
}

/// The text of a scalar (strings as-is, numbers and booleans as written in YAML 1.2).
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short rendering of a value for error messages.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Mapping(_) => "(a mapping)".to_owned(),
        Value::Sequence(_) => "(a list)".to_owned(),
        Value::Tagged(t) => format!("(tagged {})", t.tag),
    }
}

/// A mapping's entries as a sorted map with string keys (driver parameters, extras).
pub(crate) fn params(map: Option<&Mapping>) -> BTreeMap<String, Value> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| (key_text(k), v.clone()))
        .collect()
}
