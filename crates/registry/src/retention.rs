//! Retention: per repository pattern, delete tags by age, count and regex, then the manifests
//! no remaining tag reaches. Retention removes only links (tags, revisions, referrers-index
//! entries), never blobs: a garbage collection afterwards (`berth garbage-collect`, or the
//! online collector) frees the space.
//!
//! A run first *plans* (reads only), then, unless it is a dry run, carries the plan out, so a
//! dry run and a real run over the same storage report the same set.
//!
//! Which policy: the first whose `repositories` patterns match the repository name; a
//! repository no policy matches is left alone.
//!
//! Which tags go, in this order of precedence:
//! 1. a tag matching a `keep_tags` regex is kept;
//! 2. else a tag matching a `delete_tags` regex is deleted;
//! 3. else, with `keep_last` or `older_than` set, the remaining tags are ranked by push time,
//!    newest first (ties: the greater name first), and a tag is deleted when it is *not*
//!    among the newest `keep_last` (if set) *and* was pushed more than `older_than` ago (if
//!    set). With both unset only rule 2 deletes.
//!
//! Push time is the modification time of the tag's `current/link` (storage `stat`): every
//! push of the tag rewrites that file, so it is when the tag was last pushed or moved. A
//! restore that rewrites the files (a copy without preserved times) resets it.
//!
//! With `delete_untagged`, the manifests reachable from the tags that remain are kept (tagged
//! manifests, children of kept indexes, referrers of kept manifests: GC's mark,
//! [`crate::gc::mark::reachable`]), and so are revisions written less than
//! [`UNTAGGED_GRACE`] ago (with what they reach), because a push in progress writes platform
//! manifests before their index and a client may push by digest before it tags. The others'
//! revision links are removed. A repository holding a manifest that does not parse is skipped
//! for this step (what it references is unknown).
//!
//! Crash safety: each deletion removes one tag or one revision directory; tags go first, and a
//! manifest is removed only when no tag that is left after the whole plan reaches it, so a run
//! killed at any point leaves every remaining tag complete. Before each deletion the link is
//! read again: a tag pushed (or a revision rewritten) since the plan is kept and reported in
//! the notes. A tag is removed index links first, current link last
//! ([`Registry::remove_tag`]); a kill between the last link and the directory leaves an empty
//! tag directory, which the next run in that repository removes.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use berth_oci::{Digest, Manifest, RepoName, RepoPattern, Tag};
use berth_storage::paths;
use regex::Regex;

use crate::gc::mark::reachable;
use crate::{links, Registry, RegistryError};

/// Untagged revisions written more recently than this are kept (pushes in progress).
pub const UNTAGGED_GRACE: Duration = Duration::from_secs(3600);

/// One policy, compiled (`storage.maintenance.retention.policies[]`).
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    /// The repositories it applies to.
    pub repositories: Vec<RepoPattern>,
    /// Keep the newest N tags (by push time) that no regex matched.
    pub keep_last: Option<usize>,
    /// Delete tags pushed longer ago than this (those not kept by `keep_last`).
    pub older_than: Option<Duration>,
    /// Tags matching one of these are always kept.
    pub keep_tags: Vec<Regex>,
    /// Tags matching one of these (and none of `keep_tags`) are always deleted.
    pub delete_tags: Vec<Regex>,
    /// Also delete the manifests no remaining tag reaches.
    pub delete_untagged: bool,
}

impl RetentionPolicy {
    /// Whether the policy applies to `repository`.
    pub fn applies_to(&self, repository: &str) -> bool {
        self.repositories.iter().any(|p| p.matches(repository))
    }
}

/// Why something is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The tag matches this `delete_tags` regex.
    DeleteTags(String),
    /// The tag is beyond `keep_last` and older than `older_than` (those set).
    Expired {
        /// The policy's `keep_last`.
        keep_last: Option<usize>,
        /// The policy's `older_than`.
        older_than: Option<Duration>,
    },
    /// No remaining tag reaches the manifest.
    Untagged,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::DeleteTags(re) => write!(f, "matches deletetags {re:?}"),
            Reason::Expired {
                keep_last,
                older_than,
            } => {
                let mut parts = Vec::new();
                if let Some(n) = keep_last {
                    parts.push(format!("not among the newest {n}"));
                }
                if let Some(age) = older_than {
                    parts.push(format!("older than {}", humantime::format_duration(*age)));
                }
                f.write_str(&parts.join(" and "))
            }
            Reason::Untagged => f.write_str("no remaining tag reaches it"),
        }
    }
}

/// One tag or untagged manifest that is (or in a dry run would be) deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The repository.
    pub repository: String,
    /// The tag, or `None` for an untagged manifest.
    pub tag: Option<String>,
    /// The digest the tag points at, or the untagged manifest's.
    pub digest: Digest,
    /// When the tag was pushed (or the revision written), from its link's modification time.
    pub pushed: SystemTime,
    /// Why.
    pub reason: Reason,
}

