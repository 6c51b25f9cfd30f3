//! An OCI Distribution client for the API tests: a registry in a tempdir, a reqwest client that
//! never follows redirects, responses with their headers and OCI error codes, digests, and
//! builders for image manifests, indexes and artifacts.

use std::ops::Deref;

use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use reqwest::{Body, Client, Method};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{write_config, Server};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// A response read to the end.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts the status, then that the body is an OCI error with `code` and the response has
    /// the headers every answer carries.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("content-type"), "application/json");
        assert_eq!(
            self.header("docker-distribution-api-version"),
            "registry/2.0"
        );
        let body = self.json();
        assert_eq!(body["errors"][0]["code"], code, "{body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
        assert_eq!(
            self.header("content-length"),
            self.body.len().to_string(),
            "error bodies announce their length"
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.text());
    }
}

/// A client for one registry URL.
pub struct Api {
    client: Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        let client = Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client");
        Api {
            client,
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// `path` under this registry; an absolute URL (a `Location`) keeps only its path, so it
    /// also works against a restarted server on another port.
    pub fn abs(&self, path: &str) -> String {
        let path = match path.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => path,
        };
        format!("{}{path}", self.url)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.abs(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], Vec::new()).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send("HEAD", path, &[], Vec::new()).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, &[], Vec::new()).await
    }

    /// Monolithic upload; asserts 201 and returns the sha256 digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .send(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[("content-type", "application/octet-stream")],
                data.to_vec(),
            )
            .await;
        r.assert_status(201);
        digest
    }

    /// Starts an upload session; asserts 202 and returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .send(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Vec::new(),
            )
            .await;
        r.assert_status(202);
        r.header("location").to_owned()
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &str,
    ) -> Resp {
        self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_owned(),
        )
        .await
    }

    /// PUTs a manifest; asserts 201 and the digest headers, returns the digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &str,
    ) -> String {
        let r = self.put_manifest(repo, reference, media_type, body).await;
        r.assert_status(201);
        let digest = sha256(body.as_bytes());
        assert_eq!(r.header("docker-content-digest"), digest);
        digest
    }

    /// Pushes a config and a layer derived from `seed` and an OCI image manifest tagged `tag`.
    /// Returns the manifest body and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (String, String) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer of {seed}").into_bytes();
        self.push_blob(repo, config.as_bytes()).await;
        self.push_blob(repo, &layer).await;
        let body = image_manifest(
            OCI_MANIFEST,
            descriptor(OCI_CONFIG, config.as_bytes()),
            &[descriptor(OCI_LAYER, &layer)],
        );
        let digest = self.push_manifest(repo, tag, OCI_MANIFEST, &body).await;
        (body, digest)
    }
}

/// A `berth serve` over its own data directory, stopped before the directory is removed.
pub struct Reg {
    pub api: Api,
    pub server: Server,
    pub dir: TempDir,
    pub config: String,
}

impl Deref for Reg {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Reg {
    /// A registry with `write_config`'s settings (deletes enabled) plus `extra` YAML.
    pub fn start(extra: &str) -> Reg {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), extra);
        Self::start_in(dir, config)
    }

    /// A registry from a config file already written in `dir`.
    pub fn start_in(dir: TempDir, config: String) -> Reg {
        let server = Server::start(&[&config], &[]);
        Reg {
            api: Api::new(&server.url),
            server,
            dir,
            config,
        }
    }

    /// Stops the server and starts another over the same data.
    pub fn restart(self) -> Reg {
        let Reg {
            server,
            dir,
            config,
            ..
        } = self;
        drop(server);
        Self::start_in(dir, config)
    }
}

/// What was pushed: manifests by digest with their bodies, and every blob.
pub struct Pushed {
    pub index: String,
    pub index_body: String,
    pub manifests: Vec<(String, String)>,
    pub blobs: Vec<(String, Vec<u8>)>,
    pub sig: String,
}

