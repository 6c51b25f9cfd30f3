//! A scriptable upstream registry on 127.0.0.1 for the proxy's tests: serves manifests and
//! blobs, can require bearer tokens (with its own token endpoint and basic credentials),
//! redirect blob downloads to a "CDN" on another port, cut a blob download short once, answer
//! with a fault status or hang, and counts what it was asked. Hostile answers too: huge
//! manifests and token responses (generated lazily, never held in memory, and counted as they
//! are produced), a token realm on another host name, blobs sent chunked (no length) or with
//! junk appended. Optionally the OCI 1.1 referrers API, also with a huge index.
//!
//! Also compiled into the proxy's unit tests (`src/upstream_tests.rs`) and the binary's
//! `crates/berth/tests/mirror_hostile.rs`, which include this file by path.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, StatusCode};
use sha2::{Digest as _, Sha256};

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// What the upstream does on its next requests.
#[derive(Default, Clone)]
pub struct Behaviour {
    /// Answer every /v2/ request with this status.
    pub fault: Option<u16>,
    /// Accept connections but never answer.
    pub hang: bool,
    /// Require `Authorization: Bearer <token>` (issued by /token for user:pass).
    pub bearer: bool,
    /// Redirect blob GETs to the CDN server.
    pub redirect_blobs: bool,
    /// Cut the next blob GET after this many bytes.
    pub cut_after: Option<usize>,
    /// Serve this many bytes more slowly (a pause before the last chunk), to keep downloads
    /// in flight while clients join.
    pub slow_ms: u64,
    /// Serve blobs with wrong content (digest mismatch).
    pub corrupt: bool,
    /// Answer manifest GETs with this many bytes of JSON-looking junk, with a
    /// `Content-Length` when the flag is set, else chunked.
    pub huge_manifest: Option<(u64, bool)>,
    /// Answer token requests with a (chunked) body of this many bytes.
    pub huge_token: Option<u64>,
    /// Name the token realm on this host (`localhost:<port>`) instead of the upstream's address.
    pub realm_host: Option<String>,
    /// Issue tokens without credentials.
    pub anonymous_tokens: bool,
    /// Redirect blob GETs to the CDN by this host name instead of its address.
    pub cdn_host: Option<String>,
    /// Send blobs chunked (no `Content-Length`); with `slow_ms`, pause before the body ends.
    pub chunked: bool,
    /// Append this many junk bytes to blob bodies (sent chunked).
    pub blob_extra: u64,
    /// Answer the OCI 1.1 referrers API (without it, 404 as registry:2 answers).
    pub referrers_api: bool,
    /// Answer referrers requests with this many bytes of JSON-looking junk, with a
    /// `Content-Length` when the flag is set, else chunked.
    pub huge_referrers: Option<(u64, bool)>,
}

#[derive(Default)]
pub struct Data {
    pub manifests: HashMap<String, (String, Bytes)>,
    pub blobs: HashMap<String, Bytes>,
    /// Referrers index entries by `repo@subject`.
    pub referrers: HashMap<String, Vec<serde_json::Value>>,
    pub behaviour: Behaviour,
    /// "METHOD path" of every request, in order.
    pub log: Vec<String>,
    /// Range headers seen on blob GETs.
    pub ranges: Vec<String>,
    /// Token requests (their query).
    pub token_requests: Vec<String>,
    /// Authorization headers the CDN received.
    pub cdn_auth: Vec<Option<String>>,
    /// Authorization headers the token endpoint received.
    pub token_auth: Vec<Option<String>>,
    /// Bytes of lazily generated bodies produced so far (huge manifests, tokens, blob junk).
    pub generated: Arc<AtomicU64>,
}

pub type Shared = Arc<Mutex<Data>>;

pub struct Fake {
    pub addr: SocketAddr,
    pub cdn: SocketAddr,
    pub data: Shared,
}

