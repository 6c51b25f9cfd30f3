//! A registry as a source and as a target, over the distribution API: manifests bounded at
//! 4 MiB and checked against their digest, blobs streamed, uploads as one streamed `PUT`,
//! cross-repository mounts, and referrers through the referrers API or, on registries without
//! it (registry:2), the OCI tag schema (`sha256-<hex>` tags holding an index).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::media_types::OCI_INDEX;
use berth_oci::{Descriptor, Digest};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use reqwest::Response;
use serde::Deserialize;

use crate::client::{pull_scope, push_scope, Client};
use crate::endpoint::{check_manifest, ManifestBlob, Source, Target};
use crate::transport::{ImageTag, RegistryRef};
use crate::verify::BlobStream;
use crate::Failure;

/// Longest time for reading a manifest or referrers body.
const BODY_TIME: Duration = Duration::from_secs(60);

/// Every manifest type, so no registry down-converts (which would change the digest).
const ACCEPT: &str = berth_proxy::upstream::ACCEPT_MANIFESTS;

fn accept(value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static(value));
    h
}

/// The `sha256-<hex>` tag of the OCI referrers tag schema.
pub fn referrers_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm().as_str(), subject.hex())
}

/// Reads a small body (a manifest, a referrers index), bounded while it is read.
async fn small_body(
    client: &Client,
    response: Response,
    what: &'static str,
) -> crate::Result<Bytes> {
    berth_proxy::body::read_limited(response, berth_oci::MAX_MANIFEST_SIZE, what, BODY_TIME)
        .await
        .map_err(|e| match e {
            berth_proxy::UpstreamError::TooLarge { .. } => {
                Failure::Content(format!("{what} from {}: {e}", client.host()))
            }
            other => client
                .side()
                .fail(format!("{what} from {}: {other}", client.host())),
        })
}

fn content_type(response: &Response) -> Option<String> {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned())
}