/// Two platform images (pushed by digest), an index of them tagged `v1`, and a signature
/// whose subject is the index.
pub async fn push_multi_arch(api: &Api, repo: &str) -> Pushed {
    let mut manifests = Vec::new();
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = format!("layer for {arch}").into_bytes();
        let config = json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
        })
        .to_string()
        .into_bytes();
        api.push_blob(repo, &config).await;
        api.push_blob(repo, &layer).await;
        let body = image_manifest(
            OCI_MANIFEST,
            descriptor(OCI_CONFIG, &config),
            &[descriptor(OCI_LAYER, &layer)],
        );
        let digest = api
            .push_manifest(repo, &sha256(body.as_bytes()), OCI_MANIFEST, &body)
            .await;
        let mut child = manifest_descriptor(OCI_MANIFEST, &body);
        child["platform"] = json!({"architecture": arch, "os": "linux"});
        children.push(child);
        manifests.push((digest, body));
        blobs.extend([(sha256(&config), config), (sha256(&layer), layer)]);
    }
    let index_body = index_manifest(OCI_INDEX, &children);
    let index = api.push_manifest(repo, "v1", OCI_INDEX, &index_body).await;
    let signature = b"signature of the index".to_vec();
    api.push_blob(repo, b"{}").await;
    api.push_blob(repo, &signature).await;
    let sig_body = artifact_manifest(
        "application/example.signature",
        &signature,
        manifest_descriptor(OCI_INDEX, &index_body),
        "signed",
    );
    let sig = api
        .push_manifest(repo, &sha256(sig_body.as_bytes()), OCI_MANIFEST, &sig_body)
        .await;
    manifests.push((index.clone(), index_body.clone()));
    manifests.push((sig.clone(), sig_body));
    blobs.extend([
        (sha256(b"{}"), b"{}".to_vec()),
        (sha256(&signature), signature),
    ]);
    Pushed {
        index,
        index_body,
        manifests,
        blobs,
        sig,
    }
}

/// Asserts that `reg` serves exactly what was pushed, under `repo`.
pub async fn assert_serves(reg: &Reg, repo: &str, pushed: &Pushed) {
    for (digest, body) in &pushed.manifests {
        let r = reg
            .send(
                "GET",
                &format!("/v2/{repo}/manifests/{digest}"),
                &[("accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
                Vec::new(),
            )
            .await;
        r.assert_status(200);
        assert_eq!(r.body, body.as_bytes(), "manifest {digest}");
    }
    for (digest, content) in &pushed.blobs {
        let r = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        r.assert_status(200);
        assert_eq!(&r.body, content, "blob {digest}");
    }
    let r = reg
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("accept", OCI_INDEX)],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body, pushed.index_body.as_bytes());
    let r = reg
        .get(&format!("/v2/{repo}/referrers/{}", pushed.index))
        .await;
    r.assert_status(200);
    let referrers = r.json();
    assert_eq!(referrers["manifests"][0]["digest"], pushed.sig.as_str());
    assert_eq!(referrers["manifests"].as_array().map(Vec::len), Some(1));
}

/// A descriptor of `data` with a media type.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// A descriptor of a manifest body.
pub fn manifest_descriptor(media_type: &str, body: &str) -> Value {
    descriptor(media_type, body.as_bytes())
}

/// An image manifest (OCI or Docker, by `media_type`), pretty-printed so that any
/// re-serialization by the server would show.
pub fn image_manifest(media_type: &str, config: Value, layers: &[Value]) -> String {
    let m =
        json!({"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": layers});
    format!("{}\n", serde_json::to_string_pretty(&m).expect("json"))
}

/// An index or manifest list of `children`.
pub fn index_manifest(media_type: &str, children: &[Value]) -> String {
    let m = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": children});
    format!("{}\n", serde_json::to_string_pretty(&m).expect("json"))
}

/// An OCI 1.1 artifact manifest (empty config, one layer) referring to `subject`.
pub fn artifact_manifest(artifact_type: &str, layer: &[u8], subject: Value, note: &str) -> String {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, b"{}"),
        "layers": [descriptor("application/octet-stream", layer)],
        "subject": subject,
        "annotations": {"org.example.note": note},
    });
    serde_json::to_string(&m).expect("json")
}

/// Sends a request exactly as given over a fresh connection: no client-side path
/// normalisation (which `url` applies to `..` and `%2e%2e`), `headers` as raw lines
/// (`"Content-Length: 10"`), `body` as raw bytes. Returns the status and body.
pub async fn raw_request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}