impl Fake {
    pub async fn start() -> Fake {
        let data: Shared = Arc::default();
        let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let cdn = cdn_listener.local_addr().expect("addr");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .fallback(handle)
            .with_state((data.clone(), addr, cdn));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cdn_app = Router::new().fallback(handle_cdn).with_state(data.clone());
        tokio::spawn(async move { axum::serve(cdn_listener, cdn_app).await });
        Fake { addr, cdn, data }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.data.lock().expect("lock").behaviour);
    }

    /// Adds a blob; returns its digest.
    pub fn blob(&self, content: &[u8]) -> String {
        let d = sha256(content);
        self.data
            .lock()
            .expect("lock")
            .blobs
            .insert(d.clone(), Bytes::copy_from_slice(content));
        d
    }

    /// Adds an OCI image manifest with `layers` under `repo:tag`; returns its digest.
    pub fn image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> String {
        let config = self.blob(format!("{{\"tag\":\"{tag}\"}}").as_bytes());
        let layer_json: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{}\",\"size\":{}}}",
                    self.blob(l),
                    l.len()
                )
            })
            .collect();
        let body = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config}\",\"size\":{}}},\"layers\":[{}]}}",
            format!("{{\"tag\":\"{tag}\"}}").len(),
            layer_json.join(",")
        );
        let digest = sha256(body.as_bytes());
        let mut data = self.data.lock().expect("lock");
        let entry = (
            "application/vnd.oci.image.manifest.v1+json".to_owned(),
            Bytes::from(body),
        );
        data.manifests
            .insert(format!("{repo}:{tag}"), entry.clone());
        data.manifests.insert(format!("{repo}@{digest}"), entry);
        digest
    }

    /// Adds an OCI 1.1 artifact manifest in `repo` whose subject is `subject` (a manifest
    /// digest, size `subject_size`), listed in the referrers index of `subject`; returns its
    /// digest.
    pub fn artifact(
        &self,
        repo: &str,
        subject: &str,
        subject_size: usize,
        artifact_type: &str,
    ) -> String {
        let layer = self.blob(format!("{artifact_type} of {subject}").as_bytes());
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": self.blob(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": format!("{artifact_type} of {subject}").len()}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size},
        })
        .to_string();
        let digest = sha256(body.as_bytes());
        let entry = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": body.len(),
            "artifactType": artifact_type,
        });
        let mut data = self.data.lock().expect("lock");
        data.manifests.insert(
            format!("{repo}@{digest}"),
            (
                "application/vnd.oci.image.manifest.v1+json".to_owned(),
                Bytes::from(body),
            ),
        );
        data.referrers
            .entry(format!("{repo}@{subject}"))
            .or_default()
            .push(entry);
        digest
    }

    /// Lists the manifest `digest` (of any subject) among the referrers of `subject` too.
    pub fn list_referrer(&self, repo: &str, subject: &str, digest: &str) {
        let mut data = self.data.lock().expect("lock");
        let (_, body) = data.manifests[&format!("{repo}@{digest}")].clone();
        data.referrers
            .entry(format!("{repo}@{subject}"))
            .or_default()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": body.len(),
            }));
    }

    /// Requests whose "METHOD path" starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        let data = self.data.lock().expect("lock");
        data.log.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Bytes of lazily generated bodies produced so far.
    pub fn generated(&self) -> u64 {
        self.data
            .lock()
            .expect("lock")
            .generated
            .load(Ordering::Relaxed)
    }
}

/// A body of `len` bytes made of `prefix` then `x`s, produced 64 KiB at a time as the
/// connection takes it, each piece counted in `counter`.
pub fn lazy_body(prefix: &'static [u8], len: u64, counter: Arc<AtomicU64>) -> Body {
    const PIECE: u64 = 64 * 1024;
    let filler = Bytes::from(vec![b'x'; PIECE as usize]);
    Body::from_stream(futures_util::stream::unfold(0u64, move |sent| {
        let (filler, counter) = (filler.clone(), counter.clone());
        async move {
            if sent >= len {
                return None;
            }
            let piece = if sent == 0 && !prefix.is_empty() {
                Bytes::from_static(prefix)
            } else {
                filler.slice(..PIECE.min(len - sent) as usize)
            };
            counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
            Some((
                Ok::<_, std::io::Error>(piece.clone()),
                sent + piece.len() as u64,
            ))
        }
    }))
}

const TOKEN: &str = "t0ken";

