//! Cluster-wide read-only mode: one flag object in the shared storage that every node polls
//! (`cluster.pollinterval`), so that a backup or a migration switches all nodes at once. The
//! per-node switch (`storage.maintenance.readonly.enabled` + SIGHUP) stays; a node is read-only
//! when either says so.

use std::sync::atomic::Ordering;

use berth_storage::paths;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

/// The flag object's content, for `berth cluster read-only status` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOnlyFlag {
    /// Why (free text given by the operator), shown in logs.
    pub reason: String,
    /// Which host switched it on.
    pub set_by: String,
    /// When, in seconds since the Unix epoch.
    pub set_at_unix: u64,
}

/// The flag object is tiny; anything larger is not ours and is read as "on, no reason".
const MAX_FLAG_BYTES: usize = 64 * 1024;

impl Registry {
    /// Reads the cluster-wide flag: `Some` while it is on.
    pub async fn cluster_read_only_flag(&self) -> Result<Option<ReadOnlyFlag>, RegistryError> {
        match self
            .driver
            .get_content(&paths::cluster_read_only_flag())
            .await
        {
            Ok(bytes) => Ok(Some(
                (bytes.len() <= MAX_FLAG_BYTES)
                    .then(|| serde_json::from_slice(&bytes).ok())
                    .flatten()
                    .unwrap_or_else(|| ReadOnlyFlag {
                        reason: "(unreadable flag object)".to_owned(),
                        set_by: String::new(),
                        set_at_unix: 0,
                    }),
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Switches the cluster-wide flag on (`Some`) or off (`None`). This is the one write
    /// allowed in read-only mode: it is how read-only mode ends.
    pub async fn set_cluster_read_only_flag(
        &self,
        flag: Option<&ReadOnlyFlag>,
    ) -> Result<(), RegistryError> {
        let path = paths::cluster_read_only_flag();
        match flag {
            Some(flag) => {
                let body = serde_json::to_vec(flag).unwrap_or_default();
                self.driver.put_content(&path, Bytes::from(body)).await?;
            }
            None => match self.driver.delete(&path).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    }

    /// Follows what the flag object says (the poller calls this); [`Registry::read_only`] is
    /// on while this or the node's own switch is.
    pub fn follow_cluster_read_only(&self, on: bool) {
        self.cluster_read_only.store(on, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_storage::InMemoryDriver;

    use crate::{Registry, RegistryOptions};

    use super::*;

    #[tokio::test]
    async fn the_flag_round_trips_and_either_switch_makes_the_node_read_only() {
        let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        assert_eq!(reg.cluster_read_only_flag().await.expect("read"), None);
        let flag = ReadOnlyFlag {
            reason: "backup".into(),
            set_by: "host".into(),
            set_at_unix: 1,
        };
        reg.set_cluster_read_only_flag(Some(&flag))
            .await
            .expect("on");
        assert_eq!(
            reg.cluster_read_only_flag().await.expect("read"),
            Some(flag)
        );
        assert!(!reg.read_only());
        reg.follow_cluster_read_only(true);
        assert!(reg.read_only());
        reg.set_read_only(false);
        assert!(
            reg.read_only(),
            "the node's own switch does not override the cluster's"
        );
        reg.follow_cluster_read_only(false);
        assert!(!reg.read_only());
        reg.set_cluster_read_only_flag(None).await.expect("off");
        reg.set_cluster_read_only_flag(None)
            .await
            .expect("off twice");
        assert_eq!(reg.cluster_read_only_flag().await.expect("read"), None);
    }
}
