//! The jobs lease: which one of the nodes sharing a storage runs the background jobs (online GC,
//! retention, upload purging, cache eviction, storage walks for metrics).
//!
//! The lease is a sequence of terms, one object per term under `_berth/cluster/jobs-lease/`,
//! named by its number and created only if absent. A node holds the lease while the highest
//! term is its own and not expired; it renews by creating the next term before its own runs out.
//! Another node takes over only when the highest term has expired, by creating the next one; of
//! several nodes that try at once, the store lets exactly one create it.
//!
//! Why terms instead of one object renewed with `If-Match` (what `../shared/design/storage.md`
//! sketches): this needs one conditional primitive, create-only, which the startup probe already
//! checks (`create_is_atomic`), the filesystem gives with `link(2)` and every S3 store that has
//! any conditional write supports. An `If-Match` replace would be a second primitive to probe,
//! and stores differ more on it.
//!
//! Expiry is judged by wall clocks (the writer's deadline against the reader's clock), so nodes
//! need roughly synchronised clocks (NTP). A skew, like a runner paused past its deadline, can
//! only make two runners overlap for a while: every job is safe to run twice at once (the online
//! GC's grace window and touch markers do not depend on there being one collector), it only
//! wastes work. The holder itself stops considering itself the runner at a deadline measured on
//! its monotonic clock from *before* it asked the store, so it never outlives its own term.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_storage::{paths, StorageDriver, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// At most this many terms are looked at; older ones are deleted by each new holder, so more
/// than two only appear after crashes between a create and its cleanup.
const MAX_TERMS_LISTED: usize = 10_000;

/// What one term object says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Term {
    /// The holder's node name (`cluster.node`).
    pub node: String,
    /// The holder process: a random number drawn at start, so a restarted node is a new holder.
    pub instance: String,
    /// Until when the term holds, milliseconds since the Unix epoch, by the holder's clock.
    pub expires_unix_ms: u64,
}

/// The answer of one [`JobsLease::round`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// This process holds the lease until `until` (its monotonic clock).
    Holder {
        /// The term number held.
        term: u64,
        /// When this process stops running jobs unless renewed.
        until: Instant,
    },
    /// Another process holds it.
    Follower {
        /// The holder's node name, for logs.
        holder: String,
    },
}

/// One contender for the jobs lease.
pub struct JobsLease {
    node: String,
    instance: String,
    duration: Duration,
    /// The term this process created last, if any.
    held: Option<u64>,
    /// No round has run yet: the only time a term of this node's name is taken over early.
    first_round: bool,
}

impl JobsLease {
    /// A contender named `node`; its terms last `duration`.
    pub fn new(node: &str, duration: Duration) -> JobsLease {
        JobsLease {
            node: node.to_owned(),
            instance: format!("{:016x}", rand::random::<u64>()),
            duration,
            held: None,
            first_round: true,
        }
    }

    /// This process's instance id (written into its terms).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Takes, renews or observes the lease once. Call it every third of the lease duration
    /// or so: a holder renews early, a follower notices an expired term.
    pub async fn round(&mut self, driver: &dyn StorageDriver) -> Result<Standing, StorageError> {
        let asked_at = Instant::now();
        let first_round = std::mem::replace(&mut self.first_round, false);
        let top = highest_term(driver).await?;
        let mut next = 1;
        if let Some(number) = top {
            next = number + 1;
            match read_term(driver, number).await? {
                // Gone between the listing and the read: someone is cleaning up after a newer
                // term; look again next round rather than race it.
                None => {
                    return Ok(Standing::Follower {
                        holder: "(changing)".to_owned(),
                    })
                }
                Some(term) => {
                    let ours = term.instance == self.instance;
                    // At start, a term of this node's name is its earlier life (killed,
                    // restarted): not waited for. Only then, so two processes given the same
                    // name by mistake do not take the lease from each other every round; the
                    // creation of the next term stays exclusive either way.
                    let earlier_life = first_round && term.node == self.node && !ours;
                    if !ours && !earlier_life && now_unix_ms() < term.expires_unix_ms {
                        self.held = None;
                        return Ok(Standing::Follower { holder: term.node });
                    }
                }
            }
        }
        let term = Term {
            node: self.node.clone(),
            instance: self.instance.clone(),
            expires_unix_ms: now_unix_ms().saturating_add(millis(self.duration)),
        };
        let body = Bytes::from(serde_json::to_vec(&term).unwrap_or_default());
        if !driver
            .put_content_if_absent(&paths::jobs_lease_term(next), body)
            .await?
        {
            self.held = None;
            let holder = read_term(driver, next)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "(unknown)".to_owned(), |t| t.node);
            return Ok(Standing::Follower { holder });
        }
        self.held = Some(next);
        delete_terms_before(driver, next).await;
        Ok(Standing::Holder {
            term: next,
            until: asked_at + self.duration,
        })
    }

    /// Gives the lease up (clean shutdown), so that another node takes over at once instead of
    /// after the lease runs out. Only this process's own term is deleted.
    pub async fn release(&mut self, driver: &dyn StorageDriver) {
        let Some(term) = self.held.take() else {
            return;
        };
        match read_term(driver, term).await {
            Ok(Some(t)) if t.instance == self.instance => {
                if let Err(e) = driver.delete(&paths::jobs_lease_term(term)).await {
                    tracing::warn!(error = %e, "could not release the jobs lease; another node takes over when it expires");
                }
            }
            _ => {}
        }
    }
}

