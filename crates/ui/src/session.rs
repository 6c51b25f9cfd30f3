//! Login sessions (htpasswd and built-in token server users, and OIDC sign-ins): a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` over TLS), the login it stands for kept server-side with an expiry, in a
//! store of bounded size. Every page re-checks the login with the access controller, so a
//! removed user or a changed password ends the session at once; an OIDC session holds what the
//! identity provider vouched for at sign-in (user and groups) until it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{header, HeaderMap};

/// The cookie's name.
pub const COOKIE: &str = "berth_ui_session";
/// How long a session lasts after login.
pub const TTL: Duration = Duration::from_secs(8 * 3600);
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
    /// When the session ends.
    expires: Instant,
}

/// How a session's user logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// With a user name and password: the `Authorization` value the access controller checks
    /// on every page. Kept in memory only, never sent back to the browser.
    Password(String),
    /// With the OIDC identity provider, which put the user in these groups.
    Oidc {
        /// The groups from the ID token's groups claim.
        groups: Vec<String>,
        /// The ID token, the hint of a logout at the provider (in memory only).
        id_token: String,
    },
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
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            id.clone(),
            Session {
                user,
                login,
                csrf: random_hex(),
                expires: Instant::now() + TTL,
            },
        );
        id
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// How many sessions are kept (expired ones included until they are swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
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
            TTL.as_secs()
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
