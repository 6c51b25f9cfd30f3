//! The state of registry:2's health checks (`health.storagedriver`, `health.file`,
//! `health.http`, `health.tcp`), as the pollers in the `berth` binary last left it.
//!
//! As in registry:2, every API request is answered `503 UNAVAILABLE` while a check fails, and
//! `/debug/health` on the debug address lists the failing checks. `/readyz` fails with them;
//! `/healthz` (liveness) does not, so a storage outage never makes Kubernetes restart a
//! registry that is otherwise fine.

use std::collections::BTreeMap;
use std::sync::RwLock;

/// The registered checks and, for each, the error that currently makes it fail.
#[derive(Debug, Default)]
pub struct HealthState {
    checks: RwLock<BTreeMap<String, CheckState>>,
}

#[derive(Debug, Default)]
struct CheckState {
    /// Failures in a row.
    failures: u32,
    /// Failures in a row needed before the check reports (registry:2's `threshold`; 0 and 1
    /// both mean the first failure).
    threshold: u32,
    /// The latest error.
    last_error: Option<String>,
}

impl HealthState {
    /// Registers a check, healthy until its first failed poll (registry:2 starts the same way).
    pub fn register(&self, name: &str, threshold: u32) {
        let mut checks = self.checks.write().unwrap_or_else(|e| e.into_inner());
        checks.insert(
            name.to_owned(),
            CheckState {
                threshold,
                ..CheckState::default()
            },
        );
    }

    /// Records the outcome of one poll of `name`: `None` is a success, which resets the count.
    pub fn update(&self, name: &str, error: Option<String>) {
        let mut checks = self.checks.write().unwrap_or_else(|e| e.into_inner());
        let Some(check) = checks.get_mut(name) else {
            return;
        };
        match error {
            None => {
                if check.failures >= check.threshold.max(1) {
                    tracing::info!(check = name, "health check recovered");
                }
                check.failures = 0;
                check.last_error = None;
            }
            Some(error) => {
                check.failures = check.failures.saturating_add(1);
                if check.failures == check.threshold.max(1) {
                    tracing::error!(check = name, error, "health check failing");
                }
                check.last_error = Some(error);
            }
        }
    }

    /// The failing checks (past their threshold) and their errors; empty when healthy.
    pub fn failures(&self) -> BTreeMap<String, String> {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        checks
            .iter()
            .filter(|(_, c)| c.failures >= c.threshold.max(1))
            .filter_map(|(name, c)| Some((name.clone(), c.last_error.clone()?)))
            .collect()
    }

    /// Whether any check fails; cheap enough for every request.
    pub fn is_failing(&self) -> bool {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        checks.values().any(|c| c.failures >= c.threshold.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::HealthState;

    #[test]
    fn a_check_fails_only_past_its_threshold_and_recovers_at_once() {
        let state = HealthState::default();
        state.register("storagedriver_filesystem", 3);
        state.register("/tmp/down", 0);
        for _ in 0..2 {
            state.update("storagedriver_filesystem", Some("boom".into()));
        }
        assert!(!state.is_failing(), "two failures are below the threshold");
        state.update("storagedriver_filesystem", Some("boom".into()));
        assert_eq!(
            state
                .failures()
                .get("storagedriver_filesystem")
                .map(String::as_str),
            Some("boom")
        );
        state.update("storagedriver_filesystem", None);
        assert!(!state.is_failing());
        state.update("/tmp/down", Some("file exists".into()));
        assert!(state.is_failing(), "threshold 0 means the first failure");
        state.update("unregistered", Some("ignored".into()));
        assert_eq!(state.failures().len(), 1);
    }
}
