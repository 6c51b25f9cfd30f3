//! The authorization matrix machinery (tests/auth_matrix.rs): P-256 signing keys, hand-made
//! registry tokens (valid, expired, foreign, tampered), requests from any loopback address
//! (so that wrong logins never trip the per-client failure limit), a registry with fixture
//! images, and the run of a table of rows against a list of callers, checking every cell.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use reqwest::redirect::Policy;
use reqwest::{Client, Method};
use serde_json::{json, Value};
use tempfile::TempDir;

use super::oci::{descriptor, image_manifest, sha256, Resp, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use super::{write_config, Server};

/// The token mode's `service` (every token's `aud`).
pub const SERVICE: &str = "berth-matrix";
/// The htpasswd mode's realm.
pub const REALM: &str = "matrix-realm";
/// What PATCH and PUT send to an upload session.
pub const CHUNK: &[u8] = b"a chunk of an upload";

/// A P-256 key: PKCS#8 PEM and its libtrust key ID (the `kid` registry:2 and Berth use).
pub struct Key {
    pub pem: String,
    pub kid: String,
    pub spki_der: Vec<u8>,
}

impl Key {
    pub fn generate() -> Key {
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let spki_der = secret.public_key().to_public_key_der().unwrap().into_vec();
        Key {
            kid: berth_auth::token::libtrust_key_id(&spki_der),
            pem,
            spki_der,
        }
    }

    /// Writes the PEM to `path` with mode 0600, as the server wants its key.
    pub fn write(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, &self.pem).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// An ES256 JWT of `claims` with header `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// Claims granting pull, push and delete on `repos` and the catalog, valid now.
pub fn full_claims(iss: &str, aud: &str, sub: &str, repos: &[&str]) -> Value {
    let mut access: Vec<Value> = repos
        .iter()
        .map(|r| json!({"type": "repository", "name": r, "actions": ["pull", "push", "delete"]}))
        .collect();
    access.push(json!({"type": "registry", "name": "catalog", "actions": ["*"]}));
    let t = now();
    json!({"iss": iss, "sub": sub, "aud": aud, "exp": t + 300, "nbf": t - 10, "iat": t - 10,
           "jti": format!("matrix-{t}-{sub}"), "access": access})
}

/// The JSON of a JWT's header (`part` 0) or payload (`part` 1).
pub fn jwt_part(token: &str, part: usize) -> Value {
    let b64 = token.split('.').nth(part).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

/// `token` with its payload replaced by `claims`, keeping header and signature.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// `token` with one character in the middle of its payload changed.
pub fn flip_payload_char(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = parts[1].as_bytes().to_vec();
    let i = payload.len() / 2;
    payload[i] = if payload[i] == b'A' { b'B' } else { b'A' };
    let payload = String::from_utf8(payload).unwrap();
    assert_ne!(payload, parts[1]);
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// An unsigned (`alg: none`) token of `claims`.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!("{}.{}.", enc(&header), enc(claims))
}

/// HS256 "signed" with `secret` (the algorithm-confusion attack: the public key as HMAC key).
pub fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// Adds `user` to the htpasswd file (bcrypt cost 4) with `berth htpasswd`.
pub fn add_user(htpasswd: &Path, user: &str, password: &str) {
    use std::io::Write as _;
    let mut child = Command::new(super::BERTH)
        .args(["htpasswd", "--password-stdin", "--cost", "4", "-f"])
        .arg(htpasswd)
        .arg(user)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A fresh loopback source address (127.1.x.y) per call: the server counts failed logins
/// per client address, and every wrong login of the matrix must get its real answer.
pub fn fresh_loopback() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8))
}

/// The `auth:` section of the built-in token server (service [`SERVICE`], `autoredirect`),
/// with users from `htpasswd`, tokens signed with `signingkey` (created if missing), and
/// `builtin` YAML lines (admins, rules, ttl) added under `builtin:` as they are.
pub fn builtin_token_auth(
    issuer: &str,
    htpasswd: &Path,
    signingkey: &Path,
    builtin: &str,
) -> String {
    let mut yaml = format!(
        "auth:\n  token:\n    realm: http://unused.invalid/auth/token\n    autoredirect: true\n    service: {SERVICE}\n    issuer: {issuer}\n    builtin:\n      htpasswd: {}\n      signingkey: {}\n",
        htpasswd.display(),
        signingkey.display()
    );
    for line in builtin.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str(&format!("      {line}\n"));
    }
    yaml
}

/// A token from the built-in token server at `url` (asserting 200), for `login` or anonymous.
pub async fn token(url: &str, login: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let mut path = format!("/auth/token?service={SERVICE}");
    for s in scopes {
        path.push_str(&format!("&scope={s}"));
    }
    let authorization = login.map(|(u, p)| basic(u, p));
    let r = send(url, "GET", &path, authorization.as_deref(), None, None).await;
    r.assert_status(200);
    r.json()["token"].as_str().unwrap().to_owned()
}

