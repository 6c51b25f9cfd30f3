//! Failed-login limiting, so a password cannot be guessed at the speed of the network and
//! bcrypt cannot be turned into a CPU denial of service.
//!
//! Failures are counted twice: per client address (all accounts together), which bounds how
//! fast one address can guess across accounts, and per account (from any address), which
//! bounds how fast many addresses can guess one password. While either count is over its
//! limit, logins are refused before the password is even checked, so a correct guess cannot
//! be recognised. A success clears only that account's record: the client's count is kept,
//! or logging in to one's own account would reset the budget for guessing someone else's.
//!
//! The price of the per-account limit is that anyone may lock an account out for one window
//! by sending wrong passwords for it; the limits are configurable (`limits.login`).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many clients or accounts are remembered at most. Beyond that (after expired records
/// are swept) new ones are not recorded: memory stays bounded under a spray of addresses or
/// user names, and the other limit still applies.
const MAX_RECORDS: usize = 65_536;
/// User names longer than this are counted by their first this-many bytes.
const MAX_ACCOUNT_KEY: usize = 256;

/// Failures of one client or account since `since`.
#[derive(Debug, Clone, Copy)]
struct Record {
    since: Instant,
    failures: u32,
}

/// Counts failures per key within a window.
#[derive(Debug)]
struct Counter<K> {
    limit: u32,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(limit: u32) -> Self {
        Counter {
            limit,
            records: HashMap::new(),
        }
    }

