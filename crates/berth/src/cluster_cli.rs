//! `berth cluster …`: the commands an operator runs against the shared storage of several
//! nodes (with the same configuration file the nodes use).

use anyhow::Context;
use berth_config::Loaded;

use crate::setup;

/// `berth cluster read-only on|off`: writes or removes the flag object every node polls.
pub async fn read_only(loaded: Loaded, reason: Option<String>) -> anyhow::Result<()> {
    let config = &loaded.config;
    let registry = setup::registry(config).await?;
    let flag = reason.as_deref().map(crate::cluster::read_only_flag);
    registry
        .set_cluster_read_only_flag(flag.as_ref())
        .await
        .context("could not switch the cluster-wide read-only flag")?;
    let delay = config.cluster.poll_interval;
    match flag {
        Some(flag) => println!(
            "cluster-wide read-only mode on ({}); every node refuses writes within {} (cluster.pollinterval)",
            flag.reason,
            berth_config::format_go_duration(delay)
        ),
        None => println!(
            "cluster-wide read-only mode off; nodes accept writes again within {} (unless their own storage.maintenance.readonly is on)",
            berth_config::format_go_duration(delay)
        ),
    }
    Ok(())
}

/// `berth cluster status`: the read-only flag and the jobs lease's current term.
pub async fn status(loaded: Loaded) -> anyhow::Result<()> {
    let registry = setup::registry(&loaded.config).await?;
    match registry
        .cluster_read_only_flag()
        .await
        .context("could not read the cluster-wide read-only flag")?
    {
        Some(flag) => println!(
            "read-only: on (reason: {}; set by {} at {} s since the epoch)",
            flag.reason, flag.set_by, flag.set_at_unix
        ),
        None => println!("read-only: off"),
    }
    match berth_registry::lease::current(registry.driver())
        .await
        .context("could not read the jobs lease")?
    {
        Some((number, term, expired)) => println!(
            "jobs lease: term {number} held by node {} (instance {}){}",
            term.node,
            term.instance,
            if expired { ", expired" } else { "" }
        ),
        None => println!("jobs lease: none (no node has taken it, or the store cannot elect: see cluster.jobsnode)"),
    }
    println!(
        "create-only writes honoured by the store: {}",
        registry.driver().create_is_atomic()
    );
    Ok(())
}
