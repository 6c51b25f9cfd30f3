//! Login sessions (htpasswd and built-in token server users, and OIDC sign-ins): a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` over TLS), the login it stands for kept server-side, in a store of bounded
//! size.
//!
//! Lifetime: a session ends after [`IDLE`] without a page, and at the latest [`MAX_AGE`] after
//! the login, so it never runs out while someone is using it (the complaint about other
//! registries' UIs) and never lives forever. Every page re-checks a password login with the
//! access controller, so a removed user or a changed password ends the session at once. An
//! OIDC session is checked again with the identity provider every `auth.oidc.refresh_interval`
//! through its refresh token ([`crate::oidc::recheck`]): new groups apply, a refusal ends it.
//! A provider that issues no refresh token cannot be asked again, so such a session ends
//! [`UNREFRESHABLE_MAX_AGE`] after sign-in, holding the groups of the sign-in until then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{header, HeaderMap};

/// The cookie's name.
pub const COOKIE: &str = "berth_ui_session";
/// A session without a page for this long ends.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// A session ends at the latest this long after its login.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// An OIDC session the provider gave no refresh token for ends this long after sign-in.
pub const UNREFRESHABLE_MAX_AGE: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept: past it, expired ones are dropped, then the oldest.
const MAX_SESSIONS: usize = 10_000;

/// A logged-in browser.
#[derive(Clone)]
pub struct Session {
    /// The user name.
    pub user: String,
    /// How the user logged in.
    pub login: Login,
    /// The token every state-changing form of this session carries (256 random bits, hex):
    /// another site cannot read it, so it cannot forge the form.
    pub csrf: String,
    /// When the login happened.
    started: Instant,
    /// The last page.
    seen: Instant,
}

impl Session {
    /// When the session ends if no page comes before.
    fn expires(&self) -> Instant {
        let max_age = match &self.login {
            Login::Oidc(oidc) if oidc.refresh_token.is_none() => UNREFRESHABLE_MAX_AGE,
            _ => MAX_AGE,
        };
        (self.seen + IDLE).min(self.started + max_age)
    }
}

/// How a session's user logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// With a user name and password: the `Authorization` value the access controller checks
    /// on every page. Kept in memory only, never sent back to the browser.
    Password(String),
    /// With the OIDC identity provider.
    Oidc(OidcLogin),
}

/// What the identity provider said about a session's user (in memory only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcLogin {
    /// The ID token's subject: a refreshed ID token must name the same (OIDC Core 12.2).
    pub subject: String,
    /// The groups from the ID token's groups claim, as of the last check.
    pub groups: Vec<String>,
    /// The latest ID token, the hint of a logout at the provider.
    pub id_token: String,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<String>,
    /// When the provider last vouched for the user (sign-in or refresh), or a check was last
    /// started: one check at a time per session.
    pub checked: Instant,
}

