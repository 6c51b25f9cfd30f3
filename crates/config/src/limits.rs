//! `limits` (Berth extension): bounds on what one client, one account or one request can make
//! the registry do, so that guessing passwords and oversized manifests cost an attacker more
//! than they cost the registry. This module is the one place for these keys: their schema
//! (unknown keys warn, `REGISTRY_LIMITS_*` overrides apply), the typed model, reading and
//! checking, and writing them back for `berth config check`.
//!
//! ```yaml
//! limits:
//!   login:
//!     clientfailures: 30     # failed logins allowed per client address within `window` (all accounts together)
//!     accountfailures: 10    # failed logins allowed per account within `window` (from any address)
//!     window: 5m             # Go duration, more than 0 and at most 24h
//!   manifests:
//!     maxreferences: 1000    # blobs + child manifests one manifest may reference (push or pull-through)
//! ```
//!
//! Every number is at least 1: a limit of 0 would refuse everything, which is never what an
//! operator means, so it stops startup with an error naming the key instead of being taken as
//! "unset". Keys are spelled without underscores, like registry:2's, so that
//! `REGISTRY_LIMITS_LOGIN_CLIENTFAILURES=5` and `REGISTRY_LIMITS_MANIFESTS_MAXREFERENCES=50`
//! work.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::duration::{format_go_duration, go_duration};
use crate::error::ConfigError;
use crate::keys::{closed, join, yes, Node, SCALAR};
use crate::values::{get, Cx};

/// The section's key, at the top level of `config.yml`.
pub(crate) const SECTION: &str = "limits";
const LOGIN: &str = "login";
const CLIENT_FAILURES: &str = "clientfailures";
const ACCOUNT_FAILURES: &str = "accountfailures";
const WINDOW: &str = "window";
const MANIFESTS: &str = "manifests";
const MAX_REFERENCES: &str = "maxreferences";

/// The longest `limits.login.window` accepted: failures older than a day say nothing about an
/// attack in progress, and a longer window only lets one mistyped password lock an account
/// for longer.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The largest `limits.manifests.maxreferences` accepted.
const MAX_MANIFEST_REFERENCES: u64 = 1_000_000;

static LOGIN_KEYS: Node = closed(&[
    yes(CLIENT_FAILURES, &SCALAR),
    yes(ACCOUNT_FAILURES, &SCALAR),
    yes(WINDOW, &SCALAR),
]);
static MANIFESTS_KEYS: Node = closed(&[yes(MAX_REFERENCES, &SCALAR)]);
/// The schema of `limits`, hung under the root of [`crate::keys::ROOT`].
pub(crate) static KEYS: Node = closed(&[yes(LOGIN, &LOGIN_KEYS), yes(MANIFESTS, &MANIFESTS_KEYS)]);

/// `limits` (Berth extension): per-client, per-account and per-request bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsConfig {
    /// `limits.login`: how many failed logins are tolerated before further attempts are
    /// refused.
    pub login: LoginLimits,
    /// `limits.manifests.maxreferences`, default 1000 (at most 1,000,000): the number of blobs
    /// plus child manifests one manifest may reference, on push and when a pull-through cache
    /// fetches one from upstream. Every reference is checked when a manifest is stored, so
    /// this bounds the CPU (and storage lookups) a single manifest PUT or upstream response can
    /// cost; real images reference a few dozen at most.
    pub manifest_references: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            login: LoginLimits::default(),
            manifest_references: 1000,
        }
    }
}

/// `limits.login`: how many failed logins are tolerated within `window`; once a client address
/// or an account reaches its limit, its further login attempts are refused until its failures
/// are older than `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginLimits {
    /// `clientfailures`, default 30: failed logins allowed from one client address within
    /// `window`, whatever accounts they name. Bounds guessing across many accounts from one
    /// address (password spraying, user enumeration).
    pub client_failures: u32,
    /// `accountfailures`, default 10: failed logins allowed for one account within `window`,
    /// from any address. Bounds password guessing against one account from many addresses,
    /// which a per-address limit alone does not stop.
    pub account_failures: u32,
    /// `window`, default 5m (more than 0, at most 24h): how long a failed login counts against
    /// its client address and its account.
    #[serde(with = "go_duration")]
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            client_failures: 30,
            account_failures: 10,
            window: Duration::from_secs(5 * 60),
        }
    }
}

