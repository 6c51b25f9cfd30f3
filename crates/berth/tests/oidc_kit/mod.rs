//! The OIDC tests' fixtures: the identity provider (scripts/oidc/idp.mjs, `oidc-provider` from
//! npm on loopback, stopped by PID), a registry with `auth.oidc` beside the built-in token
//! server whose rules grant by group, and a browser (a cookie jar, redirects followed by hand)
//! that signs in through the provider's login form.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::{Client, Url};

use crate::common::auth::{add_user, basic, builtin_token_auth, jwt_part, send, SERVICE};
use crate::common::oci::Reg;
use crate::common::{write_config, Server};

/// The identity provider, stopped by PID when dropped.
pub struct Idp {
    child: Child,
    pub issuer: String,
}

pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oidc")
}

/// A missing tool: a failure under CI, else a skip with a message.
pub fn missing(what: &str) -> Option<Idp> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("OIDC tests: {what} (CI=true: this is a failure, not a skip)");
    }
    eprintln!("OIDC tests SKIPPED: {what}");
    None
}

impl Idp {
    /// Starts scripts/oidc/idp.mjs (installing its packages with `npm ci` when missing).
    pub fn start() -> Option<Idp> {
        let dir = oidc_dir();
        if Command::new("node").arg("--version").output().is_err() {
            return missing("node is not installed (scripts/install-test-deps.sh installs it)");
        }
        if !dir.join("node_modules/oidc-provider").is_dir() {
            let ok = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return missing("`npm ci` in scripts/oidc failed (is npm installed?)");
            }
        }
        let mut child = Command::new("node")
            .arg("idp.mjs")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node idp.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the identity provider printed its URL");
        let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let issuer = json["issuer"].as_str().expect("issuer").to_owned();
        Some(Idp { child, issuer })
    }

    /// Changes a user at the provider, as its administrator would: `change` is
    /// `{"user": ..., "groups": [...]}` or `{"user": ..., "disabled": true}`.
    pub async fn change_user(&self, change: serde_json::Value) {
        let r = Client::new()
            .post(format!("{}/test/user", self.issuer))
            .body(change.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// How many tokens were revoked at the provider's revocation endpoint.
    pub async fn revocations(&self) -> u64 {
        let r = Client::new()
            .get(format!("{}/test/revocations", self.issuer))
            .send()
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        json["revocations"].as_u64().unwrap()
    }

    /// Makes the provider alter the ID token of its next token response.
    pub async fn tamper(&self, mode: &str) {
        let r = Client::new()
            .post(format!("{}/test/tamper", self.issuer))
            .body(mode.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rules of every test: each group its own repositories.
pub const RULES: &str = "admins: [root]
rules:
  - {repositories: [\"team-a/**\"], groups: [team-a], actions: [pull, push]}
  - {repositories: [\"team-b/**\"], groups: [team-b], actions: [pull]}";

/// Three repositories pushed without auth, then Berth restarted with the built-in token
/// server (rules by group) and `auth.oidc` at `realm`, plus `extra` YAML.
pub async fn registry(realm: &str, extra: &str) -> (Server, tempfile::TempDir) {
    registry_for("berth", realm, extra).await
}

/// [`registry`] as the provider's client `client_id`.
pub async fn registry_for(
    client_id: &str,
    realm: &str,
    extra: &str,
) -> (Server, tempfile::TempDir) {
    registry_with(client_id, "berth-test-secret", realm, extra).await
}

/// [`registry`] as the provider's client `client_id` with `secret`.
pub async fn registry_with(
    client_id: &str,
    secret: &str,
    realm: &str,
    extra: &str,
) -> (Server, tempfile::TempDir) {
    let reg = Reg::start("");
    for repo in ["team-a/app", "team-b/app", "other/app"] {
        reg.push_image(repo, "v1", repo).await;
    }
    let Reg { server, dir, .. } = reg;
    drop(server);
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "root", "root-pw");
    let mut auth = builtin_token_auth(
        "oidc-test",
        &htpasswd,
        &dir.path().join("signing.pem"),
        RULES,
    );
    auth.push_str(&format!(
        "  oidc:\n    realm: {realm}\n    service: Test IdP\n    client_id: {client_id}\n    client_secret: {secret}\n{extra}"
    ));
    let config = write_config(dir.path(), &auth);
    (Server::start(&[&config], &[]), dir)
}

/// An answer, read whole.
pub struct Page {
    pub status: u16,
    pub url: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> String {
        let to = self.headers["location"].to_str().unwrap();
        Url::parse(&self.url).unwrap().join(to).unwrap().to_string()
    }
}

/// A browser: a cookie jar (name → value; every host here is 127.0.0.1, and browsers do
/// not keep cookies apart by port either) and redirects followed by hand.
pub struct Browser {
    client: Client,
    pub jar: Mutex<HashMap<String, String>>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: Client::builder().redirect(Policy::none()).build().unwrap(),
            jar: Mutex::default(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Page {
        let cookies = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookies.is_empty() {
            request
        } else {
            request.header("cookie", cookies)
        };
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut jar = self.jar.lock().unwrap();
            if attributes.to_ascii_lowercase().contains("max-age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let body = r.text().await.unwrap();
        Page {
            status,
            url: url.to_owned(),
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.send(self.client.get(url), url).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request, url).await
    }

    /// Follows redirects from `page`, stopping at the first one to a URL under `stop`.
    pub async fn follow(&self, mut page: Page, stop: &str) -> Result<String, Page> {
        for _ in 0..20 {
            if !(300..400).contains(&page.status) {
                return Err(page);
            }
            let next = page.location();
            if next.starts_with(stop) {
                return Ok(next);
            }
            page = self.get(&next).await;
        }
        panic!("too many redirects");
    }
}

pub fn enc(v: &str) -> String {
    url_query(&[("v", v)])[2..].to_owned()
}

pub fn url_query(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://x/").unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or("").to_owned()
}

pub fn query(url: &str, name: &str) -> String {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Starts a sign-in at Berth and signs in as `user` at the provider: the URL the provider
/// sends the browser back to (not visited yet).
pub async fn to_callback(
    b: &Browser,
    berth: &str,
    idp: &Idp,
    user: &str,
    password: &str,
) -> String {
    let start = b.get(&format!("{berth}/ui/oidc/login")).await;
    assert_eq!(start.status, 303, "{}", start.body);
    let authorize = start.location();
    assert!(authorize.starts_with(&idp.issuer), "{authorize}");
    assert_eq!(query(&authorize, "code_challenge_method"), "S256");
    assert_eq!(query(&authorize, "code_challenge").len(), 43);
    assert_eq!(
        query(&authorize, "redirect_uri"),
        format!("{berth}/ui/oidc/callback")
    );
    assert_eq!(query(&authorize, "scope"), "openid profile email groups");
    // Already signed in at the provider (single sign-on): straight back.
    let form = match b.follow(b.get(&authorize).await, berth).await {
        Ok(back) => return back,
        Err(form) => form,
    };
    assert_eq!(form.status, 200, "{}", form.body);
    let action = form
        .body
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a form");
    let action = Url::parse(&form.url).unwrap().join(action).unwrap();
    let posted = b
        .post(action.as_str(), &[("login", user), ("password", password)])
        .await;
    b.follow(posted, berth)
        .await
        .unwrap_or_else(|p| panic!("no way back to Berth: {} {}", p.status, p.body))
}

/// Signs in as `user` and returns the callback's answer.
pub async fn sign_in(b: &Browser, berth: &str, idp: &Idp, user: &str, password: &str) -> Page {
    let back = to_callback(b, berth, idp, user, password).await;
    b.get(&back).await
}

/// The repositories the repository list links to.
pub async fn listed(b: &Browser, berth: &str) -> Vec<String> {
    let html = b.get(&format!("{berth}/ui/")).await.body;
    ["team-a/app", "team-b/app", "other/app"]
        .into_iter()
        .filter(|r| html.contains(&format!(">{r}</a>")))
        .map(str::to_owned)
        .collect()
}

/// The form token on a page.
pub fn csrf(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned()
}

/// Creates an access token named `name` with `scope` (pull or push) on the signed-in user's
/// "Access tokens" page; the token, shown once.
pub async fn create_token(b: &Browser, berth: &str, name: &str, scope: &str) -> String {
    let form = csrf(&b.get(&format!("{berth}/ui/tokens")).await.body);
    let r = b
        .post(
            &format!("{berth}/ui/tokens"),
            &[
                ("csrf", &form),
                ("action", "create"),
                ("name", name),
                ("scope", scope),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .split("<code class=\"token\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the new token, shown once")
        .to_owned()
}

/// A token from the built-in token server for `user` with `password` (a personal access
/// token here): the status, and what the token grants per repository.
pub async fn token_for(
    berth: &str,
    user: &str,
    password: &str,
    scopes: &[&str],
) -> (u16, Vec<(String, Vec<String>)>) {
    let mut path = format!("/auth/token?service={SERVICE}");
    for s in scopes {
        path.push_str(&format!("&scope={s}"));
    }
    let basic = basic(user, password);
    let r = send(berth, "GET", &path, Some(&basic), None, None).await;
    if r.status != 200 {
        return (r.status, Vec::new());
    }
    let jwt = r.json()["token"].as_str().unwrap().to_owned();
    let access = jwt_part(&jwt, 1)["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let actions = a["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect();
            (a["name"].as_str().unwrap().to_owned(), actions)
        })
        .collect();
    (200, access)
}