/// The current term, its number and whether it has expired (`berth cluster status`).
pub async fn current(
    driver: &dyn StorageDriver,
) -> Result<Option<(u64, Term, bool)>, StorageError> {
    let Some(number) = highest_term(driver).await? else {
        return Ok(None);
    };
    Ok(read_term(driver, number).await?.map(|term| {
        let expired = now_unix_ms() >= term.expires_unix_ms;
        (number, term, expired)
    }))
}

/// The highest term number present, if any.
async fn highest_term(driver: &dyn StorageDriver) -> Result<Option<u64>, StorageError> {
    Ok(term_numbers(driver).await?.into_iter().max())
}

async fn term_numbers(driver: &dyn StorageDriver) -> Result<Vec<u64>, StorageError> {
    let names = match driver.list(&paths::jobs_lease_dir()).await {
        Ok(names) => names,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(names
        .iter()
        .take(MAX_TERMS_LISTED)
        .filter_map(|name| {
            let name = name.rsplit('/').next().unwrap_or(name);
            (name.len() == 20).then(|| name.parse().ok()).flatten()
        })
        .collect())
}

/// A term's content; `None` when it is gone. An unreadable term (not ours: never written
/// partially) counts as held by an unknown node until its object's age passes a day, so
/// garbage in the bucket cannot make every node a runner at once.
async fn read_term(driver: &dyn StorageDriver, number: u64) -> Result<Option<Term>, StorageError> {
    let path = paths::jobs_lease_term(number);
    let bytes = match driver.get_content(&path).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        tracing::warn!(
            path,
            "unreadable jobs lease term; treated as held for a day"
        );
        Term {
            node: "(unreadable term)".to_owned(),
            instance: String::new(),
            expires_unix_ms: now_unix_ms().saturating_add(24 * 3600 * 1000),
        }
    })))
}

/// Best effort: the terms before `current` are history. A failure leaves them for the next
/// holder; they never count, the highest term decides.
async fn delete_terms_before(driver: &dyn StorageDriver, current: u64) {
    let Ok(numbers) = term_numbers(driver).await else {
        return;
    };
    for number in numbers.into_iter().filter(|n| *n < current) {
        let _ = driver.delete(&paths::jobs_lease_term(number)).await;
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_storage::InMemoryDriver;

    fn driver() -> InMemoryDriver {
        InMemoryDriver::new()
    }

    #[tokio::test]
    async fn one_of_three_contenders_holds_and_renews() {
        let d = driver();
        let mut nodes: Vec<JobsLease> = ["a", "b", "c"]
            .iter()
            .map(|n| JobsLease::new(n, Duration::from_secs(30)))
            .collect();
        for round in 0..5 {
            let mut holders = 0;
            for node in &mut nodes {
                if matches!(
                    node.round(&d).await.expect("round"),
                    Standing::Holder { .. }
                ) {
                    holders += 1;
                }
            }
            assert_eq!(holders, 1, "round {round}");
        }
        // Renewals leave at most the current term behind.
        assert_eq!(term_numbers(&d).await.expect("terms").len(), 1);
    }

    #[tokio::test]
    async fn an_expired_term_is_taken_over() {
        let d = driver();
        let mut a = JobsLease::new("a", Duration::from_millis(50));
        let mut b = JobsLease::new("b", Duration::from_secs(30));
        assert!(matches!(
            a.round(&d).await.expect("a"),
            Standing::Holder { .. }
        ));
        assert_eq!(
            b.round(&d).await.expect("b"),
            Standing::Follower { holder: "a".into() }
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(matches!(
            b.round(&d).await.expect("b"),
            Standing::Holder { term: 2, .. }
        ));
        // a learns it lost: b's term is valid for 30 s.
        assert_eq!(
            a.round(&d).await.expect("a"),
            Standing::Follower { holder: "b".into() }
        );
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once_and_a_restart_does_not_wait() {
        let d = driver();
        let mut a = JobsLease::new("a", Duration::from_secs(30));
        let mut b = JobsLease::new("b", Duration::from_secs(30));
        assert!(matches!(
            a.round(&d).await.expect("a"),
            Standing::Holder { .. }
        ));
        a.release(&d).await;
        assert!(matches!(
            b.round(&d).await.expect("b"),
            Standing::Holder { .. }
        ));
        // b is killed (no release) and restarts as a new instance with the same name.
        let mut b_again = JobsLease::new("b", Duration::from_secs(30));
        assert!(matches!(
            b_again.round(&d).await.expect("b"),
            Standing::Holder { .. }
        ));
        assert!(matches!(
            b.round(&d).await.expect("b"),
            Standing::Follower { .. }
        ));
    }

    #[tokio::test]
    async fn concurrent_contenders_never_both_hold_one_term() {
        let d = std::sync::Arc::new(driver());
        let mut tasks = Vec::new();
        for i in 0..8 {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                let mut lease = JobsLease::new(&format!("n{i}"), Duration::from_secs(30));
                lease.round(d.as_ref()).await.expect("round")
            }));
        }
        let mut holders = 0;
        for t in tasks {
            if matches!(t.await.expect("join"), Standing::Holder { .. }) {
                holders += 1;
            }
        }
        assert_eq!(holders, 1);
    }

    #[tokio::test]
    async fn garbage_in_the_lease_directory_does_not_make_everyone_a_runner() {
        let d = driver();
        d.put_content(&paths::jobs_lease_term(7), Bytes::from_static(b"not json"))
            .await
            .expect("put");
        d.put_content(&format!("{}/README", paths::jobs_lease_dir()), Bytes::new())
            .await
            .expect("put");
        let mut a = JobsLease::new("a", Duration::from_secs(30));
        assert!(matches!(
            a.round(&d).await.expect("a"),
            Standing::Follower { .. }
        ));
    }
}
