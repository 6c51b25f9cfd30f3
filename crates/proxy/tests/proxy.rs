//! The pull-through cache against a scriptable upstream on 127.0.0.1: token auth, CDN
//! redirects, resumed downloads, single flight, stale-if-error, corrupt content.
#![allow(missing_docs, clippy::unwrap_used)]

mod fake;
mod kit;

use std::time::{Duration, Instant};

use berth_oci::Digest;
use berth_proxy::{BlobSource, Proxy, ProxyError};
use fake::sha256;
use futures_util::TryStreamExt;
use kit::{data, name, reference, setup, stored};

/// Pulls a blob through the proxy the way the API does and returns its bytes.
async fn pull_blob(proxy: &Proxy, repo: &str, digest: &str) -> Result<Vec<u8>, String> {
    let route = proxy.route(&name(repo), None).unwrap();
    let digest: Digest = digest.parse().unwrap();
    match proxy
        .blob(&route, &digest, false)
        .await
        .map_err(|e| e.to_string())?
    {
        BlobSource::Local(_) => {
            let stream = proxy
                .registry()
                .read_blob(&digest, 0, None)
                .await
                .map_err(|e| e.to_string())?;
            let chunks: Vec<_> = stream.try_collect().await.map_err(|e| e.to_string())?;
            Ok(chunks.concat())
        }
        BlobSource::Fetching(_, download) => {
            let chunks: Vec<_> = download
                .stream(0, None)
                .try_collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(chunks.concat())
        }
        BlobSource::Remote(_) => Err("HEAD answer for a GET".into()),
    }
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_credentials_and_cached() {
    let s = setup(|u| u.credentials = Some(("user".into(), "pass".into()))).await;
    s.fake.set(|b| b.bearer = true);
    let digest = s.fake.image("library/alpine", "3", &[b"layer"]);
    let route = s.proxy.route(&name("alpine"), None).unwrap();
    for _ in 0..3 {
        let m = s.proxy.manifest(&route, &reference("3")).await.unwrap();
        assert_eq!(m.digest.to_string(), digest);
    }
    let tokens = s.fake.data.lock().unwrap().token_requests.clone();
    assert_eq!(tokens.len(), 1, "one token, cached: {tokens:?}");
    assert!(
        tokens[0].contains("scope=repository%3Alibrary%2Falpine%3Apull")
            && tokens[0].contains("service=fake"),
        "{tokens:?}"
    );
    // Only the very first request went without a token.
    assert_eq!(s.fake.count("HEAD /v2/library/alpine/manifests/3"), 2);
    assert_eq!(s.fake.count("GET /v2/library/alpine/manifests/3"), 2);
}

#[tokio::test]
async fn wrong_credentials_are_a_not_found_not_a_hang() {
    let s = setup(|u| u.credentials = Some(("user".into(), "wrong".into()))).await;
    s.fake.set(|b| b.bearer = true);
    s.fake.image("library/alpine", "3", &[b"layer"]);
    let route = s.proxy.route(&name("alpine"), None).unwrap();
    let err = s.proxy.manifest(&route, &reference("3")).await.unwrap_err();
    assert!(matches!(err, ProxyError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn cdn_redirects_are_followed_without_the_authorization_header() {
    let s = setup(|u| u.credentials = Some(("user".into(), "pass".into()))).await;
    s.fake.set(|b| {
        b.bearer = true;
        b.redirect_blobs = true;
    });
    let layer = data(300_000, 1);
    let d = s.fake.blob(&layer);
    assert_eq!(pull_blob(&s.proxy, "library/x", &d).await.unwrap(), layer);
    let cdn_auth = s.fake.data.lock().unwrap().cdn_auth.clone();
    assert_eq!(
        cdn_auth,
        vec![None],
        "the CDN never sees the upstream token"
    );
    assert!(stored(&s.registry, "docker.io/library/x", &d).await);
}

#[tokio::test]
async fn a_cut_download_resumes_with_range() {
    let s = setup(|_| {}).await;
    let layer = data(3 * 1024 * 1024 + 17, 2);
    let d = s.fake.blob(&layer);
    s.fake.set(|b| b.cut_after = Some(1024 * 1024));
    assert_eq!(pull_blob(&s.proxy, "library/x", &d).await.unwrap(), layer);
    let ranges = s.fake.data.lock().unwrap().ranges.clone();
    assert_eq!(ranges, vec!["bytes=1048576-".to_owned()]);
    assert!(stored(&s.registry, "docker.io/library/x", &d).await);
    let stream = s
        .registry
        .read_blob(&d.parse().unwrap(), 0, None)
        .await
        .unwrap();
    let chunks: Vec<_> = stream.try_collect().await.unwrap();
    assert_eq!(sha256(&chunks.concat()), d, "stored blob verified");
}

#[tokio::test]
async fn concurrent_pulls_of_a_cold_blob_fetch_it_once() {
    let s = setup(|_| {}).await;
    let layer = data(2 * 1024 * 1024, 3);
    let d = s.fake.blob(&layer);
    s.fake.set(|b| b.slow_ms = 300);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (proxy, d) = (s.proxy.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 10)).await;
            pull_blob(&proxy, "library/x", &d).await
        }));
    }
    for t in tasks {
        assert_eq!(sha256(&t.await.unwrap().unwrap()), d);
    }
    assert_eq!(s.fake.count(&format!("GET /v2/library/x/blobs/{d}")), 1);
    assert!(stored(&s.registry, "docker.io/library/x", &d).await);
    // Later pulls are served from storage.
    assert_eq!(pull_blob(&s.proxy, "library/x", &d).await.unwrap(), layer);
    assert_eq!(s.fake.count(&format!("GET /v2/library/x/blobs/{d}")), 1);
}