/// `Bearer <token>` for `login` or anonymous.
pub async fn bearer(url: &str, login: Option<(&str, &str)>, scopes: &[&str]) -> String {
    format!("Bearer {}", token(url, login, scopes).await)
}

/// One request with an optional `Authorization` header and body, from `from` if given.
pub async fn send(
    url: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
    from: Option<IpAddr>,
) -> Resp {
    let client = Client::builder()
        .redirect(Policy::none())
        .local_address(from)
        .build()
        .unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{url}{path}"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    let r = req.send().await.unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// Checks one cell: exact status; for errors the OCI code (not for HEAD, which has no body);
/// the exact `WWW-Authenticate` when `challenge` is given, none at all otherwise.
pub fn check(
    r: &Resp,
    method: &str,
    status: u16,
    code: Option<&str>,
    challenge: Option<&str>,
) -> Result<(), String> {
    let got = || {
        format!(
            "got {} {:?} body {}",
            r.status,
            r.header("www-authenticate"),
            r.text()
        )
    };
    if r.status != status {
        return Err(format!("want status {status}, {}", got()));
    }
    if let (Some(code), false) = (code, method == "HEAD") {
        let body: Value = serde_json::from_slice(&r.body).map_err(|_| got())?;
        if body["errors"][0]["code"] != code {
            return Err(format!("want code {code}, {}", got()));
        }
    }
    if method == "HEAD" && !r.body.is_empty() {
        return Err(format!("HEAD with a body, {}", got()));
    }
    match challenge {
        Some(c) if r.header("www-authenticate") != c => {
            Err(format!("want challenge {c}, {}", got()))
        }
        None if r.has("www-authenticate") => Err(format!("unexpected challenge, {}", got())),
        _ => Ok(()),
    }
}

/// One cell's expected answer for a caller holding a valid token.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// This success status.
    Ok(u16),
    /// Allowed, and this error (status, OCI code).
    No(u16, &'static str),
    /// 401 `UNAUTHORIZED` with `error="insufficient_scope"`.
    X,
}

/// The answers the matrices' rows use most.
pub const S200: Want = Want::Ok(200);
pub const S201: Want = Want::Ok(201);
pub const S202: Want = Want::Ok(202);
pub const S204: Want = Want::Ok(204);
pub const MU: Want = Want::No(404, "MANIFEST_UNKNOWN");
pub const BU: Want = Want::No(404, "BLOB_UNKNOWN");
pub const NU: Want = Want::No(404, "NAME_UNKNOWN");
pub const DENIED: Want = Want::No(403, "DENIED");

/// (method, path template, scope of the challenge, answers per valid-token column).
pub struct Row(
    pub &'static str,
    pub &'static str,
    pub &'static str,
    pub [Want; 5],
);

/// How a caller's answers follow from a row.
#[derive(Clone, Copy)]
pub enum Expect {
    /// A valid token (or valid htpasswd login): the row's column.
    Column(usize),
    /// No bearer token: 401 with the row's challenge, no `error`.
    NoToken,
    /// A bearer token that is not valid: 401 with `error="invalid_token"`.
    Invalid,
    /// htpasswd mode without valid credentials: 401 with the Basic challenge.
    Basic,
}

pub struct Caller {
    pub name: &'static str,
    pub authorization: Option<String>,
    pub expect: Expect,
    /// Send from a fresh loopback address (wrong logins count per client address).
    pub fresh_ip: bool,
}

pub fn caller(name: &'static str, authorization: Option<String>, expect: Expect) -> Caller {
    Caller {
        name,
        authorization,
        expect,
        fresh_ip: false,
    }
}

/// A running registry with fixture images pushed by `owner`: one image in team/app and
/// public/base (`{m}` manifest, `{l}` layer), another in team/secret (`{sm}`, `{sl}`), a blob
/// only in public/base (`{pl}`); `{nm}`/`{nb}` exist nowhere, `{cd}` is [`CHUNK`]'s digest
/// and `{u}` a new upload session in team/app, created by `owner` for each cell.
pub struct Fix {
    pub server: Server,
    pub dir: TempDir,
    pub vars: HashMap<&'static str, String>,
    /// (repository, its image manifest) for PUT rows.
    manifests: Vec<(&'static str, String)>,
    owner: String,
}

impl Fix {
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Starts `berth serve` with `extra` config; `login` gives the owner's `Authorization`.
    pub async fn start(extra: &str, dir: TempDir, login: impl AsyncFnOnce(&str) -> String) -> Fix {
        let config = write_config(dir.path(), extra);
        let server = Server::start(&[&config], &[]);
        let owner = login(&server.url).await;
        let url = server.url.clone();
        let push = async |method: &str, path: &str, media_type: &str, data: &[u8]| {
            let body = Some((media_type, data.to_vec()));
            let r = send(&url, method, path, Some(&owner), body, None).await;
            r.assert_status(201);
        };
        let (mut vars, mut manifests) = (HashMap::new(), Vec::new());
        for (repo, seed, m, l) in [
            ("team/app", "app", "{m}", "{l}"),
            ("public/base", "app", "{m}", "{l}"),
            ("team/secret", "secret", "{sm}", "{sl}"),
        ] {
            let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
            let layer = format!("layer of {seed}").into_bytes();
            for blob in [config.as_bytes(), &layer] {
                let path = format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(blob));
                push("POST", &path, "application/octet-stream", blob).await;
            }
            let config = descriptor(OCI_CONFIG, config.as_bytes());
            let body = image_manifest(OCI_MANIFEST, config, &[descriptor(OCI_LAYER, &layer)]);
            let path = format!("/v2/{repo}/manifests/v1");
            push("PUT", &path, OCI_MANIFEST, body.as_bytes()).await;
            vars.insert(m, sha256(body.as_bytes()));
            vars.insert(l, sha256(&layer));
            manifests.push((repo, body));
        }
        let extra = b"public extra blob";
        let path = format!("/v2/public/base/blobs/uploads/?digest={}", sha256(extra));
        push("POST", &path, "application/octet-stream", extra).await;
        vars.insert("{pl}", sha256(extra));
        vars.insert("{nm}", sha256(b"no such manifest"));
        vars.insert("{nb}", sha256(b"no such blob"));
        vars.insert("{cd}", sha256(CHUNK));
        Fix {
            server,
            dir,
            vars,
            manifests,
            owner,
        }
    }

    /// The token mode's `Bearer` challenge for `scope`, with `error` if given.
    pub fn bearer(&self, scope: &str, error: Option<&str>) -> String {
        let mut c = format!(
            "Bearer realm=\"{}/auth/token\",service=\"{SERVICE}\"",
            self.url()
        );
        if !scope.is_empty() {
            c.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }

    /// The row's path with placeholders filled in; `{u}` becomes a new upload session.
    async fn path(&self, template: &str) -> String {
        let mut path = template.to_owned();
        for (k, v) in &self.vars {
            path = path.replace(k, v);
        }
        if path.contains("{u}") {
            let start = "/v2/team/app/blobs/uploads/";
            let r = send(self.url(), "POST", start, Some(&self.owner), None, None).await;
            r.assert_status(202);
            path = path.replace("{u}", r.header("docker-upload-uuid"));
        }
        path
    }

    /// The body a row sends: a manifest of the path's repository for PUT on manifests,
    /// [`CHUNK`] for PATCH and PUT on an upload session.
    fn body(&self, method: &str, path: &str) -> Option<(&'static str, Vec<u8>)> {
        match (method, path.contains("/blobs/uploads/")) {
            ("PUT", false) => self
                .manifests
                .iter()
                .find(|(repo, _)| path.starts_with(&format!("/v2/{repo}/")))
                .map(|(_, body)| (OCI_MANIFEST, body.clone().into_bytes())),
            ("PUT" | "PATCH", true) => Some(("application/octet-stream", CHUNK.to_vec())),
            _ => None,
        }
    }

    /// Runs every row for every caller; returns the number of cells and the failures.
    pub async fn run(&self, rows: &[Row], callers: &[Caller]) -> (usize, Vec<String>) {
        let (mut cells, mut failures) = (0, Vec::new());
        for Row(method, template, scope, wants) in rows {
            for c in callers {
                let path = self.path(template).await;
                let body = self.body(method, &path);
                let from = c.fresh_ip.then(fresh_loopback);
                let authorization = c.authorization.as_deref();
                let r = send(self.url(), method, &path, authorization, body, from).await;
                let unauthorized = |challenge| (401, Some("UNAUTHORIZED"), Some(challenge));
                let (status, code, challenge) = match c.expect {
                    Expect::Column(i) => match wants[i] {
                        Want::Ok(s) => (s, None, None),
                        Want::No(s, code) => (s, Some(code), None),
                        Want::X => unauthorized(self.bearer(scope, Some("insufficient_scope"))),
                    },
                    Expect::NoToken => unauthorized(self.bearer(scope, None)),
                    Expect::Invalid => unauthorized(self.bearer(scope, Some("invalid_token"))),
                    Expect::Basic => unauthorized(format!("Basic realm=\"{REALM}\"")),
                };
                cells += 1;
                if let Err(e) = check(&r, method, status, code, challenge.as_deref()) {
                    failures.push(format!("{} {method} {template}: {e}", c.name));
                }
            }
        }
        (cells, failures)
    }
}

/// Prints the count of cells and fails with every failed cell.
#[track_caller]
pub fn report(what: &str, cells: usize, failures: &[String]) {
    println!("{what}: {cells} cells checked, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{what}: {} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
