//! Two runners by mistake waste work, never data: on Garage (no create-only writes, so no
//! lease) two nodes both run online garbage collection and retention every fraction of a second
//! while pushers on all three nodes push images that share base layers, the way Docker does
//! (HEAD each layer, upload only what is missing, then the manifest), delete their older images
//! by digest, and retention deletes older tags under them. Every manifest a node serves must have every blob it references
//! on every node: zero violations, and the collectors must really have deleted blobs.
#![allow(missing_docs, clippy::unwrap_used)]

mod cluster_kit;
mod common;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;

use cluster_kit::*;

const SOAK: Duration = Duration::from_secs(30);
const PUSHERS: usize = 3;

/// The blobs of image `i` of pusher `p`: a base layer every image shares, a layer shared by a
/// third of them, and one of its own; the config is unique.
fn image(p: usize, i: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let base: Vec<u8> = (0..64 * 1024).map(|n| (n % 241) as u8).collect();
    let middle = format!("middle layer {}", i % 3).repeat(500).into_bytes();
    let own = format!("own layer of pusher {p} image {i}").into_bytes();
    let config =
        format!(r#"{{"architecture":"amd64","os":"linux","pusher":{p},"image":{i}}}"#).into_bytes();
    (config, vec![base, middle, own])
}

/// The last three manifests a pusher pushed.
struct Recent(std::collections::VecDeque<String>);

impl Recent {
    fn push_back_and_pop(&mut self, digest: String) -> Option<String> {
        self.0.push_back(digest);
        (self.0.len() > 3).then(|| self.0.pop_front()).flatten()
    }
}

/// Docker's way: HEAD the blob, upload it only when the registry does not have it.
async fn ensure_blob(node: &Api, repo: &str, blob: &[u8]) {
    let head = node
        .head(&format!("/v2/{repo}/blobs/{}", sha256(blob)))
        .await;
    if head.status != 200 {
        node.push_blob(repo, blob).await;
    }
}

/// The digests a manifest body references.
fn references(body: &[u8]) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut out = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_owned());
    }
    out
}

/// Checks one manifest on `node`: when served, each blob it references must be served too.
/// Returns the violations (missing blobs) found.
async fn check(node: &Api, repo: &str, reference: &str) -> Vec<String> {
    let m = get_manifest(node, repo, reference).await;
    if m.status == 404 {
        return Vec::new(); // deleted by retention meanwhile: fine
    }
    m.assert_status(200);
    let mut missing = Vec::new();
    for digest in references(&m.body) {
        let r = node.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        if r.status != 200 || sha256(&r.body) != digest {
            missing.push(format!(
                "{}: {repo}@{reference} references {digest}: {}",
                node.url, r.status
            ));
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_and_retention_on_two_nodes_during_pushes_lose_nothing() {
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-soak") else {
        return;
    };
    let jobs = "  maintenance:
    gc: {enabled: true, interval: 300ms, delay: 3s}
    retention:
      enabled: true
      interval: 1s
      policies:
        - repositories: ['soak/**']
          keeplast: 4
          deleteuntagged: true
";
    c.start("gc-1", "", jobs, "");
    c.start("gc-2", "", jobs, "");
    // The third node has the same maintenance settings (so it writes the touch markers the
    // collectors read) but is told gc-1 runs the jobs; gc-1 and gc-2 are not: both collect.
    c.start("pusher", "jobsnode: gc-1", jobs, "");
    let urls: Vec<String> = (0..3).map(|i| c.node(i).url.clone()).collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUSHERS {
        let nodes: Vec<Api> = urls.iter().map(|u| Api::new(u)).collect();
        tasks.push(tokio::spawn(async move {
            let repo = format!("soak/app{p}");
            let (mut pushed, mut violations) = (0usize, Vec::new());
            let mut i = 0;
            let mut recent = Recent(std::collections::VecDeque::new());
            while started.elapsed() < SOAK {
                // Each step on another node: layers, manifest, then the check.
                let (config, layers) = image(p, i);
                let blobs_node = &nodes[(p + i) % 3];
                for blob in layers.iter().chain([&config]) {
                    ensure_blob(blobs_node, &repo, blob).await;
                }
                let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
                let body = manifest(&config, &refs);
                let digest =
                    put_manifest(&nodes[(p + i + 1) % 3], &repo, &format!("t{i}"), &body).await;
                violations.extend(check(&nodes[(p + i + 2) % 3], &repo, &digest).await);
                // Cleanup as CI jobs do it: the image three pushes back goes, by digest, so its
                // own layer and config become garbage while the shared ones stay in use.
                if let Some(old) = recent.push_back_and_pop(digest) {
                    let r = nodes[i % 3]
                        .delete(&format!("/v2/{repo}/manifests/{old}"))
                        .await;
                    assert!(
                        r.status == 202 || r.status == 404,
                        "delete {old}: {}",
                        r.status
                    );
                }
                pushed += 1;
                i += 1;
            }
            (pushed, violations)
        }));
    }
    let (mut pushed, mut violations) = (0, Vec::new());
    for t in tasks {
        let (n, v) = t.await.unwrap();
        pushed += n;
        violations.extend(v);
    }
    // Let the collectors finish what they started and run a few more times after the pushes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut checked = 0;
    for p in 0..PUSHERS {
        let repo = format!("soak/app{p}");
        let tags: Vec<String> = {
            let r = c.node(2).get(&format!("/v2/{repo}/tags/list")).await;
            r.assert_status(200);
            serde_json::from_value(r.json()["tags"].clone()).unwrap()
        };
        assert!(
            !tags.is_empty() && tags.len() <= 4,
            "retention keeps the newest 4: {tags:?}"
        );
        for tag in &tags {
            for i in 0..3 {
                violations.extend(check(c.node(i), &repo, tag).await);
                checked += 1;
            }
        }
    }
    let mut deleted = 0.0;
    for i in 0..2 {
        deleted += Scrape::take(c.node(i))
            .await
            .value("berth_gc_blobs_deleted_total", &[]);
    }
    eprintln!(
        "soak: {pushed} images pushed in {:?} by {PUSHERS} pushers over 3 nodes, 2 collectors deleted {deleted} blobs, {checked} final manifest checks, {} violations",
        started.elapsed(),
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        pushed > 30,
        "the soak pushed too little to mean anything: {pushed}"
    );
    assert!(
        deleted > 0.0,
        "the collectors deleted nothing: the soak proved nothing"
    );
}
