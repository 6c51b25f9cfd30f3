//! `cluster` (Berth extension): several Berth nodes sharing one storage (an S3 bucket), behind a
//! load balancer. This module is the one place for these keys: schema, typed model, reading,
//! checking, and writing them back for `berth config check`.
//!
//! ```yaml
//! cluster:
//!   node: berth-1        # this node's name in logs and in the jobs lease (default: host name)
//!   jobsnode: berth-1    # only this node runs the background jobs (no lease); unset: a lease
//!                        # in the storage elects one runner where the store honours
//!                        # create-only writes, else every node runs them (with a warning)
//!   pollinterval: 2s     # how often a node reads the cluster-wide read-only flag
//!   leaseduration: 30s   # how long the jobs runner's lease lasts without renewal
//! ```
//!
//! Nothing here is required: a single node needs no `cluster` section. Keys are spelled without
//! underscores so that `REGISTRY_CLUSTER_NODE` and `REGISTRY_CLUSTER_JOBSNODE` work (a Kubernetes
//! pod sets the first from its own name).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::duration::{format_go_duration, go_duration};
use crate::error::ConfigError;
use crate::keys::{closed, join, yes, Node, SCALAR};
use crate::values::{get, Cx};

/// The section's key, at the top level of `config.yml`.
pub(crate) const SECTION: &str = "cluster";
const NODE: &str = "node";
const JOBS_NODE: &str = "jobsnode";
const POLL_INTERVAL: &str = "pollinterval";
const LEASE_DURATION: &str = "leaseduration";

/// The schema of `cluster`, hung under the root of [`crate::keys::ROOT`].
pub(crate) static KEYS: Node = closed(&[
    yes(NODE, &SCALAR),
    yes(JOBS_NODE, &SCALAR),
    yes(POLL_INTERVAL, &SCALAR),
    yes(LEASE_DURATION, &SCALAR),
]);

/// The longest node name: it is written into the lease object and every log line.
const MAX_NODE_NAME: usize = 64;
const MIN_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(3600);
/// A lease shorter than this would expire between two renewals on a slow store (a renewal
/// runs every third of the lease, and one S3 request may take seconds when retried).
const MIN_LEASE: Duration = Duration::from_secs(3);
const MAX_LEASE: Duration = Duration::from_secs(3600);

/// `cluster` (Berth extension): how this node shares its storage with others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Whether the file (or a `REGISTRY_CLUSTER_*` variable) has a `cluster` section: the
    /// operator says the storage is shared, as an S3 driver always may be.
    pub configured: bool,
    /// `cluster.node`: this node's name; `None` means the host name.
    pub node: Option<String>,
    /// `cluster.jobsnode`: when set, only the node of that name runs the background jobs
    /// and no lease is used.
    pub jobs_node: Option<String>,
    /// `cluster.pollinterval`, default 2s (100ms to 1h): how often the cluster-wide read-only
    /// flag is read, which bounds how long a node takes to follow a switch.
    #[serde(with = "go_duration")]
    pub poll_interval: Duration,
    /// `cluster.leaseduration`, default 30s (3s to 1h): a runner that stops renewing (killed,
    /// cut off from the store) is replaced after at most this long.
    #[serde(with = "go_duration")]
    pub lease_duration: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            configured: false,
            node: None,
            jobs_node: None,
            poll_interval: Duration::from_secs(2),
            lease_duration: Duration::from_secs(30),
        }
    }
}

/// Reads `cluster` from the top level, with the defaults for anything unset.
pub(crate) fn extract(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<ClusterConfig, ConfigError> {
    let defaults = ClusterConfig::default();
    let section = cx.section(root, SECTION, "")?;
    let Some(map) = section else {
        return Ok(defaults);
    };
    Ok(ClusterConfig {
        configured: true,
        node: node_name(cx, Some(map), NODE)?,
        jobs_node: node_name(cx, Some(map), JOBS_NODE)?,
        poll_interval: bounded(cx, map, POLL_INTERVAL, MIN_POLL, MAX_POLL)?
            .unwrap_or(defaults.poll_interval),
        lease_duration: bounded(cx, map, LEASE_DURATION, MIN_LEASE, MAX_LEASE)?
            .unwrap_or(defaults.lease_duration),
    })
}

/// A node name: 1 to 64 of `A-Z a-z 0-9 . _ -` (host names and Kubernetes pod names fit).
fn node_name(
    cx: &Cx<'_>,
    section: Option<&Mapping>,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(name) = cx.opt_string(section, key, SECTION)? else {
        return Ok(None);
    };
    if is_node_name(&name) {
        return Ok(Some(name));
    }
    let value = get(section, key).cloned().unwrap_or(Value::Null);
    Err(cx.invalid(
        &join(SECTION, key),
        &value,
        "a node name of 1 to 64 letters, digits, '.', '_' or '-'",
    ))
}

/// Whether `name` may name a node (also used for the host name taken as the default).
pub fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn bounded(
    cx: &Cx<'_>,
    map: &Mapping,
    key: &str,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, ConfigError> {
    let Some(d) = cx.opt_duration(Some(map), key, SECTION)? else {
        return Ok(None);
    };
    if d < min || d > max {
        let value = get(Some(map), key).cloned().unwrap_or(Value::Null);
        return Err(cx.invalid(
            &join(SECTION, key),
            &value,
            &format!(
                "a duration from {} to {}",
                format_go_duration(min),
                format_go_duration(max)
            ),
        ));
    }
    Ok(Some(d))
}

/// The section in `config.yml` shape for `berth config check`; absent when the file had none,
/// so that checking a single-node file does not add one.
pub(crate) fn emit(cluster: &ClusterConfig) -> Option<Value> {
    if !cluster.configured {
        return None;
    }
    let mut m = Mapping::new();
    let mut put = |key: &str, value: Value| {
        m.insert(Value::String(key.to_owned()), value);
    };
    if let Some(node) = &cluster.node {
        put(NODE, node.clone().into());
    }
    if let Some(node) = &cluster.jobs_node {
        put(JOBS_NODE, node.clone().into());
    }
    put(
        POLL_INTERVAL,
        format_go_duration(cluster.poll_interval).into(),
    );
    put(
        LEASE_DURATION,
        format_go_duration(cluster.lease_duration).into(),
    );
    Some(Value::Mapping(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_host_name_like() {
        assert!(is_node_name("berth-0"));
        assert!(is_node_name("node_a.example"));
        assert!(!is_node_name(""));
        assert!(!is_node_name("a/b"));
        assert!(!is_node_name("a b"));
        assert!(!is_node_name(&"x".repeat(65)));
    }
}
