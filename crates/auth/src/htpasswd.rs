//! registry:2's `auth.htpasswd`: HTTP basic auth against an Apache htpasswd file of bcrypt
//! hashes. The file is re-read when it changes (checked with one `stat` per login), verified
//! logins are cached, and bcrypt runs on a bounded blocking pool so that a flood of wrong
//! passwords can neither stall the server nor make a 200-layer pull pay bcrypt 200 times.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::files::Publish;
use crate::limiter::FailureLimiter;
use crate::{Access, AccessController, AuthRequest, Denied, Grant};

/// bcrypt cost of new entries: about 50 ms on one core of a small server; logins are cached.
pub const DEFAULT_COST: u32 = 10;
/// How long a verified login is trusted without running bcrypt again.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Cached logins kept at most (an attacker with many valid accounts cannot grow it further).
const CACHE_MAX: usize = 10_000;
/// bcrypt verifications that may run at once.
const BCRYPT_PARALLEL: usize = 2;
/// A valid bcrypt hash for unknown users, so that they cost the same time as known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        bcrypt::hash("not a password", DEFAULT_COST).unwrap_or_else(|_| String::from("$2y$10$"))
    })
}

/// Why an htpasswd file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// The file could not be read.
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write htpasswd file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A user name that htpasswd cannot hold.
    #[error("invalid user name {0:?}: it must be non-empty and contain no ':' or line break")]
    BadUser(String),
    /// A password bcrypt cannot hold whole.
    #[error("the password is {0} bytes long; bcrypt uses only the first {MAX_PASSWORD_BYTES}, so longer passwords are refused (as Go's bcrypt, and so registry:2's tooling, does)")]
    PasswordTooLong(usize),
    /// bcrypt failed (cannot happen with valid costs).
    #[error("bcrypt: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
}

/// The users of one htpasswd file, as parsed.
#[derive(Debug, Default, Clone)]
pub struct Users {
    hashes: HashMap<String, String>,
    /// Lines that were skipped, with why (never the hash itself).
    pub warnings: Vec<String>,
}

impl Users {
    /// Parses htpasswd text: `user:hash` lines; blank lines and `#` comments are skipped.
    /// Only bcrypt hashes (`$2y$`, `$2a$`, `$2b$`) are accepted, as in registry:2; other
    /// formats (`{SHA}`, `$apr1$`, crypt) are reported and that user cannot log in.
    pub fn parse(text: &str) -> Users {
        let mut users = Users::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                users.warnings.push(format!("line {}: no ':'", n + 1));
                continue;
            };
            if !["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
                users.warnings.push(format!(
                    "line {}: user {user:?} has a hash that is not bcrypt; only bcrypt is accepted (create it with `berth htpasswd`)",
                    n + 1
                ));
                continue;
            }
            users.hashes.insert(user.to_owned(), hash.to_owned());
        }
        users
    }

    /// The number of users that can log in.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether no user can log in.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `user` has a (usable) entry.
    pub fn contains(&self, user: &str) -> bool {
        self.hashes.contains_key(user)
    }

    fn hash(&self, user: &str) -> Option<&str> {
        self.hashes.get(user).map(String::as_str)
    }
}

/// File identity used to notice a replaced or edited file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// An htpasswd file that is re-read when it changes.
#[derive(Debug)]
pub struct HtpasswdFile {
    path: PathBuf,
    loaded: Mutex<(Stamp, Arc<Users>)>,
}

impl HtpasswdFile {
    /// Reads the file; a missing or unreadable file is an error (at startup, refuse to run
    /// rather than lock everyone out or let everyone in).
    pub fn open(path: &Path) -> Result<HtpasswdFile, HtpasswdError> {
        let read_err = |source| HtpasswdError::Read {
            path: path.to_owned(),
            source,
        };
        let st = stamp(path).map_err(read_err)?;
        let users = Users::parse(&std::fs::read_to_string(path).map_err(read_err)?);
        for w in &users.warnings {
            tracing::warn!(path = %path.display(), "htpasswd: {w}");
        }
        Ok(HtpasswdFile {
            path: path.to_owned(),
            loaded: Mutex::new((st, Arc::new(users))),
        })
    }

    /// The current users, re-read if the file changed. If the file became unreadable, the
    /// last good contents stay in force and the error is logged.
    pub fn users(&self) -> Arc<Users> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        match stamp(&self.path) {
            Ok(st) if st != loaded.0 => match std::fs::read_to_string(&self.path) {
                Ok(text) => {
                    let users = Users::parse(&text);
                    for w in &users.warnings {
                        tracing::warn!(path = %self.path.display(), "htpasswd: {w}");
                    }
                    tracing::info!(path = %self.path.display(), users = users.len(), "htpasswd file reloaded");
                    *loaded = (st, Arc::new(users));
                }
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "htpasswd file unreadable; keeping the previous users")
                }
            },
            Ok(_) => {}
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "htpasswd file unreadable; keeping the previous users")
            }
        }
        loaded.1.clone()
    }
}

