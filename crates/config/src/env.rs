//! `REGISTRY_*` environment overrides with registry:2's semantics (its `configuration/parser.go`):
//! `REGISTRY_HTTP_ADDR` replaces `http.addr`; each `_` goes one level down; the value is parsed
//! as YAML, so `REGISTRY_STORAGE_MAINTENANCE_READONLY='{enabled: true}'` sets a whole section;
//! variables are applied in lexical order so `REGISTRY_STORAGE=s3` is applied before
//! `REGISTRY_STORAGE_S3_BUCKET`; missing intermediate maps are created; list items are addressed
//! by index (`REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL`, index = length appends).
//!
//! Differences, all in the direction of "works where registry:2 crashes or silently ignores":
//! key matching ignores case on both sides, an existing key keeps its spelling (so
//! `REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS` replaces `X-Frame-Options` instead of adding a
//! second, lower-cased header), overrides below a free-form value (e.g.
//! `REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED`) work, a value that is not valid YAML is
//! taken as a plain string, and a variable naming no known key is a warning.

use serde_yaml::{Mapping, Value};

use crate::error::ConfigError;
use crate::keys::{closest, find_field, join, key_text, Field, Node, ROOT};

/// The prefix of override variables.
pub const ENV_PREFIX: &str = "REGISTRY_";

/// Where a value in the tree came from: `(key path, variable name)` for each applied override.
pub(crate) type Origins = Vec<(String, String)>;