async fn handle(
    State((data, addr, cdn)): State<(Shared, SocketAddr, SocketAddr)>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let behaviour = {
        let mut d = data.lock().expect("lock");
        d.log.push(format!("{method} {path}"));
        d.behaviour.clone()
    };
    if path == "/token" {
        let generated = {
            let mut d = data.lock().expect("lock");
            d.token_requests.push(query);
            d.token_auth.push(auth.clone());
            d.generated.clone()
        };
        if let Some(len) = behaviour.huge_token {
            return Response::new(lazy_body(b"{\"token\":\"", len, generated));
        }
        let basic = base64::engine::general_purpose::STANDARD.encode("user:pass");
        if !behaviour.anonymous_tokens && auth.as_deref() != Some(&format!("Basic {basic}")) {
            return status(StatusCode::UNAUTHORIZED, "");
        }
        return json(&format!("{{\"token\":\"{TOKEN}\",\"expires_in\":300}}"));
    }
    if behaviour.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(code) = behaviour.fault {
        let mut r = status(StatusCode::from_u16(code).expect("status"), "{}");
        if code == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        return r;
    }
    if behaviour.bearer && auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        let mut r = status(StatusCode::UNAUTHORIZED, "{}");
        let realm = behaviour.realm_host.clone().unwrap_or(addr.to_string());
        let challenge = format!(
            "Bearer realm=\"http://{realm}/token\",service=\"fake\",scope=\"repository:x:pull\""
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.parse().expect("value"));
        return r;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return status(StatusCode::NOT_FOUND, "");
    };
    if rest.is_empty() {
        return json("{}");
    }
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        let d = data.lock().expect("lock");
        let mut tags: Vec<String> = d
            .manifests
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{repo}:")).map(str::to_owned))
            .collect();
        if tags.is_empty() {
            return status(
                StatusCode::NOT_FOUND,
                "{\"errors\":[{\"code\":\"NAME_UNKNOWN\"}]}",
            );
        }
        tags.sort();
        return json(&serde_json::json!({"name": repo, "tags": tags}).to_string());
    }
    if let Some((repo, subject)) = rest.rsplit_once("/referrers/") {
        if !behaviour.referrers_api {
            return status(StatusCode::NOT_FOUND, "404 page not found");
        }
        let index_type = "application/vnd.oci.image.index.v1+json";
        if let Some((len, announce)) = behaviour.huge_referrers {
            let generated = data.lock().expect("lock").generated.clone();
            let mut r = Response::new(lazy_body(b"{\"schemaVersion\":2,\"x\":\"", len, generated));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, index_type.parse().expect("value"));
            if announce {
                r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            }
            return r;
        }
        let key = format!("{repo}@{subject}");
        let listed = data.lock().expect("lock").referrers.get(&key).cloned();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": listed.unwrap_or_default(),
        });
        let mut r = json(&body.to_string());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, index_type.parse().expect("value"));
        return r;
    }
    if let (Some((len, announce)), true) = (behaviour.huge_manifest, method == http::Method::GET) {
        if rest.contains("/manifests/") {
            let generated = data.lock().expect("lock").generated.clone();
            let mut r = Response::new(lazy_body(b"{\"schemaVersion\":2,\"x\":\"", len, generated));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.manifest.v1+json"
                    .parse()
                    .expect("value"),
            );
            if announce {
                h.insert(header::CONTENT_LENGTH, len.into());
            }
            return r;
        }
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let key = if reference.contains(':') {
            format!("{repo}@{reference}")
        } else {
            format!("{repo}:{reference}")
        };
        let found = data.lock().expect("lock").manifests.get(&key).cloned();
        let Some((media_type, body)) = found else {
            return status(
                StatusCode::NOT_FOUND,
                "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}",
            );
        };
        let mut r = Response::new(if method == http::Method::HEAD {
            Body::empty()
        } else {
            Body::from(body.clone())
        });
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, media_type.parse().expect("value"));
        h.insert(header::CONTENT_LENGTH, body.len().into());
        h.insert(
            "docker-content-digest",
            sha256(&body).parse().expect("value"),
        );
        return r;
    }
    if let Some((_repo, digest)) = rest.rsplit_once("/blobs/") {
        let found = data.lock().expect("lock").blobs.get(digest).cloned();
        let Some(blob) = found else {
            return status(
                StatusCode::NOT_FOUND,
                "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}",
            );
        };
        if method == http::Method::HEAD {
            let mut r = Response::new(Body::empty());
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, blob.len().into());
            return r;
        }
        if let Some(range) = &range {
            data.lock().expect("lock").ranges.push(range.clone());
        }
        if behaviour.redirect_blobs {
            let mut r = status(StatusCode::TEMPORARY_REDIRECT, "");
            let host = match &behaviour.cdn_host {
                Some(h) => format!("{h}:{}", cdn.port()),
                None => cdn.to_string(),
            };
            let location = format!("http://{host}/cdn/{digest}?sig=abc");
            r.headers_mut()
                .insert(header::LOCATION, location.parse().expect("value"));
            return r;
        }
        return serve_blob(&data, blob, range.as_deref(), &behaviour);
    }
    status(StatusCode::NOT_FOUND, "")
}

