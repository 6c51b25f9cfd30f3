//! `cluster` (Berth extension): node name, jobs node, poll interval and lease duration. Absent
//! means a single node; values from the file and from `REGISTRY_CLUSTER_*`; bad names and
//! out-of-range durations refused naming the key; unknown keys warned about; written back by
//! `to_yaml` only when present.

use std::time::Duration;

use berth_config::ClusterConfig;

use crate::{assert_warning, err, ok, MINIMAL};

#[test]
fn absent_means_a_single_node_with_the_defaults() {
    let loaded = ok(MINIMAL, &[]);
    assert_eq!(loaded.config.cluster, ClusterConfig::default());
    assert!(!loaded.config.cluster.configured);
    assert!(!loaded.config.to_yaml().contains("cluster"));
}

#[test]
fn values_from_the_file_and_the_environment() {
    let yaml = format!("{MINIMAL}cluster:\n  node: berth-1\n  jobsnode: berth-0\n  pollinterval: 500ms\n  leaseduration: 1m\n");
    let c = ok(&yaml, &[]).config.cluster;
    assert_eq!(
        c,
        ClusterConfig {
            configured: true,
            node: Some("berth-1".into()),
            jobs_node: Some("berth-0".into()),
            poll_interval: Duration::from_millis(500),
            lease_duration: Duration::from_secs(60),
        }
    );
    // A Kubernetes pod names itself through the environment, with no section in the file.
    let c = ok(MINIMAL, &[("REGISTRY_CLUSTER_NODE", "berth-7f9c-x2")])
        .config
        .cluster;
    assert!(c.configured);
    assert_eq!(c.node.as_deref(), Some("berth-7f9c-x2"));
    assert_eq!(c.lease_duration, Duration::from_secs(30));
    let c = ok(&yaml, &[("REGISTRY_CLUSTER_JOBSNODE", "berth-2")])
        .config
        .cluster;
    assert_eq!(c.jobs_node.as_deref(), Some("berth-2"));
}

#[test]
fn the_section_round_trips_through_to_yaml() {
    let yaml = format!("{MINIMAL}cluster: {{node: a, leaseduration: 10s}}\n");
    let first = ok(&yaml, &[]).config;
    let again = ok(&first.to_yaml(), &[]).config;
    assert_eq!(first.cluster, again.cluster);
}

#[test]
fn bad_names_and_durations_are_refused_naming_the_key() {
    for (yaml, key) in [
        ("cluster: {node: \"a/b\"}\n", "cluster.node"),
        ("cluster: {node: \"has space\"}\n", "cluster.node"),
        ("cluster: {jobsnode: \"../x\"}\n", "cluster.jobsnode"),
        ("cluster: {pollinterval: 1ms}\n", "cluster.pollinterval"),
        ("cluster: {leaseduration: 1s}\n", "cluster.leaseduration"),
        ("cluster: {leaseduration: 2h}\n", "cluster.leaseduration"),
        ("cluster: 5\n", "cluster"),
    ] {
        let e = err(&format!("{MINIMAL}{yaml}"), &[]);
        assert!(e.contains(key), "{yaml}: {e}");
    }
    let long = "n".repeat(65);
    let e = err(&format!("{MINIMAL}cluster: {{node: {long}}}\n"), &[]);
    assert!(e.contains("cluster.node"), "{e}");
}

#[test]
fn unknown_keys_warn() {
    let loaded = ok(
        &format!("{MINIMAL}cluster: {{node: a, peers: [b, c]}}\n"),
        &[],
    );
    assert_warning(&loaded, &["cluster.peers"]);
}