/// Applies every `REGISTRY_*` variable of `env` to `root` (a mapping), in lexical order.
/// Returns the key path each variable set, for error messages; unknown keys become warnings.
pub(crate) fn apply(
    root: &mut Value,
    env: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<Origins, ConfigError> {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut origins = Origins::new();
    for (name, payload) in vars {
        let segments: Vec<&str> = name[ENV_PREFIX.len()..].split('_').collect();
        if segments.iter().any(|s| s.is_empty()) {
            warnings.push(format!(
                "environment variable {name} does not name a config key (ignored)"
            ));
            continue;
        }
        if let Err(suggestion) = validate(&ROOT, &segments, ENV_PREFIX) {
            let mut text = format!(
                "environment variable {name} does not match any registry:2 config key (ignored)"
            );
            if let Some(s) = suggestion {
                text.push_str(&format!("; did you mean {s}?"));
            }
            warnings.push(text);
            continue;
        }
        let path = set(&ROOT, root, &segments, "", payload, name)?;
        origins.push((path, name.clone()));
        normalize_short_forms(root);
    }
    Ok(origins)
}

/// registry:2 accepts `storage: inmemory` and `auth: silly` as short forms of a single-key map;
/// turn them into maps so the rest of the code (and later overrides) see one shape.
pub(crate) fn normalize_short_forms(root: &mut Value) {
    let Value::Mapping(map) = root else { return };
    for section in ["storage", "auth"] {
        if let Some(value) = map.get_mut(section) {
            if let Value::String(name) = value {
                let mut m = Mapping::new();
                m.insert(Value::String(name.clone()), Value::Null);
                *value = Value::Mapping(m);
            }
        }
    }
}

/// Checks, without touching the tree, that `segments` names a key of `node`. On failure returns
/// a close variable name to suggest, if there is one. `prefix` is the variable name so far.
fn validate(node: &'static Node, segments: &[&str], prefix: &str) -> Result<(), Option<String>> {
    let Some((segment, rest)) = segments.split_first() else {
        return Ok(());
    };
    match node {
        Node::Scalar => Err(None),
        Node::Any => Ok(()),
        Node::Map(inner) => validate(inner, rest, &format!("{prefix}{segment}_")),
        Node::Seq(inner) => validate(inner, rest, &format!("{prefix}{segment}_")),
        Node::Struct { fields, open } => match match_field(fields, segments) {
            Some((field, taken)) => validate(
                field.node,
                &segments[taken..],
                &format!("{prefix}{}_", field.name.to_ascii_uppercase()),
            ),
            None if *open => Ok(()),
            None => Err(closest(fields.iter().map(|f| f.name), segment).map(|best| {
                let mut name = format!("{prefix}{}", best.to_ascii_uppercase());
                for s in rest {
                    name.push('_');
                    name.push_str(s);
                }
                name
            })),
        },
    }
}

/// The field named by the longest run of leading `segments` joined with `_`, and how many
/// segments it took: `REGISTRY_STORAGE_S3_ACCESSKEY_FILE` reaches `accesskey_file`, whose name
/// has the separator in it, instead of a `file` key below `accesskey`.
fn match_field(fields: &'static [Field], segments: &[&str]) -> Option<(&'static Field, usize)> {
    (1..=segments.len())
        .rev()
        .find_map(|n| find_field(fields, &segments[..n].join("_")).map(|field| (field, n)))
}

/// Sets `segments` (relative to `value`, whose shape is `node`) to the YAML value of `payload`.
fn set(
    node: &'static Node,
    value: &mut Value,
    segments: &[&str],
    path: &str,
    payload: &str,
    var: &str,
) -> Result<String, ConfigError> {
    let Some((segment, rest)) = segments.split_first() else {
        return Ok(path.to_owned());
    };
    match node {
        // `validate` rejected paths that go below a scalar; treat one like free-form content.
        Node::Scalar => descend_map(
            value,
            &segment.to_ascii_lowercase(),
            &ANY,
            rest,
            path,
            payload,
            var,
        ),
        Node::Struct { fields, .. } => match match_field(fields, segments) {
            Some((field, taken)) => descend_map(
                value,
                field.name,
                field.node,
                &segments[taken..],
                path,
                payload,
                var,
            ),
            None => descend_map(
                value,
                &segment.to_ascii_lowercase(),
                &ANY,
                rest,
                path,
                payload,
                var,
            ),
        },
        Node::Map(inner) => descend_map(
            value,
            &segment.to_ascii_lowercase(),
            inner,
            rest,
            path,
            payload,
            var,
        ),
        // Free-form content may hold lists (middleware entries): index them like a list node.
        Node::Any if matches!(value, Value::Sequence(_)) => {
            set(&ANY_SEQ, value, segments, path, payload, var)
        }
        Node::Any => descend_map(
            value,
            &segment.to_ascii_lowercase(),
            &ANY,
            rest,
            path,
            payload,
            var,
        ),
        Node::Seq(inner) => {
            let index: usize = segment.parse().map_err(|_| ConfigError::Env {
                var: var.to_owned(),
                message: format!("{path}: {segment:?} is not a list index (use 0, 1, ...)"),
            })?;
            if !matches!(value, Value::Sequence(_)) {
                *value = Value::Sequence(Vec::new());
            }
            let Value::Sequence(items) = value else {
                unreachable!("just made a sequence")
            };
            if index > items.len() {
                return Err(ConfigError::Env {
                    var: var.to_owned(),
                    message: format!(
                        "{path}: index {index} is past the end of the list ({} items; use {} to append)",
                        items.len(),
                        items.len()
                    ),
                });
            }
            if index == items.len() {
                items.push(Value::Null);
            }
            let child_path = format!("{path}[{index}]");
            if rest.is_empty() {
                items[index] = parse_payload(payload);
                Ok(child_path)
            } else {
                set(inner, &mut items[index], rest, &child_path, payload, var)
            }
        }
    }
}

static ANY: Node = Node::Any;
static ANY_SEQ: Node = Node::Seq(&ANY);

/// Finds (ignoring case) or creates `key` in the mapping `value`, then sets or descends.
fn descend_map(
    value: &mut Value,
    key: &str,
    child_node: &'static Node,
    rest: &[&str],
    path: &str,
    payload: &str,
    var: &str,
) -> Result<String, ConfigError> {
    if !matches!(value, Value::Mapping(_)) {
        *value = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = value else {
        unreachable!("just made a mapping")
    };
    let existing = map
        .keys()
        .find(|k| key_text(k).eq_ignore_ascii_case(key))
        .cloned();
    let map_key = existing.unwrap_or_else(|| Value::String(key.to_owned()));
    let child_path = join(path, &key_text(&map_key));
    if rest.is_empty() {
        map.insert(map_key, parse_payload(payload));
        return Ok(child_path);
    }
    let child = map.entry(map_key).or_insert(Value::Null);
    set(child_node, child, rest, &child_path, payload, var)
}

/// Parses an override value as YAML, like registry:2. Text that is not valid YAML is kept as
/// a plain string, and so is a number whose YAML reading would change its text (`0123`,
/// `1e3`), so secrets and passwords arrive exactly as written.
pub(crate) fn parse_payload(payload: &str) -> Value {
    if payload.trim().is_empty() {
        return Value::Null;
    }
    match serde_yaml::from_str::<Value>(payload) {
        Ok(Value::Number(n)) if n.to_string() != payload.trim() => {
            Value::String(payload.to_owned())
        }
        Ok(value) => value,
        Err(_) => Value::String(payload.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).expect("test yaml")
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn payloads_are_yaml_but_keep_their_text() {
        assert_eq!(parse_payload("true"), Value::Bool(true));
        assert_eq!(parse_payload("5"), tree("5"));
        assert_eq!(parse_payload("0123"), Value::String("0123".into()));
        assert_eq!(parse_payload("{enabled: true}"), tree("enabled: true"));
        assert_eq!(parse_payload("*notyaml"), Value::String("*notyaml".into()));
        assert_eq!(parse_payload(""), Value::Null);
        assert_eq!(parse_payload(":5000"), Value::String(":5000".into()));
    }

    #[test]
    fn applies_in_lexical_order_and_records_origins() {
        let mut root = tree("storage: {filesystem: {rootdirectory: /a}, delete: {enabled: false}}");
        let mut warnings = Vec::new();
        let origins = apply(
            &mut root,
            &env(&[
                ("REGISTRY_STORAGE_S3_BUCKET", "b"),
                ("REGISTRY_STORAGE", "s3"),
                ("OTHER", "x"),
            ]),
            &mut warnings,
        )
        .expect("applies");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(root, tree("storage: {s3: {bucket: b}}"));
        assert_eq!(
            origins,
            vec![
                ("storage".into(), "REGISTRY_STORAGE".into()),
                (
                    "storage.s3.bucket".into(),
                    "REGISTRY_STORAGE_S3_BUCKET".into()
                )
            ]
        );
    }

    #[test]
    fn list_indices_append_or_fail() {
        let mut root = tree("notifications: {endpoints: [{name: a}]}");
        let mut warnings = Vec::new();
        apply(
            &mut root,
            &env(&[("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_NAME", "b")]),
            &mut warnings,
        )
        .expect("append");
        assert_eq!(
            root,
            tree("notifications: {endpoints: [{name: a}, {name: b}]}")
        );
        let err = apply(
            &mut root,
            &env(&[("REGISTRY_NOTIFICATIONS_ENDPOINTS_5_NAME", "c")]),
            &mut warnings,
        )
        .expect_err("rejected");
        assert!(
            err.to_string()
                .contains("REGISTRY_NOTIFICATIONS_ENDPOINTS_5_NAME"),
            "{err}"
        );
        let err = apply(
            &mut root,
            &env(&[("REGISTRY_NOTIFICATIONS_ENDPOINTS_X_NAME", "c")]),
            &mut warnings,
        )
        .expect_err("rejected");
        assert!(err.to_string().contains("not a list index"), "{err}");
    }

    #[test]
    fn unknown_variables_warn_with_suggestion() {
        let mut root = tree("version: 0.1");
        let mut warnings = Vec::new();
        apply(
            &mut root,
            &env(&[("REGISTRY_HTTP_ADR", "x"), ("REGISTRY_", "y")]),
            &mut warnings,
        )
        .expect("applies");
        assert_eq!(root, tree("version: 0.1"), "nothing applied");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings.iter().any(|w| w.contains("REGISTRY_HTTP_ADR ")
                && w.contains("did you mean REGISTRY_HTTP_ADDR?")),
            "{warnings:?}"
        );
    }
}
