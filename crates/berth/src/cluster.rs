//! Several nodes on one storage: which node runs the background jobs, and the cluster-wide
//! read-only flag every node follows. See docs/scale-out.md.
//!
//! Jobs (online GC, retention, upload purging, cache eviction, the storage walk behind the
//! metrics, the first catalog index build) ask [`Jobs::runs_here`] before each run. Who runs
//! them, in this order:
//! 1. `cluster.jobsnode` names a node: that node only, no lease;
//! 2. the store honours create-only writes (filesystem, AWS S3, MinIO, moto; the startup probe
//!    says): the holder of the jobs lease ([`berth_registry::lease`]);
//! 3. otherwise (Garage): every node, with a warning when the storage may be shared, because
//!    nothing in the store can elect one. Two runners cost work, never data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use berth_config::{is_node_name, Config, StorageDriverConfig};
use berth_registry::cluster_read_only::ReadOnlyFlag;
use berth_registry::lease::{JobsLease, Standing};
use berth_registry::Registry;
use prometheus::{register_int_gauge, IntGauge};

static RUNNER_GAUGE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "berth_cluster_jobs_runner",
        "1 while this node runs the background jobs (GC, retention, purging, eviction, storage walks)"
    )
    .expect("register berth_cluster_jobs_runner")
});

static CLUSTER_READ_ONLY_GAUGE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "berth_cluster_read_only",
        "1 while the cluster-wide read-only flag is on"
    )
    .expect("register berth_cluster_read_only")
});

/// How this node learned whether it runs the jobs.
enum Mode {
    /// `cluster.jobsnode` names this node (`true`) or another (`false`).
    Named(bool),
    /// The jobs lease decides.
    Lease(tokio::sync::Mutex<JobsLease>),
    /// The store cannot elect: every node runs them.
    Everyone,
}

/// Whether this node runs the background jobs now.
pub struct Jobs {
    node: String,
    mode: Mode,
    /// While holding the lease: until when (monotonic), renewed every third of the lease.
    held_until: Mutex<Option<Instant>>,
}

impl Jobs {
    /// Whether the background jobs should run on this node now.
    pub fn runs_here(&self) -> bool {
        match &self.mode {
            Mode::Named(this) => *this,
            Mode::Everyone => true,
            Mode::Lease(_) => self
                .held_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|until| Instant::now() < until),
        }
    }

    /// Logs that `job` is skipped because another node runs the jobs; `true` when it may run.
    pub fn may_run(&self, job: &str) -> bool {
        let here = self.runs_here();
        if !here {
            tracing::debug!(job, node = self.node, "skipped: another node runs the jobs");
        }
        here
    }

    /// Gives the lease up at shutdown so another node takes over without waiting for it to
    /// expire.
    pub async fn release(&self, registry: &Registry) {
        if let Mode::Lease(lease) = &self.mode {
            *self.held_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
            lease.lock().await.release(registry.driver()).await;
            RUNNER_GAUGE.set(0);
        }
    }

    /// One lease round; logs when this node becomes or stops being the runner.
    async fn lease_round(&self, registry: &Registry) {
        let Mode::Lease(lease) = &self.mode else {
            return;
        };
        let was = self.runs_here();
        if registry.read_only() {
            // No job runs in read-only mode, and the store may be read-only too (a backup):
            // the term runs out and is taken again when writes come back.
            return;
        }
        let standing = lease.lock().await.round(registry.driver()).await;
        let mut held = self.held_until.lock().unwrap_or_else(|e| e.into_inner());
        match standing {
            Ok(Standing::Holder { term, until }) => {
                *held = Some(until);
                if !was {
                    tracing::info!(
                        node = self.node,
                        term,
                        "this node now runs the background jobs (jobs lease)"
                    );
                }
            }
            Ok(Standing::Follower { holder }) => {
                *held = None;
                if was {
                    tracing::info!(
                        node = self.node,
                        runner = holder,
                        "another node runs the background jobs now (jobs lease)"
                    );
                }
            }
            // The term held keeps counting down: a runner cut off from the store stops at
            // its deadline, which is what lets another node take over safely.
            Err(e) => tracing::warn!(error = %e, "could not read or renew the jobs lease"),
        }
        RUNNER_GAUGE.set(i64::from(held.is_some_and(|until| Instant::now() < until)));
    }
}