/// Decodes `Authorization: Basic base64(user:password)`.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Checks user/password pairs against an [`HtpasswdFile`] with a cache of verified logins.
#[derive(Debug)]
pub struct Verifier {
    file: HtpasswdFile,
    /// sha256(user, password) → (the hash it verified against, when).
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    bcrypt_slots: Semaphore,
}

impl Verifier {
    /// A verifier for `file`.
    pub fn new(file: HtpasswdFile) -> Verifier {
        Verifier {
            file,
            cache: Mutex::new(HashMap::new()),
            bcrypt_slots: Semaphore::new(BCRYPT_PARALLEL),
        }
    }

    /// Whether the file (as last read) has `user`.
    pub fn has_user(&self, user: &str) -> bool {
        self.file.users().contains(user)
    }

    /// Whether `password` is `user`'s. A cached success counts only while the user's hash in
    /// the file is unchanged, so a password change or removal takes effect at once.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            // No stored password is that long (see `entry`); bcrypt would compare only the
            // first 72 bytes and accept whatever follows.
            return false;
        }
        let users = self.file.users();
        let current = users.hash(user);
        let key = cache_key(user, password);
        if let Some(hash) = current {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((verified, at)) = cache.get(&key) {
                if at.elapsed() < CACHE_TTL
                    && bool::from(verified.as_bytes().ct_eq(hash.as_bytes()))
                {
                    return true;
                }
            }
        }
        let hash = current.unwrap_or_else(|| dummy_hash()).to_owned();
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let (pw, h) = (password.to_owned(), hash.clone());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &h).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok && current.is_some() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, (hash, Instant::now()));
        }
        ok && current.is_some()
    }
}

fn cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// registry:2's htpasswd access controller: any valid login may do anything.
#[derive(Debug)]
pub struct HtpasswdController {
    realm: String,
    verifier: Verifier,
    limiter: FailureLimiter,
}

impl HtpasswdController {
    /// A controller for `realm` and the htpasswd file at `path`.
    pub fn new(realm: &str, path: &Path, limiter: FailureLimiter) -> Result<Self, HtpasswdError> {
        Ok(HtpasswdController {
            realm: realm.to_owned(),
            verifier: Verifier::new(HtpasswdFile::open(path)?),
            limiter,
        })
    }

    fn challenge(&self, message: &str) -> Denied {
        Denied::Unauthorized {
            challenge: format!("Basic realm=\"{}\"", self.realm.replace('"', "")),
            message: message.to_owned(),
        }
    }
}

/// Runs a login through the failure limiter: refuse while the client or the account is over
/// its limit (before the password is checked), count failures, and on success forget the
/// account's failures.
pub async fn limited_login(
    limiter: &FailureLimiter,
    verifier: &Verifier,
    client: Option<IpAddr>,
    user: &str,
    password: &str,
) -> Result<bool, Denied> {
    limiter
        .check(client, user)
        .map_err(|retry_after| Denied::TooManyAttempts { retry_after })?;
    let ok = verifier.verify(user, password).await;
    if ok {
        limiter.succeeded(user);
    } else {
        tracing::info!(user, client = client_text(client), "failed login");
        limiter.failed(client, user);
    }
    Ok(ok)
}

/// A client address for log lines: the address, or `-` when unknown.
pub fn client_text(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
}

#[async_trait::async_trait]
impl AccessController for HtpasswdController {
    async fn authorize(
        &self,
        request: &AuthRequest<'_>,
        _needed: &[Access],
    ) -> Result<Grant, Denied> {
        let Some(header) = request.authorization else {
            return Err(self.challenge("authentication required"));
        };
        let Some((user, password)) = parse_basic(header) else {
            return Err(self.challenge("authentication required"));
        };
        if limited_login(
            &self.limiter,
            &self.verifier,
            request.client,
            &user,
            &password,
        )
        .await?
        {
            Ok(Grant {
                subject: Some(user),
                groups: Vec::new(),
            })
        } else {
            Err(self.challenge("invalid username or password"))
        }
    }
}

/// bcrypt reads at most this many bytes of a password and silently ignores the rest.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// The htpasswd line for `user` with a new bcrypt hash of `password`. A password over
/// [`MAX_PASSWORD_BYTES`] is refused: its first 72 bytes followed by anything would match.
pub fn entry(user: &str, password: &str, cost: u32) -> Result<String, HtpasswdError> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        return Err(HtpasswdError::BadUser(user.to_owned()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(HtpasswdError::PasswordTooLong(password.len()));
    }
    // `$2y$` like Apache's htpasswd -B and registry:2's documentation.
    let hash = bcrypt::hash_with_result(password, cost)?.format_for_version(bcrypt::Version::TwoY);
    Ok(format!("{user}:{hash}"))
}