/// The server-side session store.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session and returns its id (256 random bits, hex).
    pub fn create(&self, user: String, login: Login) -> String {
        let id = random_hex();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| s.expires() > now);
            if map.len() >= MAX_SESSIONS {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires())
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        let now = Instant::now();
        map.insert(
            id.clone(),
            Session {
                user,
                login,
                csrf: random_hex(),
                started: now,
                seen: now,
            },
        );
        id
    }

    /// The live session with this id; a page of it keeps it from going idle.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.get_at(id, Instant::now())
    }

    /// [`Sessions::get`] at the time `now`.
    fn get_at(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(s) if s.expires() > now => {
                s.seen = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// The refresh token of the OIDC session `id` when its check with the provider is due
    /// (last one `interval` ago or more); marks the check started, so that pages arriving
    /// meanwhile do not redeem the same token again (a provider may take a reused refresh
    /// token for a stolen one and revoke the grant).
    pub fn refresh_due(&self, id: &str, interval: Duration) -> Option<String> {
        let mut map = self.lock();
        let Some(Session {
            login: Login::Oidc(oidc),
            ..
        }) = map.get_mut(id)
        else {
            return None;
        };
        let token = oidc.refresh_token.clone()?;
        if oidc.checked.elapsed() < interval {
            return None;
        }
        oidc.checked = Instant::now();
        Some(token)
    }

    /// Keeps what a successful check with the provider gave for session `id`.
    pub fn refreshed(
        &self,
        id: &str,
        groups: Option<Vec<String>>,
        id_token: Option<String>,
        refresh_token: Option<String>,
    ) {
        let mut map = self.lock();
        if let Some(Session {
            login: Login::Oidc(oidc),
            ..
        }) = map.get_mut(id)
        {
            if let Some(groups) = groups {
                oidc.groups = groups;
            }
            if let Some(token) = id_token {
                oidc.id_token = token;
            }
            if let Some(token) = refresh_token {
                oidc.refresh_token = Some(token);
            }
            oidc.checked = Instant::now();
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sessions are kept (expired ones included until they are swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// 256 random bits, hex.
pub fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The session id in the request's `Cookie` headers.
pub fn cookie_id(headers: &HeaderMap) -> Option<String> {
    cookie_hex(headers, COOKIE)
}

/// The value of the cookie `name` when it is 256 bits in hex, as this UI sets them.
pub fn cookie_hex(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value for a new session (`id`) or for ending one (`None`).
pub fn set_cookie(id: Option<&str>, path: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            MAX_AGE.as_secs()
        ),
        None => format!("{COOKIE}=; Path={path}; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether a state-changing request (login, logout, delete) comes from this site: its `Origin`, when
/// sent, names the host the request went to, and `Sec-Fetch-Site`, when sent, says
/// same-origin. Both cookies (`SameSite=Strict`) and this check stop cross-site posts.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (get("origin"), get("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host),
        (Some(_), None) => false,
    }
}

/// The fields of an `application/x-www-form-urlencoded` body.
pub fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn store_is_bounded_and_expires() {
        let s = Sessions::default();
        let id = s.create("alice".into(), Login::Password("Basic x".into()));
        assert_eq!(id.len(), 64);
        assert_eq!(s.get(&id).map(|s| s.user), Some("alice".to_owned()));
        s.remove(&id);
        assert!(s.get(&id).is_none());
        for _ in 0..MAX_SESSIONS + 5 {
            s.create("u".into(), Login::Password("a".into()));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }

    fn oidc(refresh_token: Option<&str>) -> Login {
        Login::Oidc(OidcLogin {
            subject: "s".into(),
            groups: vec!["a".into()],
            id_token: "t".into(),
            refresh_token: refresh_token.map(str::to_owned),
            checked: Instant::now(),
        })
    }

    #[test]
    fn idle_and_maximum_age() {
        let s = Sessions::default();
        let h = |n: u64| Instant::now() + Duration::from_secs(n * 3600);
        // In use for 23 hours, a page every 7: alive; at 25 hours: over the maximum age.
        let id = s.create("alice".into(), Login::Password("Basic x".into()));
        for hour in [7, 14, 21, 23] {
            assert!(s.get_at(&id, h(hour)).is_some(), "in use at hour {hour}");
        }
        assert!(
            s.get_at(&id, h(25)).is_none(),
            "24 hours after the login it ends"
        );
        // Idle for more than 8 hours: ended.
        let id = s.create("alice".into(), Login::Password("Basic x".into()));
        assert!(s.get_at(&id, h(9)).is_none());
        // An OIDC session without a refresh token ends 8 hours after sign-in, used or not;
        // with one it lives like a password session.
        let id = s.create("bob".into(), oidc(None));
        assert!(s.get_at(&id, h(5)).is_some());
        assert!(s.get_at(&id, h(9)).is_none());
        let id = s.create("bob".into(), oidc(Some("r")));
        assert!(s.get_at(&id, h(5)).is_some());
        assert!(s.get_at(&id, h(9)).is_some());
    }

    #[test]
    fn one_refresh_at_a_time() {
        let s = Sessions::default();
        let interval = Duration::from_secs(300);
        let id = s.create("bob".into(), oidc(Some("r1")));
        assert_eq!(s.refresh_due(&id, interval), None, "just signed in");
        let id = s.create("bob".into(), oidc(Some("r1")));
        assert_eq!(s.refresh_due(&id, Duration::ZERO).as_deref(), Some("r1"));
        assert_eq!(s.refresh_due(&id, interval), None, "a check is under way");
        s.refreshed(&id, Some(vec!["b".into()]), None, Some("r2".into()));
        let Some(Login::Oidc(o)) = s.get(&id).map(|s| s.login) else {
            panic!("an OIDC session")
        };
        assert_eq!(
            (o.groups, o.id_token, o.refresh_token.as_deref()),
            (vec!["b".to_owned()], "t".to_owned(), Some("r2"))
        );
        let none = s.create("carol".into(), oidc(None));
        assert_eq!(
            s.refresh_due(&none, Duration::ZERO),
            None,
            "nothing to redeem"
        );
        let password = s.create("dave".into(), Login::Password("Basic x".into()));
        assert_eq!(s.refresh_due(&password, Duration::ZERO), None);
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        let id = "ab".repeat(32);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={id}")).expect("value"),
        );
        assert_eq!(cookie_id(&h), Some(id.clone()));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("berth_ui_session=../../etc"),
        );
        assert_eq!(cookie_id(&h), None);
        let c = set_cookie(Some(&id), "/ui/", true);
        assert!(
            c.contains("HttpOnly; SameSite=Strict") && c.ends_with("; Secure"),
            "{c}"
        );
    }

    #[test]
    fn origin_check() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("reg.test:5000"));
        assert!(same_origin(&h));
        h.insert("origin", HeaderValue::from_static("http://reg.test:5000"));
        assert!(same_origin(&h));
        h.insert("origin", HeaderValue::from_static("https://evil.test"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn forms() {
        let f = form_fields(b"username=al%20ice&password=a+b%26c");
        assert_eq!(f.get("username").map(String::as_str), Some("al ice"));
        assert_eq!(f.get("password").map(String::as_str), Some("a b&c"));
    }
}
