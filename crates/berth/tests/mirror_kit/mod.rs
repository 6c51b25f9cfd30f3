//! Fixtures for the pull-through cache tests, all on 127.0.0.1 with OS-chosen ports and every
//! process stopped by PID: Debian's `docker-registry` (registry:2) as the upstream, a
//! fault-injecting HTTP proxy between Berth and the upstream (429/403/500/hang/slow), and a
//! forward proxy that logs what goes through it (the outbound-proxy setting).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::StreamExt;
use tempfile::TempDir;

use crate::common::oci::{
    descriptor, image_manifest, sha256, Api, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST,
};

/// Whether Debian's docker-registry is installed; tests that need it skip (loudly) without it,
/// except under CI, where that is a failure.
pub fn have_registry2() -> bool {
    let ok = Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have docker-registry installed (scripts/install-test-deps.sh)"
        );
        eprintln!("skipping: docker-registry is not installed");
    }
    ok
}

/// A running `docker-registry serve` on 127.0.0.1:0, stopped by PID on drop.
pub struct Registry2 {
    child: Child,
    pub url: String,
    pub addr: String,
    pub log: PathBuf,
    pub dir: TempDir,
}

impl Registry2 {
    /// Starts docker-registry with an access log, filesystem storage in a temp dir and `extra`
    /// YAML appended to the config.
    pub fn start(extra: &str) -> Registry2 {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        Self::start_in(dir, &data, extra)
    }

    fn start_in(dir: TempDir, data: &Path, extra: &str) -> Registry2 {
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:0\n{extra}",
                data.display()
            ),
        )
        .expect("config");
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let mut addr = String::new();
        for _ in 0..200 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                addr = rest
                    .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !addr.is_empty(),
            "docker-registry did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Registry2 {
            child,
            url: format!("http://{addr}"),
            addr,
            log,
            dir,
        }
    }

    /// A registry:2 that requires basic auth for `user`:`pass` (htpasswd, bcrypt).
    pub fn start_htpasswd() -> Registry2 {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&file)
            .args(["user", "pass"])
            .output()
            .expect("htpasswd (apache2-utils)");
        assert!(out.status.success(), "{out:?}");
        let extra = format!(
            "auth:\n  htpasswd: {{realm: upstream, path: {}}}\n",
            file.display()
        );
        let data = dir.path().join("data");
        Self::start_in(dir, &data, &extra)
    }

    /// Stops this registry and serves its data again over HTTPS, with a self-signed
    /// certificate for 127.0.0.1; returns the new server and the certificate's path (the CA a
    /// client must trust). `self` must outlive the new server (it owns the data).
    pub fn restart_tls(&mut self) -> (Registry2, PathBuf) {
        self.stop();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        // A CA and a server certificate it signed (rustls refuses a CA as the server's own).
        let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=berth-test-ca -keyout ca.key -out ca.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile leaf.ext -out cert.pem
"#;
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{out:?}");
        let ca = dir.path().join("ca.pem");
        let extra = format!(
            "  tls: {{certificate: {}, key: {}}}\n",
            cert.display(),
            key.display()
        );
        let data = self.dir.path().join("data");
        let mut r = Self::start_in(dir, &data, &extra);
        r.url = format!("https://{}", r.addr);
        (r, ca)
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// Lines of the access log for `METHOD path` (the combined-log request field).
    pub fn requests(&self, method: &str, path: &str) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!("\"{method} {path} HTTP/1.1\"");
        text.lines().filter(|l| l.contains(&needle)).count()
    }

    /// Stops it (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl Drop for Registry2 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM, up to 10 s, then SIGKILL; by PID only.
pub fn stop_child(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..200 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Uploads a blob with a POST + PUT session (what every registry supports).
pub async fn upload(api: &Api, repo: &str, data: Vec<u8>, auth: Option<&str>) -> String {
    let digest = sha256(&data);
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let r = api
        .send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &headers,
            Vec::new(),
        )
        .await;
    r.assert_status(202);
    let location = r.header("location").to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = api
        .send(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &headers,
            data,
        )
        .await;
    r.assert_status(201);
    digest
}

/// Pushes an OCI image with the given layers as `repo:tag`; returns (manifest body, digest).
pub async fn push_image(
    api: &Api,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
    auth: Option<&str>,
) -> (String, String) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).into_bytes();
    upload(api, repo, config.clone(), auth).await;
    let mut descriptors = Vec::new();
    for layer in layers {
        descriptors.push(descriptor(OCI_LAYER, layer));
        upload(api, repo, layer.clone(), auth).await;
    }
    let body = image_manifest(OCI_MANIFEST, descriptor(OCI_CONFIG, &config), &descriptors);
    let mut headers = vec![("content-type", OCI_MANIFEST)];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    let r = api
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &headers,
            body.clone(),
        )
        .await;
    r.assert_status(201);
    let digest = sha256(body.as_bytes());
    (body, digest)
}

