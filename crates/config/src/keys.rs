//! The shape of registry:2's `config.yml` (every key of Distribution 2.8, plus the 3.x additions
//! users may carry over), which of those keys Berth implements, and the walk that turns keys
//! into warnings: "not supported by Berth yet" for known-but-unimplemented keys, "unknown" (with a
//! "did you mean") for typos. The same schema tells the `REGISTRY_*` override code which path
//! segments are fixed keys, free-form maps or list indices.

use serde_yaml::{Mapping, Value};

/// Whether Berth acts on a key registry:2 knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Support {
    /// Berth implements it (or parses it so the server can refuse it explicitly).
    Yes,
    /// registry:2 knows it, Berth ignores it with a warning.
    No,
}

/// One node of the configuration schema.
#[derive(Debug)]
pub(crate) enum Node {
    /// A scalar: string, number, boolean or duration.
    Scalar,
    /// Free-form content that is not checked (driver parameters, `log.fields`, ...).
    Any,
    /// A fixed set of keys. `open` sections also accept other keys without warning (storage
    /// drivers and auth providers are named by their key).
    Struct {
        fields: &'static [Field],
        open: bool,
    },
    /// A map with arbitrary keys whose values all follow one node (HTTP headers).
    Map(&'static Node),
    /// A list whose items follow one node.
    Seq(&'static Node),
}

/// A named key of a [`Node::Struct`].
#[derive(Debug)]
pub(crate) struct Field {
    /// The key as registry:2 spells it (always lower case).
    pub name: &'static str,
    /// Whether Berth implements it.
    pub support: Support,
    /// The shape of its value.
    pub node: &'static Node,
}

pub(crate) const fn yes(name: &'static str, node: &'static Node) -> Field {
    Field {
        name,
        support: Support::Yes,
        node,
    }
}

const fn no(name: &'static str, node: &'static Node) -> Field {
    Field {
        name,
        support: Support::No,
        node,
    }
}

pub(crate) const fn closed(fields: &'static [Field]) -> Node {
    Node::Struct {
        fields,
        open: false,
    }
}

pub(crate) static SCALAR: Node = Node::Scalar;
static ANY: Node = Node::Any;
pub(crate) static SCALARS: Node = Node::Seq(&SCALAR);
static HEADERS: Node = Node::Map(&ANY);

static ACCESSLOG: Node = closed(&[yes("disabled", &SCALAR)]);
static LOG: Node = closed(&[
    yes("accesslog", &ACCESSLOG),
    yes("level", &SCALAR),
    yes("formatter", &SCALAR),
    yes("fields", &ANY),
    no("hooks", &ANY),
    no("reportcaller", &SCALAR),
]);

static FILESYSTEM: Node = closed(&[
    yes("rootdirectory", &SCALAR),
    yes("maxthreads", &SCALAR),
    yes("fsync", &SCALAR),
]);
static INMEMORY: Node = closed(&[]);
/// registry:2's `storage.s3` parameters (2.8 and 3.x). Berth reads them all; the ones it has no
/// use for are warned about in `extract` when set to something that would matter.
static S3: Node = closed(&[
    yes("accesskey", &SCALAR),
    yes("secretkey", &SCALAR),
    yes("sessiontoken", &SCALAR),
    yes("region", &SCALAR),
    yes("regionendpoint", &SCALAR),
    yes("forcepathstyle", &SCALAR),
    yes("bucket", &SCALAR),
    yes("encrypt", &SCALAR),
    yes("keyid", &SCALAR),
    yes("secure", &SCALAR),
    yes("skipverify", &SCALAR),
    yes("v4auth", &SCALAR),
    yes("chunksize", &SCALAR),
    yes("multipartcopychunksize", &SCALAR),
    yes("multipartcopymaxconcurrency", &SCALAR),
    yes("multipartcopythresholdsize", &SCALAR),
    yes("rootdirectory", &SCALAR),
    yes("storageclass", &SCALAR),
    yes("useragent", &SCALAR),
    yes("usedualstack", &SCALAR),
    yes("accelerate", &SCALAR),
    yes("objectacl", &SCALAR),
    yes("loglevel", &SCALAR),
    // Berth extensions: credentials from files (Kubernetes secrets).
    yes("accesskey_file", &SCALAR),
    yes("secretkey_file", &SCALAR),
]);
static DELETE: Node = closed(&[yes("enabled", &SCALAR)]);
static REDIRECT: Node = closed(&[yes("disable", &SCALAR)]);
static CACHE: Node = closed(&[
    yes("blobdescriptor", &SCALAR),
    yes("blobdescriptorsize", &SCALAR),
    yes("layerinfo", &SCALAR),
]);
static UPLOADPURGING: Node = closed(&[
    yes("enabled", &SCALAR),
    yes("age", &SCALAR),
    yes("interval", &SCALAR),
    yes("dryrun", &SCALAR),
]);
static READONLY: Node = closed(&[yes("enabled", &SCALAR)]);
/// Berth extension: online garbage collection (docs/lifecycle.md).
static GC: Node = closed(&[
    yes("enabled", &SCALAR),
    yes("interval", &SCALAR),
    yes("delay", &SCALAR),
    yes("dryrun", &SCALAR),
]);
/// Berth extension: disk watermarks (docs/lifecycle.md).
static DISKWATERMARK: Node = closed(&[
    yes("enabled", &SCALAR),
    yes("warn", &SCALAR),
    yes("refuse", &SCALAR),
    yes("interval", &SCALAR),
]);
/// Berth extension: retention policies (docs/lifecycle.md, crate::retention).
static RETENTION_POLICY: Node = closed(&[
    yes("repositories", &SCALARS),
    yes("keeplast", &SCALAR),
    yes("olderthan", &SCALAR),
    yes("keeptags", &SCALARS),
    yes("deletetags", &SCALARS),
    yes("deleteuntagged", &SCALAR),
]);
static RETENTION: Node = closed(&[
    yes("enabled", &SCALAR),
    yes("interval", &SCALAR),
    yes("dryrun", &SCALAR),
    yes("policies", &Node::Seq(&RETENTION_POLICY)),
]);
static MAINTENANCE: Node = closed(&[
    yes("diskwatermark", &DISKWATERMARK),
    yes("uploadpurging", &UPLOADPURGING),
    yes("readonly", &READONLY),
    yes("gc", &GC),
    yes("retention", &RETENTION),
]);
static TAG: Node = closed(&[yes("concurrencylimit", &SCALAR)]);
/// Storage drivers registry:2 ships; any other key under `storage` is an unknown driver.
pub(crate) const KNOWN_DRIVERS: &[&str] = &[
    "filesystem",
    "inmemory",
    "s3",
    "gcs",
    "azure",
    "swift",
    "oss",
];
/// Keys under `storage` that are settings, not drivers (registry:2's exception list).
pub(crate) const STORAGE_SETTINGS: &[&str] = &["delete", "cache", "maintenance", "redirect", "tag"];
static STORAGE: Node = Node::Struct {
    fields: &[
        yes("filesystem", &FILESYSTEM),
        yes("inmemory", &INMEMORY),
        yes("s3", &S3),
        yes("gcs", &ANY),
        yes("azure", &ANY),
        yes("swift", &ANY),
        yes("oss", &ANY),
        yes("delete", &DELETE),
        yes("redirect", &REDIRECT),
        yes("cache", &CACHE),
        yes("maintenance", &MAINTENANCE),
        no("tag", &TAG),
    ],
    open: true,
};

static HTPASSWD: Node = closed(&[yes("realm", &SCALAR), yes("path", &SCALAR)]);
static TOKEN: Node = closed(&[
    yes("realm", &SCALAR),
    yes("service", &SCALAR),
    yes("issuer", &SCALAR),
    yes("rootcertbundle", &SCALAR),
    yes("jwks", &SCALAR),
    yes("autoredirect", &SCALAR),
    yes("autoredirectpath", &SCALAR),
    no("signingalgorithms", &SCALARS),
    // Berth extension: the built-in token server (docs/security.md), checked by berth-auth.
    yes("builtin", &ANY),
]);
static SILLY: Node = closed(&[yes("realm", &SCALAR), yes("service", &SCALAR)]);
static AUTH: Node = Node::Struct {
    fields: &[
        yes("htpasswd", &HTPASSWD),
        yes("token", &TOKEN),
        yes("silly", &SILLY),
        // Berth extension: OIDC sign-in beside the built-in token server (crate::oidc).
        yes(crate::oidc::KEY, &crate::oidc::KEYS),
    ],
    open: true,
};

static LETSENCRYPT: Node = closed(&[
    yes("cachefile", &SCALAR),
    yes("email", &SCALAR),
    yes("hosts", &SCALARS),
    yes("directoryurl", &SCALAR),
]);
static TLS: Node = closed(&[
    yes("certificate", &SCALAR),
    yes("key", &SCALAR),
    yes("clientcas", &SCALARS),
    yes("minimumtls", &SCALAR),
    no("ciphersuites", &SCALARS),
    no("letsencrypt", &LETSENCRYPT),
    no("clientauth", &SCALAR),
]);
static PROMETHEUS: Node = closed(&[yes("enabled", &SCALAR), yes("path", &SCALAR)]);
static DEBUG: Node = closed(&[yes("addr", &SCALAR), yes("prometheus", &PROMETHEUS)]);
static HTTP2: Node = closed(&[yes("disabled", &SCALAR)]);
static H2C: Node = closed(&[yes("enabled", &SCALAR)]);
static HTTP: Node = closed(&[
    yes("addr", &SCALAR),
    yes("net", &SCALAR),
    yes("prefix", &SCALAR),
    yes("host", &SCALAR),
    yes("secret", &SCALAR),
    yes("relativeurls", &SCALAR),
    yes("draintimeout", &SCALAR),
    yes("tls", &TLS),
    yes("headers", &HEADERS),
    yes("debug", &DEBUG),
    yes("http2", &HTTP2),
    no("h2c", &H2C),
]);

static IGNORE: Node = closed(&[yes("mediatypes", &SCALARS), yes("actions", &SCALARS)]);
static ENDPOINT: Node = closed(&[
    yes("name", &SCALAR),
    yes("disabled", &SCALAR),
    yes("url", &SCALAR),
    yes("headers", &HEADERS),
    yes("timeout", &SCALAR),
    yes("threshold", &SCALAR),
    yes("backoff", &SCALAR),
    yes("ignoredmediatypes", &SCALARS),
    yes("ignore", &IGNORE),
]);
static ENDPOINTS: Node = Node::Seq(&ENDPOINT);
static EVENTS: Node = closed(&[yes("includereferences", &SCALAR)]);
static NOTIFICATIONS: Node = closed(&[yes("events", &EVENTS), yes("endpoints", &ENDPOINTS)]);

static STORAGEDRIVER_CHECK: Node = closed(&[
    yes("enabled", &SCALAR),
    yes("interval", &SCALAR),
    yes("threshold", &SCALAR),
]);
static FILE_CHECK: Node = closed(&[
    yes("file", &SCALAR),
    yes("interval", &SCALAR),
    yes("threshold", &SCALAR),
]);
static HTTP_CHECK: Node = closed(&[
    yes("uri", &SCALAR),
    yes("headers", &HEADERS),
    yes("statuscode", &SCALAR),
    yes("timeout", &SCALAR),
    yes("interval", &SCALAR),
    yes("threshold", &SCALAR),
]);
static TCP_CHECK: Node = closed(&[
    yes("addr", &SCALAR),
    yes("timeout", &SCALAR),
    yes("interval", &SCALAR),
    yes("threshold", &SCALAR),
]);
static FILE_CHECKS: Node = Node::Seq(&FILE_CHECK);
static HTTP_CHECKS: Node = Node::Seq(&HTTP_CHECK);
static TCP_CHECKS: Node = Node::Seq(&TCP_CHECK);
static HEALTH: Node = closed(&[
    yes("storagedriver", &STORAGEDRIVER_CHECK),
    yes("file", &FILE_CHECKS),
    yes("http", &HTTP_CHECKS),
    yes("tcp", &TCP_CHECKS),
]);

static UPSTREAM: Node = closed(&[
    yes("host", &SCALAR),
    yes("url", &SCALAR),
    yes("username", &SCALAR),
    yes("password", &SCALAR),
    yes("ttl", &SCALAR),
    yes("proxy", &SCALAR),
    yes("timeout", &SCALAR),
    yes("allowprivateredirects", &SCALAR),
    yes("cache", &UPSTREAM_CACHE),
]);
static UPSTREAM_CACHE: Node = closed(&[yes("maxsize", &SCALAR), yes("maxage", &SCALAR)]);
static PROXY_CACHE: Node = closed(&[
    yes("maxsize", &SCALAR),
    yes("maxage", &SCALAR),
    yes("interval", &SCALAR),
]);
static UPSTREAMS: Node = Node::Seq(&UPSTREAM);
static PROXY: Node = closed(&[
    yes("remoteurl", &SCALAR),
    yes("username", &SCALAR),
    yes("password", &SCALAR),
    yes("ttl", &SCALAR),
    // Berth extensions: many upstreams in one instance.
    yes("upstreams", &UPSTREAMS),
    yes("default", &SCALAR),
    yes("private", &SCALARS),
    yes("cache", &PROXY_CACHE),
    // Berth extension: where cold blobs are spooled while they download.
    yes("spooldir", &SCALAR),
    no("exec", &ANY),
    no("remotenamespace", &SCALAR),
]);

/// The whole `config.yml`.
pub(crate) static ROOT: Node = closed(&[
    yes("version", &SCALAR),
    yes("log", &LOG),
    yes("loglevel", &SCALAR),
    yes("storage", &STORAGE),
    yes("auth", &AUTH),
    no("middleware", &ANY),
    no("reporting", &ANY),
    yes("http", &HTTP),
    yes("notifications", &NOTIFICATIONS),
    no("redis", &ANY),
    yes("health", &HEALTH),
    no("catalog", &ANY),
    yes("proxy", &PROXY),
    no("compatibility", &ANY),
    no("validation", &ANY),
    no("policy", &ANY),
    // Berth extension: login failure limits and the manifest reference cap (crate::limits).
    yes(crate::limits::SECTION, &crate::limits::KEYS),
    // Berth extension: several nodes on one storage (crate::cluster).
    yes(crate::cluster::SECTION, &crate::cluster::KEYS),
    // Berth extension: the embedded web UI (crate::ui).
    yes(crate::ui::SECTION, &crate::ui::KEYS),
    // Berth extension: the scanner of `berth scan` (crate::scan).
    yes(crate::scan::SECTION, &crate::scan::KEYS),
    // Berth extension: a sync file run periodically by serve (crate::sync).
    yes(crate::sync::SECTION, &crate::sync::KEYS),
]);

/// Finds a field by name, ignoring ASCII case (registry:2 upper-cases names for env matching).
pub(crate) fn find_field(fields: &'static [Field], name: &str) -> Option<&'static Field> {
    fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// The text of a mapping key (keys are normally strings; numbers and booleans are shown as-is).
pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Joins a parent path and a key into a dotted path.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Renames keys written in another case (`HTTP`, `Addr`) to registry:2's spelling, everywhere
/// the schema fixes the key names, so later steps can look keys up exactly.
pub(crate) fn canonicalize(node: &'static Node, value: &mut Value) {
    match (node, value) {
        (Node::Struct { fields, .. }, Value::Mapping(map)) => {
            canonicalize_keys(fields, map);
            for (key, child) in map.iter_mut() {
                if let Some(field) = fields.iter().find(|f| key.as_str() == Some(f.name)) {
                    canonicalize(field.node, child);
                }
            }
        }
        (Node::Map(inner), Value::Mapping(map)) => map
            .iter_mut()
            .for_each(|(_, child)| canonicalize(inner, child)),
        (Node::Seq(inner), Value::Sequence(items)) => items
            .iter_mut()
            .for_each(|child| canonicalize(inner, child)),
        _ => {}
    }
}

/// Appends a warning for every key Berth ignores: known to registry:2 but not implemented, or
/// unknown (with a suggestion). Expects [`canonicalize`] to have run.
pub(crate) fn check(node: &'static Node, value: &Value, path: &str, warnings: &mut Vec<String>) {
    match (node, value) {
        (Node::Struct { fields, open }, Value::Mapping(map)) => {
            for (key, child) in map {
                let name = key_text(key);
                let child_path = join(path, &name);
                match fields.iter().find(|f| f.name == name) {
                    Some(field) if field.support == Support::No => {
                        if !is_empty(child) {
                            warnings.push(format!(
                                "config key \"{child_path}\" is not supported by Berth yet and is ignored"
                            ));
                        }
                    }
                    Some(field) => check(field.node, child, &child_path, warnings),
                    None if *open => {}
                    None => warnings.push(unknown_key_warning(fields, &name, &child_path)),
                }
            }
        }
        (Node::Map(inner), Value::Mapping(map)) => {
            for (key, child) in map {
                check(inner, child, &join(path, &key_text(key)), warnings);
            }
        }
        (Node::Seq(inner), Value::Sequence(items)) => {
            for (i, child) in items.iter().enumerate() {
                check(inner, child, &format!("{path}[{i}]"), warnings);
            }
        }
        _ => {}
    }
}

/// Null, empty maps and empty lists carry no setting, so ignoring them needs no warning.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Mapping(m) => m.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        _ => false,
    }
}

/// Renames keys that match a field only when case is ignored (`Addr` -> `addr`), keeping order.
fn canonicalize_keys(fields: &'static [Field], map: &mut Mapping) {
    let needs_rename = map.keys().any(|k| match k {
        Value::String(s) => !fields.iter().any(|f| f.name == s) && find_field(fields, s).is_some(),
        _ => false,
    });
    if !needs_rename {
        return;
    }
    let old = std::mem::take(map);
    for (key, value) in old {
        let key = match &key {
            Value::String(s) if !fields.iter().any(|f| f.name == s) => {
                match find_field(fields, s) {
                    Some(field) if !map.contains_key(field.name) => {
                        Value::String(field.name.to_owned())
                    }
                    _ => key,
                }
            }
            _ => key,
        };
        map.insert(key, value);
    }
}

/// The warning for a key registry:2 does not know, with a suggestion when one is close.
fn unknown_key_warning(fields: &'static [Field], name: &str, path: &str) -> String {
    let parent = path.strip_suffix(name).unwrap_or("");
    let mut text = format!("unknown config key \"{path}\" (ignored)");
    if let Some(best) = closest(fields.iter().map(|f| f.name), name) {
        text.push_str(&format!("; did you mean \"{parent}{best}\"?"));
    } else if let Some(elsewhere) = find_anywhere(name) {
        text.push_str(&format!("; did you mean \"{elsewhere}\"?"));
    }
    text
}

/// The candidate closest to `name` by edit distance, if close enough to be a plausible typo.
pub(crate) fn closest<'a>(
    candidates: impl Iterator<Item = &'a str>,
    name: &str,
) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    let limit = match name.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        6..=9 => 2,
        _ => 3,
    };
    candidates
        .map(|c| (edit_distance(c, &name), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The full path of a key with this exact name somewhere else in the schema (for a key written
/// at the wrong level, like a top-level `rootdirectory`).
fn find_anywhere(name: &str) -> Option<String> {
    fn search(node: &'static Node, path: &str, name: &str) -> Option<String> {
        match node {
            Node::Struct { fields, .. } => fields.iter().find_map(|f| {
                let p = join(path, f.name);
                if f.name.eq_ignore_ascii_case(name) && f.support == Support::Yes {
                    Some(p)
                } else {
                    search(f.node, &p, name)
                }
            }),
            Node::Seq(inner) => search(inner, &format!("{path}[0]"), name),
            _ => None,
        }
    }
    search(&ROOT, "", name)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("addr", "adr"), 1);
        assert_eq!(edit_distance("level", "levle"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["addr", "net", "prefix", "host"];
        assert_eq!(closest(names.iter().copied(), "adr"), Some("addr"));
        assert_eq!(closest(names.iter().copied(), "Prefx"), Some("prefix"));
        assert_eq!(closest(names.iter().copied(), "banana"), None);
        assert_eq!(
            find_anywhere("rootdirectory").as_deref(),
            Some("storage.filesystem.rootdirectory")
        );
        assert_eq!(
            find_anywhere("remoteurl").as_deref(),
            Some("proxy.remoteurl")
        );
    }
}
