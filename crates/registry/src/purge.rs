//! Upload purging (`storage.maintenance.uploadpurging`): upload sessions older than `age` are
//! deleted, as registry:2 does, so abandoned pushes do not fill the disk. A session's age is
//! the modification time of its state, rewritten after every chunk (for a registry:2 session:
//! its data file, or its directory when it has none), so an upload that is still receiving
//! chunks is never purged.

use std::time::{Duration, SystemTime};

use berth_oci::RepoName;
use berth_storage::{paths, FileInfo};

use crate::{links, Registry, RegistryError};

/// What a purge found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    /// Sessions old enough to purge (deleted unless it was a dry run).
    pub purged: Vec<String>,
    /// Sessions still young enough to keep.
    pub kept: usize,
}

impl Registry {
    /// Deletes (or, with `dry_run`, only lists) upload sessions untouched for `age`.
    pub async fn purge_uploads(
        &self,
        age: Duration,
        dry_run: bool,
    ) -> Result<PurgeReport, RegistryError> {
        let mut report = PurgeReport::default();
        let now = SystemTime::now();
        for (rel, children) in self.walk_repository_tree().await? {
            if !children.iter().any(|c| c == "_uploads") {
                continue;
            }
            let Ok(repo) = rel.parse::<RepoName>() else {
                continue;
            };
            let uploads = format!("{}/_uploads", paths::repo_dir(&repo));
            let ids = match self.driver().list(&uploads).await {
                Ok(ids) => ids,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for id in ids {
                let dir = format!("{uploads}/{id}");
                let info = match self.session_age_source(&repo, &id, &dir).await? {
                    Some(info) => info,
                    None => continue,
                };
                let idle = now.duration_since(info.modified).unwrap_or_default();
                if idle < age {
                    report.kept += 1;
                    continue;
                }
                if !dry_run {
                    links::remove(self.driver(), &dir).await?;
                    // The session is gone, so is its hash state.
                    self.uploads.forget(&id);
                }
                report.purged.push(format!("{repo}/{id}"));
            }
        }
        Ok(report)
    }

    /// What dates a session: Berth's state, else registry:2's data file, else the directory;
    /// `None` when the session vanished meanwhile.
    async fn session_age_source(
        &self,
        repo: &RepoName,
        id: &str,
        dir: &str,
    ) -> Result<Option<FileInfo>, RegistryError> {
        for path in [paths::upload_state(repo, id), paths::upload_data(repo, id)] {
            match self.driver().stat(&path).await {
                Ok(info) => return Ok(Some(info)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.driver().stat(dir).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use berth_storage::InMemoryDriver;

    use crate::{Registry, RegistryOptions};

    #[tokio::test]
    async fn purges_only_old_sessions() {
        let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        let repo = "a/b".parse().expect("name");
        let id = reg.start_upload(&repo).await.expect("start");
        let dry = reg
            .purge_uploads(Duration::ZERO, true)
            .await
            .expect("dry run");
        assert_eq!(dry.purged, [format!("a/b/{id}")]);
        assert_eq!(reg.upload_status(&repo, &id).await.expect("still there"), 0);
        let kept = reg
            .purge_uploads(Duration::from_secs(3600), false)
            .await
            .expect("purge");
        assert_eq!((kept.purged.len(), kept.kept), (0, 1));
        reg.purge_uploads(Duration::ZERO, false)
            .await
            .expect("purge");
        assert!(
            reg.upload_status(&repo, &id).await.is_err(),
            "purged session is gone"
        );
    }
}