/// Deterministic data that does not compress.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What the test proxy does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward.
    Pass,
    /// Answer with this status.
    Status(u16),
    /// Accept and never answer.
    Hang,
    /// Forward, sending response bodies at about this many KiB per second.
    Slow(u64),
}

struct ProxyState {
    target: Option<String>,
    mode: Mutex<Mode>,
    seen: Mutex<Vec<String>>,
    client: reqwest::Client,
}

/// An HTTP proxy on 127.0.0.1 run by the test: a reverse proxy to `target` with injected
/// faults, or (without a target) a forward proxy for absolute-form requests. It logs
/// "METHOD uri" of every request.
pub struct TestProxy {
    pub addr: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    pub async fn reverse(target: &str) -> TestProxy {
        Self::start(Some(target.trim_end_matches('/').to_owned())).await
    }

    pub async fn forward() -> TestProxy {
        Self::start(None).await
    }

    async fn start(target: Option<String>) -> TestProxy {
        let state = Arc::new(ProxyState {
            target,
            mode: Mutex::new(Mode::Pass),
            seen: Mutex::new(Vec::new()),
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestProxy { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().expect("lock") = mode;
    }

    /// "METHOD uri" of every request so far.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().expect("lock").clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    state
        .seen
        .lock()
        .expect("lock")
        .push(format!("{} {}", parts.method, parts.uri));
    let mode = *state.mode.lock().expect("lock");
    match mode {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return status(504);
        }
        Mode::Status(code) => return status(code),
        Mode::Pass | Mode::Slow(_) => {}
    }
    let url = match &state.target {
        Some(t) => format!(
            "{t}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        ),
        None => parts.uri.to_string(),
    };
    let mut req = state.client.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != "proxy-connection" {
            req = req.header(name, value);
        }
    }
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let upstream = match req.body(bytes).send().await {
        Ok(r) => r,
        Err(_) => return status(502),
    };
    let mut response = Response::builder().status(upstream.status().as_u16());
    for (name, value) in upstream.headers() {
        response = response.header(name, value);
    }
    let stream = upstream.bytes_stream();
    let body = match mode {
        Mode::Slow(kib_per_s) => {
            let pause = Duration::from_micros(64 * 1_000_000 / kib_per_s.max(1));
            Body::from_stream(stream.flat_map(move |chunk| {
                // Split into 64 KiB pieces, each after a pause.
                let pieces: Vec<Result<bytes::Bytes, reqwest::Error>> = match chunk {
                    Ok(c) => (0..c.len())
                        .step_by(64 * 1024)
                        .map(|i| Ok(c.slice(i..(i + 64 * 1024).min(c.len()))))
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                futures_util::stream::iter(pieces).then(move |p| async move {
                    tokio::time::sleep(pause).await;
                    p
                })
            }))
        }
        _ => Body::from_stream(stream),
    };
    response.body(body).unwrap_or_else(|_| status(500))
}

fn status(code: u16) -> Response {
    let mut r = Response::new(Body::from(
        "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"injected\"}]}",
    ));
    *r.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if code == 429 {
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("30"),
        );
    }
    r
}

/// A Berth config body (after `write_config`'s common part) mirroring `url` as `host`, with
/// extra upstream keys (`ttl: 1s, timeout: 2s`) and extra proxy keys.
pub fn upstreams_yaml(entries: &[(&str, &str, &str)], proxy_extra: &str) -> String {
    let mut yaml = String::from("proxy:\n  upstreams:\n");
    for (host, url, keys) in entries {
        yaml.push_str(&format!(
            "    - {{host: {host}, url: {url}{}{keys}}}\n",
            if keys.is_empty() { "" } else { ", " }
        ));
    }
    yaml.push_str(proxy_extra);
    yaml
}

/// Files under `dir` whose path contains `part` (to look for blobs on disk).
pub fn files_containing(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(part) {
                out.push(p);
            }
        }
    }
    out
}

/// Reads lines from a child's log file until one contains `needle` (bounded).
pub fn wait_for_line(path: &Path, needle: &str, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Ok(f) = std::fs::File::open(path) {
            if BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains(needle))
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
