//! The cache's expiry and eviction pass over a real registry core (in memory) with a fake
//! upstream on 127.0.0.1: pulls are recorded, the least recently pulled image goes first,
//! private repositories are never evicted, evicted images are fetched again on demand, usage
//! is reported per upstream.
#![allow(missing_docs, clippy::unwrap_used)]

mod fake;

use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Digest, Reference, RepoName};
use berth_proxy::evict::{Limits, Reason, UpstreamLimits};
use berth_proxy::{CachePolicy, Proxy, Routing, Upstream, UpstreamSettings};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;
use fake::Fake;

const SEC: u64 = 1000;

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

async fn setup(
    maxsize: Option<u64>,
    expiry: Option<Duration>,
) -> (Fake, Arc<Proxy>, tempfile::TempDir) {
    let fake = Fake::start().await;
    let settings = UpstreamSettings {
        host: "docker.io".into(),
        url: fake.url(),
        credentials: None,
        tag_ttl: Duration::from_secs(3600),
        proxy: None,
        timeout: Duration::from_secs(2),
        allow_private_redirects: false,
    };
    // Deletes disabled: eviction must not depend on them.
    let registry = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let routing = Routing::Many {
        upstreams: vec![Arc::new(Upstream::new(settings).unwrap())],
        default: Some(0),
        private: vec!["team".into()],
    };
    let policy = CachePolicy {
        limits: Limits {
            maxsize,
            upstreams: vec![UpstreamLimits {
                maxsize: None,
                expiry,
            }],
            grace: Duration::from_millis(100),
        },
        interval: Duration::from_millis(400),
    };
    let spool = tempfile::tempdir().unwrap();
    let proxy = Proxy::with_cache(registry, routing, spool.path().to_path_buf(), Some(policy));
    (fake, proxy, spool)
}