/// What a retention run found (and, unless it was a dry run, deleted).
#[derive(Debug, Clone, Default)]
pub struct RetentionReport {
    /// Repositories a policy applied to.
    pub repositories: usize,
    /// Tags kept in those repositories.
    pub tags_kept: usize,
    /// Tags first, then untagged manifests, per repository in name order.
    pub deleted: Vec<Deletion>,
    /// What was planned but left alone, and why (changed meanwhile, unparsable manifests),
    /// and leftovers of interrupted tag deletes that were removed.
    pub notes: Vec<String>,
}

impl RetentionReport {
    /// How many tags were deleted.
    pub fn tags_deleted(&self) -> usize {
        self.deleted.iter().filter(|d| d.tag.is_some()).count()
    }

    /// How many untagged manifests were deleted.
    pub fn manifests_deleted(&self) -> usize {
        self.deleted.len() - self.tags_deleted()
    }
}

/// A tag with its target and push time.
struct TagState {
    tag: Tag,
    digest: Digest,
    pushed: SystemTime,
}

/// The plan for one repository.
struct Plan {
    /// Tag directories with neither a current nor an index link (an interrupted delete).
    leftovers: Vec<Tag>,
    tags: Vec<(TagState, Reason)>,
    untagged: Vec<(Digest, SystemTime, Manifest)>,
}

impl Registry {
    /// Applies `policies` now. See the module documentation for the rules.
    pub async fn apply_retention(
        &self,
        policies: &[RetentionPolicy],
        dry_run: bool,
    ) -> Result<RetentionReport, RegistryError> {
        self.apply_retention_at(policies, dry_run, SystemTime::now())
            .await
    }

    /// Applies `policies` as if the time were `now` (ages are measured from it).
    pub async fn apply_retention_at(
        &self,
        policies: &[RetentionPolicy],
        dry_run: bool,
        now: SystemTime,
    ) -> Result<RetentionReport, RegistryError> {
        self.apply_retention_with(policies, dry_run, now, &mut |_| {})
            .await
    }

    /// [`Registry::apply_retention_at`], calling `on_delete` right after each deletion (or,
    /// in a dry run, each planned one), so that a caller can show progress as it happens.
    pub async fn apply_retention_with(
        &self,
        policies: &[RetentionPolicy],
        dry_run: bool,
        now: SystemTime,
        on_delete: &mut (dyn FnMut(&Deletion) + Send),
    ) -> Result<RetentionReport, RegistryError> {
        if !dry_run {
            self.check_writable()?;
        }
        let mut report = RetentionReport::default();
        let mut names = self.walk_repositories().await?;
        names.sort();
        for name in names {
            let Some(policy) = policies.iter().find(|p| p.applies_to(&name)) else {
                continue;
            };
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            report.repositories += 1;
            let plan = self.plan(&repo, policy, now, &mut report).await?;
            for tag in plan.leftovers {
                let verb = if dry_run { "would remove" } else { "removed" };
                if !dry_run {
                    self.check_writable()?;
                    let _links = self.repo_locks.delete_links(&repo).await;
                    self.remove_tag(&repo, &tag).await?;
                }
                report.notes.push(format!(
                    "{name}: {verb} the empty directory of tag {tag}, left by an interrupted delete"
                ));
            }
            for (state, reason) in plan.tags {
                if !dry_run {
                    self.check_writable()?;
                    // Held from the check to the removal, so a push in between is kept.
                    let _links = self.repo_locks.delete_links(&repo).await;
                    if !self.tag_unchanged(&repo, &state).await? {
                        report.notes.push(format!(
                            "{name}: tag {} was pushed again during the run; kept",
                            state.tag
                        ));
                        report.tags_kept += 1;
                        continue;
                    }
                    self.remove_tag(&repo, &state.tag).await?;
                }
                let deletion = Deletion {
                    repository: name.clone(),
                    tag: Some(state.tag.to_string()),
                    digest: state.digest,
                    pushed: state.pushed,
                    reason,
                };
                on_delete(&deletion);
                report.deleted.push(deletion);
            }
            for (digest, written, manifest) in plan.untagged {
                if !dry_run {
                    self.check_writable()?;
                    let _links = self.repo_locks.delete_links(&repo).await;
                    let link = paths::revision_link(&repo, &digest);
                    if self.modified(&link).await? != Some(written) {
                        report.notes.push(format!(
                            "{name}: manifest {digest} was pushed again during the run; kept"
                        ));
                        continue;
                    }
                    self.remove_revision(&repo, &digest, &manifest).await?;
                }
                let deletion = Deletion {
                    repository: name.clone(),
                    tag: None,
                    digest,
                    pushed: written,
                    reason: Reason::Untagged,
                };
                on_delete(&deletion);
                report.deleted.push(deletion);
            }
        }
        Ok(report)
    }