/// Adds `line`'s user to the file at `path`, or replaces that user's line; other lines are
/// kept as they are. The file is created (mode 0600) if missing and replaced atomically.
pub fn upsert(path: &Path, line: &str) -> Result<(), HtpasswdError> {
    use std::os::unix::fs::PermissionsExt as _;
    let write_err = |source| HtpasswdError::Write {
        path: path.to_owned(),
        source,
    };
    let user = line.split(':').next().unwrap_or_default();
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(HtpasswdError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    for l in existing.as_deref().unwrap_or("").lines() {
        if l.split(':').next() == Some(user) && !replaced {
            lines.push(line.to_owned());
            replaced = true;
        } else {
            lines.push(l.to_owned());
        }
    }
    if !replaced {
        lines.push(line.to_owned());
    }
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o600,
    };
    let text = lines.join("\n") + "\n";
    crate::files::write_atomically(path, text.as_bytes(), mode, Publish::Replace)
        .map(|_| ())
        .map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(dir: &Path, lines: &[String]) -> (HtpasswdController, PathBuf) {
        let path = dir.join("htpasswd");
        std::fs::write(&path, lines.join("\n")).expect("write");
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        (
            HtpasswdController::new("Berth", &path, limiter).expect("open"),
            path,
        )
    }

    fn basic(user: &str, password: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b}")
    }

    async fn login(
        c: &HtpasswdController,
        header: Option<&str>,
        ip: &str,
    ) -> Result<Grant, Denied> {
        let request = AuthRequest {
            authorization: header,
            client: Some(ip.parse().expect("ip")),
            origin: None,
        };
        c.authorize(&request, &[]).await
    }

    #[tokio::test]
    async fn logins_reload_and_lockout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alice = entry("alice", "s3cret", 4).expect("entry");
        let (c, path) = controller(dir.path(), &[alice, "legacy:{SHA}abc".into()]);
        let ok = login(&c, Some(&basic("alice", "s3cret")), "10.0.0.1").await;
        assert_eq!(ok.expect("alice").subject.as_deref(), Some("alice"));
        // Cached: the second login does not need bcrypt, and still checks the password.
        assert!(login(&c, Some(&basic("alice", "s3cret")), "10.0.0.1")
            .await
            .is_ok());
        assert!(login(&c, Some(&basic("alice", "wrong")), "10.0.0.1")
            .await
            .is_err());
        // Anonymous and non-bcrypt users get the Basic challenge.
        match login(&c, None, "10.0.0.1").await {
            Err(Denied::Unauthorized { challenge, .. }) => {
                assert_eq!(challenge, "Basic realm=\"Berth\"")
            }
            other => panic!("{other:?}"),
        }
        assert!(login(&c, Some(&basic("legacy", "abc")), "10.0.0.1")
            .await
            .is_err());

        // A changed password takes effect without a restart, even for a cached login.
        std::thread::sleep(Duration::from_millis(10));
        upsert(&path, &entry("alice", "n3w", 4).expect("entry")).expect("upsert");
        assert!(login(&c, Some(&basic("alice", "s3cret")), "10.0.0.2")
            .await
            .is_err());
        assert!(login(&c, Some(&basic("alice", "n3w")), "10.0.0.2")
            .await
            .is_ok());

        // Three failures lock the client and the account out, even with the right password;
        // other accounts from other clients go on.
        for _ in 0..3 {
            assert!(login(&c, Some(&basic("alice", "guess")), "10.0.0.3")
                .await
                .is_err());
        }
        for (user, ip) in [("alice", "10.0.0.3"), ("alice", "10.0.0.4")] {
            assert!(matches!(
                login(&c, Some(&basic(user, "n3w")), ip).await,
                Err(Denied::TooManyAttempts { .. })
            ));
        }
        assert!(matches!(
            login(&c, Some(&basic("bob", "x")), "10.0.0.3").await,
            Err(Denied::TooManyAttempts { .. })
        ));
        assert!(matches!(
            login(&c, Some(&basic("bob", "x")), "10.0.0.4").await,
            Err(Denied::Unauthorized { .. })
        ));
    }

    #[tokio::test]
    async fn passwords_over_72_bytes_are_refused() {
        let long = "p".repeat(100);
        assert!(matches!(
            entry("alice", &long, 4),
            Err(HtpasswdError::PasswordTooLong(100))
        ));
        let exact = "p".repeat(MAX_PASSWORD_BYTES);
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, _) = controller(dir.path(), &[entry("alice", &exact, 4).expect("72 bytes")]);
        assert!(login(&c, Some(&basic("alice", &exact)), "10.0.9.1")
            .await
            .is_ok());
        // The first 72 bytes plus anything: bcrypt alone would accept it.
        let extended = format!("{exact}anything");
        assert!(login(&c, Some(&basic("alice", &extended)), "10.0.9.1")
            .await
            .is_err());
    }

    #[test]
    fn upsert_keeps_other_lines_and_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("htpasswd");
        upsert(&path, "a:$2y$04$x").expect("create");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        upsert(&path, "b:$2y$04$y").expect("add");
        upsert(&path, "a:$2y$04$z").expect("replace");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "a:$2y$04$z\nb:$2y$04$y\n"
        );
        assert!(entry("a:b", "pw", 4).is_err());
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(
            parse_basic(&basic("u", "p:w")),
            Some(("u".into(), "p:w".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".*") {
            let _ = parse_basic(&s);
            let _ = Users::parse(&s);
        }
    }
}