    /// `Err(retry_after)` while `key` has used up its failures within `window`.
    fn check(&self, key: &K, window: Duration) -> Result<(), Duration> {
        match self.records.get(key) {
            Some(r) if r.failures >= self.limit => {
                let elapsed = r.since.elapsed();
                if elapsed < window {
                    Err(window - elapsed)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure; returns whether this one reached the limit.
    fn fail(&mut self, key: &K, window: Duration) -> bool {
        if !self.records.contains_key(key) && self.records.len() >= MAX_RECORDS {
            self.records.retain(|_, r| r.since.elapsed() < window);
            if self.records.len() >= MAX_RECORDS {
                // Still full: a spray of one-off names (or addresses). Drop those, keeping the
                // records of what is guessed at repeatedly, so a flood of junk cannot switch
                // off the limit for a real account.
                self.records.retain(|_, r| r.failures > 1);
            }
            if self.records.len() >= MAX_RECORDS {
                return false;
            }
        }
        let record = self.records.entry(key.clone()).or_insert(Record {
            since: Instant::now(),
            failures: 0,
        });
        if record.since.elapsed() >= window {
            *record = Record {
                since: Instant::now(),
                failures: 0,
            };
        }
        record.failures = record.failures.saturating_add(1);
        record.failures == self.limit
    }

    fn clear(&mut self, key: &K) {
        self.records.remove(key);
    }
}

/// The state of both counters, under one lock (a login touches both).
#[derive(Debug)]
struct Counters {
    clients: Counter<IpAddr>,
    accounts: Counter<String>,
}

/// Allows `client_failures` failed logins per client address and `account_failures` per
/// account within `window`; after that, the client or account is refused until the window
/// that began with its first failure ends.
#[derive(Debug)]
pub struct FailureLimiter {
    window: Duration,
    counters: Mutex<Counters>,
}

impl FailureLimiter {
    /// A limiter allowing `max_failures` per client and per account within `window`.
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        Self::with_limits(max_failures, max_failures, window)
    }

    /// A limiter with separate per-client and per-account limits.
    pub fn with_limits(
        client_failures: u32,
        account_failures: u32,
        window: Duration,
    ) -> FailureLimiter {
        FailureLimiter {
            window,
            counters: Mutex::new(Counters {
                clients: Counter::new(client_failures.max(1)),
                accounts: Counter::new(account_failures.max(1)),
            }),
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(retry_after)` when `client` or `account` has used up its failures.
    pub fn check(&self, client: Option<IpAddr>, account: &str) -> Result<(), Duration> {
        let counters = self.counters();
        let by_client = match client.map(client_key) {
            Some(ip) => counters.clients.check(&ip, self.window),
            None => Ok(()),
        };
        let by_account = counters.accounts.check(&account_key(account), self.window);
        match (by_client, by_account) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(d), _) | (_, Err(d)) => Err(d),
        }
    }

    /// Counts a failed login of `account` from `client`, and logs a lockout when one starts.
    pub fn failed(&self, client: Option<IpAddr>, account: &str) {
        let mut counters = self.counters();
        let client_locked = match client.map(client_key) {
            Some(ip) => counters.clients.fail(&ip, self.window),
            None => false,
        };
        let account_locked = counters.accounts.fail(&account_key(account), self.window);
        drop(counters);
        let client = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        let window_s = self.window.as_secs();
        if client_locked {
            tracing::warn!(
                client,
                window_s,
                "too many failed logins from this client; refusing its logins for the rest of the window"
            );
        }
        if account_locked {
            tracing::warn!(
                user = account,
                client,
                window_s,
                "too many failed logins for this account; refusing its logins for the rest of the window"
            );
        }
    }

    /// Forgets `account`'s failures after it logged in. The client's failures stay counted.
    pub fn succeeded(&self, account: &str) {
        self.counters().accounts.clear(&account_key(account));
    }
}

/// The address failures are counted under: an IPv6 client by its /64 (one host usually holds
/// a whole /64, so counting single addresses would give it 2^64 budgets).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn account_key(account: &str) -> String {
    let mut end = account.len().min(MAX_ACCOUNT_KEY);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    account[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn refuses_a_client_after_its_limit() {
        let limiter = FailureLimiter::with_limits(3, 100, Duration::from_secs(60));
        for user in ["a", "b", "c"] {
            assert!(limiter.check(ip("10.0.0.1"), user).is_ok());
            limiter.failed(ip("10.0.0.1"), user);
        }
        assert!(limiter.check(ip("10.0.0.1"), "d").is_err());
        assert!(limiter.check(ip("10.0.0.2"), "d").is_ok());
    }

    #[test]
    fn a_success_does_not_reset_the_clients_budget() {
        // The probe's attack: 2 wrong passwords for the victim, 1 good login as oneself, again.
        let limiter = FailureLimiter::with_limits(5, 100, Duration::from_secs(60));
        let attacker = ip("10.0.0.9");
        let mut guesses = 0;
        for _ in 0..10 {
            for _ in 0..2 {
                if limiter.check(attacker, "victim").is_ok() {
                    guesses += 1;
                    limiter.failed(attacker, "victim");
                }
            }
            if limiter.check(attacker, "me").is_ok() {
                limiter.succeeded("me");
            }
        }
        assert_eq!(guesses, 5, "guesses stop at the client's limit");
    }

    #[test]
    fn refuses_an_account_guessed_from_many_addresses() {
        let limiter = FailureLimiter::with_limits(100, 3, Duration::from_secs(60));
        for i in 1..=3 {
            limiter.failed(ip(&format!("10.0.1.{i}")), "alice");
        }
        assert!(limiter.check(ip("10.0.2.1"), "alice").is_err());
        assert!(limiter.check(ip("10.0.2.1"), "bob").is_ok());
        // Alice's own success (once the window allows) clears only her record.
        limiter.succeeded("alice");
        assert!(limiter.check(ip("10.0.2.1"), "alice").is_ok());
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let limiter = FailureLimiter::with_limits(2, 100, Duration::from_secs(60));
        limiter.failed(ip("2001:db8:1:2::1"), "a");
        limiter.failed(ip("2001:db8:1:2::ffff"), "b");
        assert!(limiter.check(ip("2001:db8:1:2:abcd::9"), "c").is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), "c").is_ok());
        assert_eq!(
            client_key("::ffff:10.0.0.1".parse().expect("ip")),
            ip("10.0.0.1").expect("v4")
        );
    }

    #[test]
    fn the_window_ends() {
        let limiter = FailureLimiter::new(1, Duration::from_millis(20));
        limiter.failed(ip("::1"), "x");
        assert!(limiter.check(ip("::1"), "y").is_err());
        assert!(limiter.check(ip("10.0.0.1"), "x").is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(limiter.check(ip("::1"), "x").is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_a_spray_of_names() {
        let limiter = FailureLimiter::with_limits(u32::MAX, 5, Duration::from_secs(60));
        // A flood of junk names fills the table, then a real account is guessed at: it is
        // still counted and locked (the junk makes room), not left unlimited.
        for i in 0..(MAX_RECORDS + 1000) {
            limiter.failed(None, &format!("user{i}"));
        }
        assert!(limiter.counters().accounts.records.len() <= MAX_RECORDS);
        for _ in 0..5 {
            limiter.failed(None, "alice");
        }
        assert!(limiter.check(None, "alice").is_err(), "alice is limited");
        assert!(limiter.counters().accounts.records.len() <= MAX_RECORDS);
        let long = "x".repeat(10_000);
        limiter.failed(None, &long);
        assert_eq!(account_key(&long).len(), MAX_ACCOUNT_KEY);
        assert_eq!(account_key("é".repeat(200).as_str()).len(), MAX_ACCOUNT_KEY);
    }
}