/// This node's name: `cluster.node`, else the host name, else `berth`.
pub fn node_name(config: &Config) -> String {
    if let Some(node) = &config.cluster.node {
        return node.clone();
    }
    host_name()
        .filter(|h| is_node_name(h))
        .unwrap_or_else(|| "berth".to_owned())
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}

/// Whether other processes may share this storage: an object store always may, and a
/// `cluster` section says so for a shared filesystem.
pub fn storage_may_be_shared(config: &Config) -> bool {
    config.cluster.configured
        || !matches!(
            config.storage.driver,
            StorageDriverConfig::Filesystem { .. } | StorageDriverConfig::InMemory
        )
}

/// Decides who runs the jobs (one lease round first, so the answer is known before the jobs
/// start), reads the cluster-wide read-only flag once, then keeps both current in the
/// background. Logs which mode is in effect.
pub async fn start(config: &Config, registry: Arc<Registry>) -> Arc<Jobs> {
    let node = node_name(config);
    let cluster = &config.cluster;
    let mode = if let Some(runner) = &cluster.jobs_node {
        let this = *runner == node;
        tracing::info!(
            node,
            runner,
            runs_here = this,
            "background jobs: cluster.jobsnode names the node that runs them"
        );
        Mode::Named(this)
    } else if registry.driver().create_is_atomic() {
        tracing::info!(
            node,
            lease_s = cluster.lease_duration.as_secs_f64(),
            "background jobs: the node holding the jobs lease in the storage runs them"
        );
        Mode::Lease(tokio::sync::Mutex::new(JobsLease::new(
            &node,
            cluster.lease_duration,
        )))
    } else {
        if storage_may_be_shared(config) {
            tracing::warn!(
                node,
                driver = registry.driver().name(),
                "background jobs run on this node: the store does not honour create-only writes, so nodes sharing it cannot elect one; if several nodes share this storage, set cluster.jobsnode to the one that should run them"
            );
        } else {
            tracing::info!(node, "background jobs: this node runs them");
        }
        Mode::Everyone
    };
    let jobs = Arc::new(Jobs {
        node,
        mode,
        held_until: Mutex::new(None),
    });
    RUNNER_GAUGE.set(i64::from(jobs.runs_here()));
    if matches!(jobs.mode, Mode::Lease(_)) {
        jobs.lease_round(&registry).await;
        let (jobs, registry) = (jobs.clone(), registry.clone());
        let every = cluster.lease_duration / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                jobs.lease_round(&registry).await;
            }
        });
    }
    let state = Arc::new(AtomicBool::new(false));
    follow_read_only_flag(&registry, &state).await;
    let every = cluster.poll_interval;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            follow_read_only_flag(&registry, &state).await;
        }
    });
    jobs
}

/// Reads the cluster-wide read-only flag and applies it. A store that cannot be read keeps
/// the last answer: writes would fail there anyway, and flapping helps nobody.
async fn follow_read_only_flag(registry: &Registry, last: &AtomicBool) {
    match registry.cluster_read_only_flag().await {
        Ok(flag) => {
            let on = flag.is_some();
            registry.follow_cluster_read_only(on);
            CLUSTER_READ_ONLY_GAUGE.set(i64::from(on));
            if last.swap(on, Ordering::Relaxed) != on {
                match flag {
                    Some(ReadOnlyFlag { reason, set_by, .. }) => tracing::warn!(
                        reason,
                        set_by,
                        "cluster-wide read-only mode is on: writes are refused on every node"
                    ),
                    None => tracing::info!("cluster-wide read-only mode is off"),
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the cluster-wide read-only flag; keeping the last state")
        }
    }
}

/// The flag's content when switched on by `berth cluster read-only on`.
pub fn read_only_flag(reason: &str) -> ReadOnlyFlag {
    ReadOnlyFlag {
        reason: reason.to_owned(),
        set_by: host_name().unwrap_or_default(),
        set_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}