/// Reads `limits` from the top level, with the defaults for anything unset.
pub(crate) fn extract(cx: &Cx<'_>, root: Option<&Mapping>) -> Result<LimitsConfig, ConfigError> {
    let limits = cx.section(root, SECTION, "")?;
    let login = cx.section(limits, LOGIN, SECTION)?;
    let manifests = cx.section(limits, MANIFESTS, SECTION)?;
    let login_path = join(SECTION, LOGIN);
    let manifests_path = join(SECTION, MANIFESTS);
    let defaults = LimitsConfig::default();
    let max_u32 = u64::from(u32::MAX);
    let count = |parent: Option<&Mapping>,
                 key: &str,
                 path: &str,
                 default: u32|
     -> Result<u32, ConfigError> {
        Ok(match at_least_one(cx, parent, key, path, max_u32)? {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => default,
        })
    };
    let references = match at_least_one(
        cx,
        manifests,
        MAX_REFERENCES,
        &manifests_path,
        MAX_MANIFEST_REFERENCES,
    )? {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => defaults.manifest_references,
    };
    Ok(LimitsConfig {
        login: LoginLimits {
            client_failures: count(
                login,
                CLIENT_FAILURES,
                &login_path,
                defaults.login.client_failures,
            )?,
            account_failures: count(
                login,
                ACCOUNT_FAILURES,
                &login_path,
                defaults.login.account_failures,
            )?,
            window: window(cx, login, &login_path)?.unwrap_or(defaults.login.window),
        },
        manifest_references: references,
    })
}

/// A whole number from 1 to `max` at `key`, `None` when unset. 0 is refused rather than read
/// as "unset" (as registry:2's counts are): a limit of 0 would refuse everything.
fn at_least_one(
    cx: &Cx<'_>,
    parent: Option<&Mapping>,
    key: &str,
    path: &str,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    cx.opt_uint_in(parent, key, path, 1, max)
}

/// `limits.login.window`: a Go duration (read like every other duration of the file), more
/// than zero and at most [`MAX_WINDOW`].
fn window(
    cx: &Cx<'_>,
    login: Option<&Mapping>,
    path: &str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(d) = cx.opt_duration(login, WINDOW, path)? else {
        return Ok(None);
    };
    if d.is_zero() || d > MAX_WINDOW {
        let key = join(path, WINDOW);
        let value = get(login, WINDOW).cloned().unwrap_or(Value::Null);
        return Err(cx.invalid(
            &key,
            &value,
            "a duration of more than 0 and at most 24h, such as \"5m\" or \"1h\"",
        ));
    }
    Ok(Some(d))
}

/// The section in `config.yml` shape, every value shown (defaults included), for
/// `berth config check`; loading it back gives the same [`LimitsConfig`].
pub(crate) fn emit(limits: &LimitsConfig) -> Value {
    let put = |m: &mut Mapping, key: &str, value: Value| {
        m.insert(Value::String(key.to_owned()), value);
    };
    let mut login = Mapping::new();
    put(
        &mut login,
        CLIENT_FAILURES,
        limits.login.client_failures.into(),
    );
    put(
        &mut login,
        ACCOUNT_FAILURES,
        limits.login.account_failures.into(),
    );
    put(
        &mut login,
        WINDOW,
        format_go_duration(limits.login.window).into(),
    );
    let mut manifests = Mapping::new();
    let references = u64::try_from(limits.manifest_references).unwrap_or(u64::MAX);
    put(&mut manifests, MAX_REFERENCES, references.into());
    let mut m = Mapping::new();
    put(&mut m, LOGIN, Value::Mapping(login));
    put(&mut m, MANIFESTS, Value::Mapping(manifests));
    Value::Mapping(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let d = LimitsConfig::default();
        assert_eq!(d.login.client_failures, 30);
        assert_eq!(d.login.account_failures, 10);
        assert_eq!(d.login.window, Duration::from_secs(300));
        assert_eq!(d.manifest_references, 1000);
    }

    #[test]
    fn emitted_defaults_use_the_documented_spelling() {
        let text = serde_yaml::to_string(&emit(&LimitsConfig::default())).expect("yaml");
        assert_eq!(
            text,
            "login:\n  clientfailures: 30\n  accountfailures: 10\n  window: 5m\nmanifests:\n  maxreferences: 1000\n"
        );
    }
}
