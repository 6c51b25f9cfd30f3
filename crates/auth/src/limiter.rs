//! Failed-login rate limiting per client address, so a password cannot be guessed at the
//! speed of the network and bcrypt cannot be turned into a CPU denial of service.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `max_failures` failed logins per client within `window`; after that, the client
/// is refused until the window that began with its first failure ends.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// How many clients are tracked before expired entries are swept.
const SWEEP_AT: usize = 4096;

impl FailureLimiter {
    /// A limiter allowing `max_failures` per `window`.
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `client` has used up its failures.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let Some(ip) = client else { return Ok(()) };
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get(&ip) {
            Some((since, n)) if *n >= self.max_failures => {
                let elapsed = since.elapsed();
                if elapsed < self.window {
                    Err(self.window - elapsed)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login of `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let Some(ip) = client else { return };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= SWEEP_AT {
            let window = self.window;
            clients.retain(|_, (since, _)| since.elapsed() < window);
        }
        let entry = clients.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        if entry.1 == self.max_failures {
            tracing::warn!(client = %ip, failures = entry.1, "too many failed logins; refusing this client for a while");
        }
    }

    /// Forgets `client`'s failures after a successful login.
    pub fn succeeded(&self, client: Option<IpAddr>) {
        if let Some(ip) = client {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            clients.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_and_forgets_on_success() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let ip = Some("10.0.0.1".parse().expect("ip"));
        let other = Some("10.0.0.2".parse().expect("ip"));
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
            limiter.failed(ip);
        }
        assert!(limiter.check(ip).is_err());
        assert!(limiter.check(other).is_ok());
        limiter.succeeded(ip);
        assert!(limiter.check(ip).is_ok());
    }

    #[test]
    fn the_window_ends() {
        let limiter = FailureLimiter::new(1, Duration::from_millis(20));
        let ip = Some("::1".parse().expect("ip"));
        limiter.failed(ip);
        assert!(limiter.check(ip).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(limiter.check(ip).is_ok());
    }
}