    /// Decides, reading only, what retention deletes in one repository.
    async fn plan(
        &self,
        repo: &RepoName,
        policy: &RetentionPolicy,
        now: SystemTime,
        report: &mut RetentionReport,
    ) -> Result<Plan, RegistryError> {
        let (mut tags, leftovers) = self.tag_states(repo).await?;
        // Newest first; equal times put the greater name first, so the order is total.
        tags.sort_by(|a, b| {
            b.pushed
                .cmp(&a.pushed)
                .then_with(|| b.tag.as_str().cmp(a.tag.as_str()))
        });
        let ages = policy.keep_last.is_some() || policy.older_than.is_some();
        let mut ranked = 0;
        let mut doomed = Vec::new();
        let mut roots = Vec::new();
        for state in tags {
            let name = state.tag.as_str();
            let reason = if policy.keep_tags.iter().any(|re| re.is_match(name)) {
                None
            } else if let Some(re) = policy.delete_tags.iter().find(|re| re.is_match(name)) {
                Some(Reason::DeleteTags(re.as_str().to_owned()))
            } else {
                let rank = ranked;
                ranked += 1;
                let beyond = policy.keep_last.is_none_or(|n| rank >= n);
                let old = policy.older_than.is_none_or(|age| {
                    now.duration_since(state.pushed)
                        .is_ok_and(|elapsed| elapsed > age)
                });
                (ages && beyond && old).then_some(Reason::Expired {
                    keep_last: policy.keep_last,
                    older_than: policy.older_than,
                })
            };
            match reason {
                Some(reason) => doomed.push((state, reason)),
                None => {
                    report.tags_kept += 1;
                    roots.push(state.digest);
                }
            }
        }
        doomed.sort_by(|a, b| a.0.tag.as_str().cmp(b.0.tag.as_str()));
        let untagged = if policy.delete_untagged {
            self.plan_untagged(repo, roots, now, report).await?
        } else {
            Vec::new()
        };
        Ok(Plan {
            leftovers,
            tags: doomed,
            untagged,
        })
    }

    /// The revisions that neither the remaining tags (`roots`) nor a recent revision reach.
    async fn plan_untagged(
        &self,
        repo: &RepoName,
        mut roots: Vec<Digest>,
        now: SystemTime,
        report: &mut RetentionReport,
    ) -> Result<Vec<(Digest, SystemTime, Manifest)>, RegistryError> {
        let (manifests, unparsed) = self.repository_manifests(repo).await?;
        if let Some(bad) = unparsed.first() {
            report.notes.push(format!(
                "{repo}: manifest {bad} cannot be parsed, so untagged manifests are kept (what it references is unknown)"
            ));
            return Ok(Vec::new());
        }
        let mut written = HashMap::new();
        for digest in manifests.keys() {
            let Some(time) = self.modified(&paths::revision_link(repo, digest)).await? else {
                continue;
            };
            let recent = now
                .duration_since(time)
                .map_or(true, |elapsed| elapsed < UNTAGGED_GRACE);
            if recent {
                roots.push(digest.clone());
            }
            written.insert(digest.clone(), time);
        }
        let live = reachable(roots, &manifests);
        let mut dead: Vec<(Digest, SystemTime, Manifest)> = manifests
            .into_iter()
            .filter(|(digest, _)| !live.contains(digest))
            .filter_map(|(digest, m)| written.get(&digest).map(|t| (digest.clone(), *t, m)))
            .collect();
        dead.sort_by_key(|d| d.0.to_string());
        Ok(dead)
    }

    /// Every tag of `repo` whose current link holds a digest, with its push time; and the
    /// tag directories without any link (a push writes the index link before the current
    /// one, so a directory with neither is what an interrupted delete leaves).
    async fn tag_states(
        &self,
        repo: &RepoName,
    ) -> Result<(Vec<TagState>, Vec<Tag>), RegistryError> {
        let names = match self.all_tags(repo).await {
            Ok(names) => names,
            Err(RegistryError::NameUnknown(_)) => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        let mut states = Vec::new();
        let mut leftovers = Vec::new();
        for name in names {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            let current = paths::tag_current_link(repo, &tag);
            if let Some(state) = self.tag_state(repo, tag.clone()).await? {
                states.push(state);
            } else if self.modified(&current).await?.is_none()
                && self
                    .list_digests(&paths::tag_index_dir(repo, &tag))
                    .await?
                    .is_empty()
            {
                leftovers.push(tag);
            }
        }
        Ok((states, leftovers))
    }

    async fn tag_state(
        &self,
        repo: &RepoName,
        tag: Tag,
    ) -> Result<Option<TagState>, RegistryError> {
        let link = paths::tag_current_link(repo, &tag);
        let Some(pushed) = self.modified(&link).await? else {
            return Ok(None);
        };
        Ok(links::read(self.driver(), &link)
            .await?
            .map(|digest| TagState {
                tag,
                digest,
                pushed,
            }))
    }

    /// Whether a tag still points where the plan saw it, pushed at the same time.
    async fn tag_unchanged(
        &self,
        repo: &RepoName,
        planned: &TagState,
    ) -> Result<bool, RegistryError> {
        let now = self.tag_state(repo, planned.tag.clone()).await?;
        Ok(now.is_some_and(|s| s.digest == planned.digest && s.pushed == planned.pushed))
    }

    /// A file's modification time, `None` when it does not exist.
    async fn modified(&self, path: &str) -> Result<Option<SystemTime>, RegistryError> {
        match self.driver().stat(path).await {
            Ok(info) => Ok(Some(info.modified)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