#[tokio::test]
async fn a_corrupt_blob_is_never_delivered_whole_nor_stored() {
    let s = setup(|_| {}).await;
    let layer = data(600_000, 4);
    let d = s.fake.blob(&layer);
    s.fake.set(|b| b.corrupt = true);
    let err = pull_blob(&s.proxy, "library/x", &d).await.unwrap_err();
    assert!(err.contains("hashes to"), "{err}");
    assert!(!stored(&s.registry, "docker.io/library/x", &d).await);
    // Once the upstream is fixed, the next pull works.
    s.fake.set(|b| b.corrupt = false);
    assert_eq!(pull_blob(&s.proxy, "library/x", &d).await.unwrap(), layer);
}

#[tokio::test]
async fn stale_content_is_served_when_the_upstream_fails() {
    let s = setup(|u| u.timeout = Duration::from_millis(500)).await;
    let digest = s.fake.image("library/app", "1", &[b"l1"]);
    let route = s.proxy.route(&name("app"), None).unwrap();
    s.proxy.manifest(&route, &reference("1")).await.unwrap();
    for fault in [Some(429), Some(403), Some(500), Some(401), None] {
        s.fake.set(|b| {
            b.fault = fault;
            b.hang = fault.is_none();
        });
        let started = Instant::now();
        let m = s.proxy.manifest(&route, &reference("1")).await.unwrap();
        assert_eq!(m.digest.to_string(), digest, "{fault:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{fault:?} took {:?}",
            started.elapsed()
        );
        let by_digest = s.proxy.manifest(&route, &reference(&digest)).await.unwrap();
        assert_eq!(by_digest.digest.to_string(), digest);
    }
    assert!(
        s.proxy
            .stats
            .stale_served
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    );
    // Content never seen is an error, not a hang.
    let started = Instant::now();
    let err = s
        .proxy
        .manifest(&route, &reference("never"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_moved_tag_is_fetched_again_and_an_unchanged_one_is_not() {
    let s = setup(|u| u.tag_ttl = Duration::from_millis(200)).await;
    let first = s.fake.image("library/app", "latest", &[b"v1"]);
    let route = s.proxy.route(&name("app"), None).unwrap();
    assert_eq!(
        s.proxy
            .manifest(&route, &reference("latest"))
            .await
            .unwrap()
            .digest
            .to_string(),
        first
    );
    // Within the TTL nothing is asked upstream.
    s.proxy
        .manifest(&route, &reference("latest"))
        .await
        .unwrap();
    assert_eq!(s.fake.count("HEAD /v2/library/app/manifests/latest"), 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    s.proxy
        .manifest(&route, &reference("latest"))
        .await
        .unwrap();
    assert_eq!(s.fake.count("HEAD /v2/library/app/manifests/latest"), 1);
    assert_eq!(
        s.fake.count("GET /v2/library/app/manifests/"),
        1,
        "unchanged"
    );
    let second = s.fake.image("library/app", "latest", &[b"v2"]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let m = s
        .proxy
        .manifest(&route, &reference("latest"))
        .await
        .unwrap();
    assert_eq!(m.digest.to_string(), second);
    assert_eq!(
        s.fake
            .count(&format!("GET /v2/library/app/manifests/{second}")),
        1
    );
    // Stored under the tag: the registry itself now resolves it.
    let stored = s
        .registry
        .get_manifest(&name("docker.io/library/app"), &reference("latest"))
        .await
        .unwrap();
    assert_eq!(stored.digest.to_string(), second);
}

#[tokio::test]
async fn tag_lists_come_from_the_upstream_or_the_cache() {
    let s = setup(|_| {}).await;
    s.fake.image("library/app", "1", &[b"a"]);
    s.fake.image("library/app", "2", &[b"b"]);
    let route = s.proxy.route(&name("app"), None).unwrap();
    assert_eq!(s.proxy.tags(&route).await.unwrap(), vec!["1", "2"]);
    s.proxy.manifest(&route, &reference("1")).await.unwrap();
    s.fake.set(|b| b.fault = Some(500));
    assert_eq!(
        s.proxy.tags(&route).await.unwrap(),
        vec!["1"],
        "cached tags"
    );
    let other = s.proxy.route(&name("other"), None).unwrap();
    assert!(matches!(
        s.proxy.tags(&other).await.unwrap_err(),
        ProxyError::Unavailable { .. }
    ));
    s.fake.set(|b| b.fault = None);
    assert!(matches!(
        s.proxy.tags(&other).await.unwrap_err(),
        ProxyError::NotFound { .. }
    ));
}

/// An upstream manifest that names the digest of a layer stored here only in a private
/// repository does not make that layer readable from the cached repository: naming a digest
/// is no proof of having the bytes. The layer is served only if the upstream sends it.
#[tokio::test]
async fn naming_a_private_digest_upstream_does_not_expose_it() {
    let s = setup(|_| {}).await;
    let secret = b"private layer pushed to team/secret";
    let digest = sha256(secret);
    let body: berth_registry::BodyStream = Box::pin(futures_util::stream::iter([Ok(
        bytes::Bytes::from_static(secret),
    )]));
    s.registry
        .put_blob(&name("team/secret"), &digest.parse().unwrap(), body)
        .await
        .unwrap();
    // The upstream's image names the private layer but does not have it.
    s.fake.image("evil/app", "1", &[secret]);
    s.fake.data.lock().unwrap().blobs.remove(&digest);
    let route = s.proxy.route(&name("evil/app"), None).unwrap();
    s.proxy.manifest(&route, &reference("1")).await.unwrap();
    let pulled = pull_blob(&s.proxy, "evil/app", &digest).await;
    assert!(pulled.is_err(), "the private layer was served: {pulled:?}");
    assert!(s
        .registry
        .stat_blob(&route.local, &digest.parse().unwrap())
        .await
        .is_err());
    // An upstream that does send the bytes gets them linked (after verification).
    s.fake.blob(secret);
    assert_eq!(
        pull_blob(&s.proxy, "evil/app", &digest).await.unwrap(),
        secret
    );
}