async fn handle_cdn(State(data): State<Shared>, request: Request) -> Response {
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let digest = request.uri().path().trim_start_matches("/cdn/").to_owned();
    let (blob, behaviour) = {
        let mut d = data.lock().expect("lock");
        d.cdn_auth.push(auth);
        d.log.push(format!("CDN {digest}"));
        (d.blobs.get(&digest).cloned(), d.behaviour.clone())
    };
    match blob {
        Some(b) => serve_blob(&data, b, None, &behaviour),
        None => status(StatusCode::NOT_FOUND, ""),
    }
}

fn serve_blob(data: &Shared, blob: Bytes, range: Option<&str>, b: &Behaviour) -> Response {
    let blob = if b.corrupt {
        let mut v = blob.to_vec();
        if let Some(x) = v.last_mut() {
            *x ^= 0xff;
        }
        Bytes::from(v)
    } else {
        blob
    };
    let total = blob.len();
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .unwrap_or(0);
    let part = blob.slice(start.min(total)..);
    let cut = {
        let mut d = data.lock().expect("lock");
        d.behaviour.cut_after.take()
    };
    let slow = b.slow_ms;
    let len = part.len();
    if b.chunked || b.blob_extra > 0 {
        return chunked_blob(data, part, b);
    }
    let body = match cut {
        Some(n) => {
            // Announce everything, send `n` bytes, then break the connection.
            let first = part.slice(..n.min(len));
            Body::from_stream(futures_util::stream::iter(vec![
                Ok::<_, std::io::Error>(first),
                Err(std::io::Error::other("cut")),
            ]))
        }
        None if slow > 0 && len > 1 => {
            let (a, z) = (part.slice(..len / 2), part.slice(len / 2..));
            Body::from_stream(futures_util::stream::unfold(0, move |i| {
                let (a, z) = (a.clone(), z.clone());
                async move {
                    match i {
                        0 => Some((Ok::<_, std::io::Error>(a), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(slow)).await;
                            Some((Ok(z), 2))
                        }
                        _ => None,
                    }
                }
            }))
        }
        None => Body::from(part),
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, len.into());
    if start > 0 {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        let cr = format!("bytes {start}-{}/{total}", total - 1);
        r.headers_mut()
            .insert(header::CONTENT_RANGE, cr.parse().expect("value"));
    }
    r
}

/// A blob without `Content-Length`: 64 KiB pieces, then `blob_extra` junk bytes, then (with
/// `slow_ms`) a pause before the body ends, so everything sent is there before the end is.
fn chunked_blob(data: &Shared, blob: Bytes, b: &Behaviour) -> Response {
    let pieces: Vec<Bytes> = (0..blob.len())
        .step_by(64 * 1024)
        .map(|i| blob.slice(i..(i + 64 * 1024).min(blob.len())))
        .collect();
    let generated = data.lock().expect("lock").generated.clone();
    let junk = (b.blob_extra > 0).then(|| lazy_body(b"", b.blob_extra, generated));
    let pause = Duration::from_millis(b.slow_ms);
    let head = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, axum::Error>));
    let junk = futures_util::stream::iter(junk).flat_map(|body| body.into_data_stream());
    let end = futures_util::stream::once(async move {
        tokio::time::sleep(pause).await;
        Ok(Bytes::new())
    });
    Response::new(Body::from_stream(head.chain(junk).chain(end)))
}

fn status(code: StatusCode, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r
}

fn json(body: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_owned()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().expect("v"));
    r
}