/// Pulls `repo:tag` and its blobs through the proxy; returns the manifest digest.
async fn pull(proxy: &Proxy, repo: &str, tag: &str) -> Digest {
    let route = proxy.route(&name(repo), None).unwrap();
    let m = proxy
        .manifest(&route, &tag.parse::<Reference>().unwrap())
        .await
        .unwrap();
    let parsed = berth_oci::Manifest::parse(&m.body, Some(&m.media_type)).unwrap();
    for blob in parsed.blob_references() {
        if let berth_proxy::blob::Ready::Streaming(_) =
            match proxy.blob(&route, blob, false).await.unwrap() {
                berth_proxy::BlobSource::Fetching(_, d) => d.ready().await.unwrap(),
                _ => continue,
            }
        {
            // Wait until the tee has stored it.
            for _ in 0..200 {
                if proxy.registry().stat_blob(&route.local, blob).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    m.digest
}

/// Waits until the spawned pull record of `digest` says at least `after`.
async fn recorded(proxy: &Proxy, repo: &str, digest: &Digest, after: u64) -> u64 {
    for _ in 0..200 {
        if let Some(t) = proxy
            .registry()
            .last_pull(&name(repo), digest)
            .await
            .unwrap()
        {
            if t >= after {
                return t;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pull record for {repo}@{digest}");
}

#[tokio::test]
async fn least_recently_pulled_goes_first_and_private_repositories_never() {
    let (fake, proxy, _spool) = setup(Some(3500), None).await;
    let layer = |seed: u8| vec![seed; 1000];
    for (repo, seed) in [("library/a", 1), ("library/b", 2), ("library/c", 3)] {
        fake.image(repo, "1", &[&layer(seed)]);
    }
    let reg = proxy.registry().clone();
    // A private repository, older than everything and bigger than the limit by itself.
    let big = Digest::sha256_of(&[9u8; 4000]);
    let stream = futures_util::stream::iter([Ok(bytes::Bytes::from(vec![9u8; 4000]))]);
    reg.put_blob(&name("team/app"), &big, Box::pin(stream))
        .await
        .unwrap();

    let a = pull(&proxy, "a", "1").await;
    let t_a = recorded(&proxy, "docker.io/library/a", &a, 0).await;
    let b = pull(&proxy, "b", "1").await;
    recorded(&proxy, "docker.io/library/b", &b, 0).await;
    // Under the limit with two images: nothing goes.
    let report = proxy.cache_pass().await.unwrap();
    assert!(report.evicted.is_empty(), "{report:?}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    pull(&proxy, "a", "1").await;
    recorded(&proxy, "docker.io/library/a", &a, t_a + 1).await;
    pull(&proxy, "c", "1").await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    let report = proxy.cache_pass().await.unwrap();
    let evicted: Vec<String> = report
        .evicted
        .iter()
        .map(|e| e.repository.to_string())
        .collect();
    assert_eq!(evicted, ["docker.io/library/b"], "{report:?}");
    assert_eq!(report.evicted[0].reason, Reason::CacheFull);
    assert_eq!(report.evicted[0].tags, ["1"]);
    assert!(report.bytes <= 3500 && !report.over_limit, "{report:?}");
    assert_eq!(report.upstreams[0].images, 2);
    assert_eq!(report.upstreams[0].bytes, report.bytes);
    assert!(
        reg.stat_blob(&name("team/app"), &big).await.is_ok(),
        "private content untouched"
    );
    let tag: Reference = "1".parse().unwrap();
    assert!(reg
        .get_manifest(&name("docker.io/library/b"), &tag)
        .await
        .is_err());
    assert!(reg
        .get_manifest(&name("docker.io/library/a"), &tag)
        .await
        .is_ok());

    // The next pull of b fetches it from the upstream again.
    let before = fake.count("GET /v2/library/b/manifests/");
    assert_eq!(pull(&proxy, "b", "1").await, b);
    assert_eq!(fake.count("GET /v2/library/b/manifests/"), before + 1);
    assert!(reg
        .get_manifest(&name("docker.io/library/b"), &tag)
        .await
        .is_ok());
}

#[tokio::test]
async fn expired_images_go_and_unrecorded_ones_count_from_first_sight() {
    let (fake, proxy, _spool) = setup(None, Some(Duration::from_secs(60))).await;
    fake.image("library/old", "1", &[b"old layer"]);
    fake.image("library/new", "1", &[b"new layer"]);
    let old = pull(&proxy, "old", "1").await;
    let new = pull(&proxy, "new", "1").await;
    let reg = proxy.registry().clone();
    let now = berth_proxy::cache::now_ms();
    reg.record_pull(&name("docker.io/library/old"), &old, now - 61 * SEC)
        .await
        .unwrap();
    reg.record_pull(&name("docker.io/library/new"), &new, now - 59 * SEC)
        .await
        .unwrap();
    // A cached image without any record (cached before limits were configured).
    let raw = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    reg.cache_manifest(
        &name("docker.io/library/legacy"),
        &"1".parse().unwrap(),
        None,
        raw.to_vec().into(),
    )
    .await
    .unwrap();

    let report = proxy.cache_pass_at(now).await.unwrap();
    let evicted: Vec<(String, Reason)> = report
        .evicted
        .iter()
        .map(|e| (e.repository.to_string(), e.reason))
        .collect();
    assert_eq!(
        evicted,
        [("docker.io/library/old".to_owned(), Reason::Expired)]
    );
    let legacy = Digest::sha256_of(raw);
    assert_eq!(
        reg.last_pull(&name("docker.io/library/legacy"), &legacy)
            .await
            .unwrap(),
        Some(now),
        "first sight counts as a pull"
    );
    // Two seconds later `new` has expired too; `legacy` has a full expiry ahead of it.
    let report = proxy.cache_pass_at(now + 2 * SEC).await.unwrap();
    let evicted: Vec<String> = report
        .evicted
        .iter()
        .map(|e| e.repository.to_string())
        .collect();
    assert_eq!(evicted, ["docker.io/library/new"]);
    assert_eq!(report.upstreams[0].images, 1);
}