fn header_digest(response: &Response) -> Option<Digest> {
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// An image index's entries (a referrers answer or a tag-schema index).
#[derive(Deserialize, Default)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Images read from a registry repository.
pub struct RegistrySource {
    client: Arc<Client>,
    image: RegistryRef,
    repo: String,
}

impl RegistrySource {
    /// The source `image`, through `client`.
    pub fn new(client: Arc<Client>, image: RegistryRef) -> RegistrySource {
        let repo = image.repo.to_string();
        RegistrySource {
            client,
            image,
            repo,
        }
    }

    async fn get_manifest(
        &self,
        reference: &str,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> crate::Result<ManifestBlob> {
        let response = self
            .client
            .send(
                Method::GET,
                &format!("/v2/{}/manifests/{reference}", self.repo),
                &pull_scope(&self.repo),
                accept(ACCEPT),
                None,
            )
            .await?;
        if !response.status().is_success() {
            let what = format!("manifest {}:{reference}", self.repo);
            return Err(self.client.unexpected(&what, response).await);
        }
        let announced = header_digest(&response);
        let media_type = content_type(&response);
        let body = small_body(&self.client, response, "manifest").await?;
        // By tag, the registry's Docker-Content-Digest is what the bytes must hash to.
        let expected = expected.cloned().or(announced);
        check_manifest(body, media_type, expected.as_ref(), size)
    }
}

#[async_trait]
impl Source for RegistrySource {
    async fn root(&self) -> crate::Result<ManifestBlob> {
        match &self.image.reference {
            ImageTag::Tag(t) => self.get_manifest(t, None, None).await,
            ImageTag::Digest(d) => self.get_manifest(&d.to_string(), Some(d), None).await,
        }
    }

    async fn manifest(&self, descriptor: &Descriptor) -> crate::Result<ManifestBlob> {
        let d = &descriptor.digest;
        self.get_manifest(&d.to_string(), Some(d), Some(descriptor.size))
            .await
    }

    async fn blob(&self, descriptor: &Descriptor) -> crate::Result<BlobStream> {
        let response = self
            .client
            .send(
                Method::GET,
                &format!("/v2/{}/blobs/{}", self.repo, descriptor.digest),
                &pull_scope(&self.repo),
                HeaderMap::new(),
                None,
            )
            .await?;
        if !response.status().is_success() {
            let what = format!("blob {}@{}", self.repo, descriptor.digest);
            return Err(self.client.unexpected(&what, response).await);
        }
        if let Some(len) = response.content_length().filter(|l| *l > descriptor.size) {
            return Err(Failure::Content(format!(
                "blob {} announced {len} bytes, its descriptor says {}",
                descriptor.digest, descriptor.size
            )));
        }
        Ok(Box::pin(
            response.bytes_stream().map_err(std::io::Error::other),
        ))
    }

    async fn referrers(&self, digest: &Digest) -> crate::Result<Vec<Descriptor>> {
        let response = self
            .client
            .send(
                Method::GET,
                &format!("/v2/{}/referrers/{digest}", self.repo),
                &pull_scope(&self.repo),
                accept(OCI_INDEX),
                None,
            )
            .await?;
        let is_index = content_type(&response).as_deref() == Some(OCI_INDEX);
        if response.status().is_success() && is_index {
            let body = small_body(&self.client, response, "referrers index").await?;
            let index: Index = serde_json::from_slice(&body)
                .map_err(|e| Failure::Content(format!("referrers of {digest}: {e}")))?;
            return Ok(index.manifests);
        }
        // No referrers API (registry:2 answers 404): the tag schema's index, if any.
        let tag = referrers_tag(digest);
        let response = self
            .client
            .send(
                Method::GET,
                &format!("/v2/{}/manifests/{tag}", self.repo),
                &pull_scope(&self.repo),
                accept(OCI_INDEX),
                None,
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            let what = format!("referrers tag {}:{tag}", self.repo);
            return Err(self.client.unexpected(&what, response).await);
        }
        let body = small_body(&self.client, response, "referrers index").await?;
        let index: Index = serde_json::from_slice(&body)
            .map_err(|e| Failure::Content(format!("referrers tag {tag}: {e}")))?;
        Ok(index.manifests)
    }

    fn registry(&self) -> Option<(&str, &str)> {
        Some((&self.image.host, &self.repo))
    }
}

/// Images written to a registry repository.
pub struct RegistryTarget {
    client: Arc<Client>,
    image: RegistryRef,
    repo: String,
}

impl RegistryTarget {
    /// The target `image`, through `client`.
    pub fn new(client: Arc<Client>, image: RegistryRef) -> RegistryTarget {
        let repo = image.repo.to_string();
        RegistryTarget {
            client,
            image,
            repo,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> crate::Result<Response> {
        self.client
            .send(method, path, &push_scope(&self.repo), headers, body)
            .await
    }

    /// HEAD that answers yes (2xx), no (404) or fails.
    async fn exists(&self, path: &str, headers: HeaderMap) -> crate::Result<Option<Response>> {
        let response = self.send(Method::HEAD, path, headers, None).await?;
        match response.status() {
            s if s.is_success() => Ok(Some(response)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .client
                .unexpected(&format!("HEAD {path}"), response)
                .await),
        }
    }

    async fn put(&self, manifest: &ManifestBlob, reference: &str) -> crate::Result<Response> {
        let mut headers = HeaderMap::new();
        let media_type = HeaderValue::from_str(&manifest.media_type)
            .map_err(|e| Failure::Content(format!("media type {:?}: {e}", manifest.media_type)))?;
        headers.insert(header::CONTENT_TYPE, media_type);
        let path = format!("/v2/{}/manifests/{reference}", self.repo);
        let response = self
            .send(Method::PUT, &path, headers, Some(manifest.body.clone()))
            .await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            let what = format!("PUT manifest {}:{reference}", self.repo);
            return Err(self.client.unexpected(&what, response).await);
        }
        if let Some(d) = header_digest(&response).filter(|d| *d != manifest.digest) {
            return Err(self.client.side().fail(format!(
                "stored manifest {} as {d}: the registry changed it",
                manifest.digest
            )));
        }
        Ok(response)
    }

    /// Adds `referrer` to the tag-schema index of `subject` (for registries without the
    /// referrers API); the index is replaced whole, as the spec's fallback requires.
    async fn add_to_tag_index(
        &self,
        referrer: &ManifestBlob,
        subject: &Digest,
    ) -> crate::Result<()> {
        let tag = referrers_tag(subject);
        let path = format!("/v2/{}/manifests/{tag}", self.repo);
        let response = self
            .send(Method::GET, &path, accept(OCI_INDEX), None)
            .await?;
        let mut entries = match response.status() {
            StatusCode::NOT_FOUND => Vec::new(),
            s if s.is_success() => {
                let body = small_body(&self.client, response, "referrers index").await?;
                serde_json::from_slice::<Index>(&body)
                    .map(|i| i.manifests)
                    .unwrap_or_default()
            }
            _ => {
                return Err(self
                    .client
                    .unexpected(&format!("GET {path}"), response)
                    .await)
            }
        };
        if entries.iter().any(|e| e.digest == referrer.digest) {
            return Ok(());
        }
        let parsed = berth_oci::Manifest::parse(&referrer.body, Some(&referrer.media_type))
            .map_err(|e| Failure::Content(e.to_string()))?;
        let mut entry = referrer.descriptor();
        entry.artifact_type = parsed.effective_artifact_type();
        entry.annotations = parsed.annotations;
        entries.push(entry);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        let body =
            Bytes::from(serde_json::to_vec(&index).map_err(|e| Failure::Content(e.to_string()))?);
        let blob = ManifestBlob {
            digest: Digest::sha256_of(&body),
            body,
            media_type: OCI_INDEX.to_owned(),
        };
        self.put(&blob, &tag).await.map(drop)
    }
}

#[async_trait]
impl Target for RegistryTarget {
    async fn has_blob(&self, descriptor: &Descriptor) -> crate::Result<bool> {
        let path = format!("/v2/{}/blobs/{}", self.repo, descriptor.digest);
        Ok(self.exists(&path, HeaderMap::new()).await?.is_some())
    }

    async fn mount(&self, descriptor: &Descriptor, from: &str) -> crate::Result<bool> {
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={}&from={from}",
            self.repo, descriptor.digest
        );
        let response = self
            .send(Method::POST, &path, HeaderMap::new(), None)
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry opened an upload instead: cancel it (the blob is uploaded by
                // put_blob through its own session).
                if let Some(location) = location(&response) {
                    if let Ok(url) = self.client.url(&location).await {
                        let _ = self
                            .send(Method::DELETE, url.as_str(), HeaderMap::new(), None)
                            .await;
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    async fn put_blob(&self, descriptor: &Descriptor, content: BlobStream) -> crate::Result<()> {
        // The POST authenticates the push scope, so the streamed PUT need not be retried.
        let path = format!("/v2/{}/blobs/uploads/", self.repo);
        let response = self
            .send(Method::POST, &path, HeaderMap::new(), None)
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.client.unexpected("starting an upload", response).await);
        }
        let location = location(&response).ok_or_else(|| {
            self.client
                .side()
                .fail("upload answered without a Location")
        })?;
        let mut url = self.client.url(&location).await?;
        url.query_pairs_mut()
            .append_pair("digest", &descriptor.digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(descriptor.size));
        let response = self
            .client
            .send_stream(Method::PUT, url, &push_scope(&self.repo), headers, content)
            .await?;
        if response.status() != StatusCode::CREATED {
            let what = format!("upload of {}", descriptor.digest);
            return Err(self.client.unexpected(&what, response).await);
        }
        Ok(())
    }

    async fn has_manifest(&self, digest: &Digest) -> crate::Result<bool> {
        let path = format!("/v2/{}/manifests/{digest}", self.repo);
        Ok(self.exists(&path, accept(ACCEPT)).await?.is_some())
    }

    async fn tagged(&self) -> crate::Result<Option<Digest>> {
        let path = format!("/v2/{}/manifests/{}", self.repo, self.image.reference);
        Ok(self
            .exists(&path, accept(ACCEPT))
            .await?
            .and_then(|r| header_digest(&r)))
    }

    async fn put_manifest(&self, manifest: &ManifestBlob, root: bool) -> crate::Result<()> {
        let reference = match (&self.image.reference, root) {
            (ImageTag::Tag(t), true) => t.clone(),
            (ImageTag::Digest(d), true) if *d != manifest.digest => {
                return Err(Failure::Usage(format!(
                    "the destination names {d}, but the image copied is {}",
                    manifest.digest
                )))
            }
            _ => manifest.digest.to_string(),
        };
        self.put(manifest, &reference).await.map(drop)
    }

    async fn put_referrer(&self, manifest: &ManifestBlob, subject: &Digest) -> crate::Result<()> {
        let response = self.put(manifest, &manifest.digest.to_string()).await?;
        // A registry with the referrers API says so with OCI-Subject; else the tag schema.
        if response.headers().contains_key("oci-subject") {
            return Ok(());
        }
        self.add_to_tag_index(manifest, subject).await
    }

    fn registry(&self) -> Option<(&str, &str)> {
        Some((&self.image.host, &self.repo))
    }
}

fn location(response: &Response) -> Option<String> {
    response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
