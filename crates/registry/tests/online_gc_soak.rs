//! Soak test of the online garbage collector on the filesystem driver: collections run back to
//! back with a tiny delay while tasks push new images, re-push existing blobs, skip uploads
//! after a HEAD (Harbor's #23116 path), mount across repositories, pull, delete manifests and
//! upload orphans. Afterwards every recorded manifest pulls and every blob it references
//! hashes to its digest, before and after further collections.
//!
//! `BERTH_GC_SOAK_SECS` (default 12) sets how long the clients run; `BERTH_GC_SOAK_DELAY_MS`
//! (default 1000) the collector's delay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_oci::{Digest, Digester, Manifest, Reference, RepoName};
use berth_registry::gc::OnlineGcOptions;
use berth_registry::{Registry, RegistryError, RegistryOptions};
use berth_storage::FilesystemDriver;
use bytes::Bytes;
use futures_util::TryStreamExt;

const REPOS: u64 = 4;
const TAGS: u64 = 6;

/// A manifest this test put and has not deleted.
#[derive(Clone, Debug)]
struct Image {
    repo: String,
    tag: String,
    manifest: Digest,
    blobs: Vec<Digest>,
}

#[derive(Default)]
struct State {
    images: Vec<Image>,
    contents: HashMap<Digest, Bytes>,
    pool: Vec<(String, Digest)>,
}

#[derive(Default)]
struct Counts {
    pushes: AtomicU64,
    repushes: AtomicU64,
    head_skips: AtomicU64,
    push_blob_unknown: AtomicU64,
    mounts: AtomicU64,
    mount_fallbacks: AtomicU64,
    pulls: AtomicU64,
    pulls_skipped: AtomicU64,
    deletes: AtomicU64,
    orphans: AtomicU64,
    gc_runs: AtomicU64,
    trashed: AtomicU64,
    put_back: AtomicU64,
    restored: AtomicU64,
    purged: AtomicU64,
    max_op_ms: AtomicU64,
    serial: AtomicU64,
}

/// Failures that must never happen: lost or corrupt content, unexpected errors.
type Violations = Arc<Mutex<Vec<String>>>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Ctx {
    reg: Arc<Registry>,
    state: Mutex<State>,
    counts: Counts,
    violations: Violations,
    stop: AtomicBool,
}

impl Ctx {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    fn timed(&self, started: Instant) {
        let ms = started.elapsed().as_millis() as u64;
        self.counts.max_op_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn fresh_content(&self, rng: &mut Rng, kind: &str) -> Bytes {
        let n = self.counts.serial.fetch_add(1, Ordering::Relaxed);
        let pad = "x".repeat(rng.below(4096) as usize);
        Bytes::from(format!("{kind} {n} {pad}"))
    }
}

fn repo(name: &str) -> RepoName {
    name.parse().expect("repo")
}

async fn upload(reg: &Registry, name: &str, content: &Bytes) -> Result<Digest, RegistryError> {
    let digest = Digest::sha256_of(content);
    let stream = Box::pin(futures_util::stream::iter([Ok(content.clone())]));
    reg.put_blob(&repo(name), &digest, stream).await?;
    Ok(digest)
}

fn manifest_body(config: &Digest, layers: &[Digest], serial: u64) -> Bytes {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l}","size":1}}"#)
        })
        .collect();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{}],"annotations":{{"serial":"{serial}"}}}}"#,
        layers.join(",")
    ))
}

/// Reads a blob through `repo` and checks it hashes to its digest.
async fn check_blob(reg: &Registry, name: &str, digest: &Digest) -> Result<(), String> {
    reg.stat_blob(&repo(name), digest)
        .await
        .map_err(|e| format!("{name}@{digest}: stat: {e}"))?;
    let stream = reg
        .read_blob(digest, 0, None)
        .await
        .map_err(|e| format!("{name}@{digest}: read: {e}"))?;
    let chunks: Vec<Bytes> = stream
        .try_collect()
        .await
        .map_err(|e| format!("{name}@{digest}: stream: {e}"))?;
    let mut digester = Digester::new(digest.algorithm());
    digester.update(&chunks.concat());
    let actual = digester.finish();
    if &actual != digest {
        return Err(format!("{name}@{digest}: content hashes to {actual}"));
    }
    Ok(())
}

/// Pulls a manifest by reference and every blob it references.
async fn pull(reg: &Registry, name: &str, reference: &Reference) -> Result<Digest, String> {
    let stored = reg
        .get_manifest(&repo(name), reference)
        .await
        .map_err(|e| format!("{name}:{reference}: manifest: {e}"))?;
    let manifest = Manifest::parse(&stored.body, Some(&stored.media_type))
        .map_err(|e| format!("{name}:{reference}: parse: {e}"))?;
    for blob in manifest.blob_references() {
        check_blob(reg, name, blob).await?;
    }
    Ok(stored.digest)
}

async fn pusher(ctx: Arc<Ctx>, seed: u64, deadline: Instant) {
    let mut rng = Rng(seed);
    while Instant::now() < deadline {
        let name = format!("soak/r{}", rng.below(REPOS));
        let tag = format!("t{}", rng.below(TAGS));
        let started = Instant::now();
        let result = push_image(&ctx, &mut rng, &name, &tag).await;
        ctx.timed(started);
        match result {
            Ok(()) => {
                ctx.counts.pushes.fetch_add(1, Ordering::Relaxed);
            }
            Err(RegistryError::ManifestBlobUnknown(_) | RegistryError::BlobUnknown(_)) => {
                ctx.counts.push_blob_unknown.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => ctx.violation(format!("push {name}:{tag}: {e}")),
        }
    }
}

/// One image: a new or re-pushed config, two layers (new, re-pushed, or reused after a HEAD
/// without uploading), then the manifest.
async fn push_image(ctx: &Ctx, rng: &mut Rng, name: &str, tag: &str) -> Result<(), RegistryError> {
    let mut blobs = Vec::new();
    for kind in ["config", "layer", "layer"] {
        let choice = rng.below(3);
        let reuse = {
            let state = ctx.state();
            match choice {
                // Re-push content pushed before (maybe an orphan, maybe trashed or purged).
                1 if !state.pool.is_empty() => {
                    let (_, d) = &state.pool[rng.below(state.pool.len() as u64) as usize];
                    Some((true, d.clone(), state.contents[d].clone()))
                }
                // Reuse a layer this repository already has, after a HEAD, without uploading.
                2 => state
                    .images
                    .iter()
                    .filter(|i| i.repo == name)
                    .nth(rng.below(4) as usize)
                    .and_then(|i| i.blobs.last())
                    .map(|d| (false, d.clone(), state.contents[d].clone())),
                _ => None,
            }
        };
        let digest = match reuse {
            Some((true, _, content)) => {
                ctx.counts.repushes.fetch_add(1, Ordering::Relaxed);
                upload(&ctx.reg, name, &content).await?
            }
            Some((false, digest, content)) => {
                if ctx.reg.stat_blob(&repo(name), &digest).await.is_ok() {
                    ctx.counts.head_skips.fetch_add(1, Ordering::Relaxed);
                    digest
                } else {
                    upload(&ctx.reg, name, &content).await?
                }
            }
            None => {
                let content = ctx.fresh_content(rng, kind);
                let digest = upload(&ctx.reg, name, &content).await?;
                let mut state = ctx.state();
                state.contents.insert(digest.clone(), content);
                state.pool.push((name.to_owned(), digest.clone()));
                digest
            }
        };
        blobs.push(digest);
    }
    put_manifest(ctx, name, tag, blobs).await
}

async fn put_manifest(
    ctx: &Ctx,
    name: &str,
    tag: &str,
    blobs: Vec<Digest>,
) -> Result<(), RegistryError> {
    let serial = ctx.counts.serial.fetch_add(1, Ordering::Relaxed);
    let body = manifest_body(&blobs[0], &blobs[1..], serial);
    let reference: Reference = tag.parse().expect("tag");
    let put = ctx
        .reg
        .put_manifest(&repo(name), &reference, None, body)
        .await?;
    ctx.state().images.push(Image {
        repo: name.to_owned(),
        tag: tag.to_owned(),
        manifest: put.digest,
        blobs,
    });
    Ok(())
}

async fn mounter(ctx: Arc<Ctx>, seed: u64, deadline: Instant) {
    let mut rng = Rng(seed);
    while Instant::now() < deadline {
        let source = {
            let state = ctx.state();
            if state.images.is_empty() {
                None
            } else {
                Some(state.images[rng.below(state.images.len() as u64) as usize].clone())
            }
        };
        let Some(image) = source else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let target = format!("soak/m{}", rng.below(REPOS));
        let started = Instant::now();
        let mut ok = true;
        for blob in &image.blobs {
            match ctx
                .reg
                .mount_blob(Some(&repo(&image.repo)), &repo(&target), blob)
                .await
            {
                Ok(Some(_)) => {
                    ctx.counts.mounts.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => {
                    // As a client does: the mount was refused, so upload the blob instead.
                    ctx.counts.mount_fallbacks.fetch_add(1, Ordering::Relaxed);
                    let content = ctx.state().contents[blob].clone();
                    if let Err(e) = upload(&ctx.reg, &target, &content).await {
                        ctx.violation(format!("upload after refused mount: {e}"));
                        ok = false;
                    }
                }
                Err(e) => {
                    ctx.violation(format!("mount {blob} into {target}: {e}"));
                    ok = false;
                }
            }
        }
        if ok {
            let tag = format!("m{}", rng.below(TAGS));
            match put_manifest(&ctx, &target, &tag, image.blobs.clone()).await {
                Ok(()) => {}
                Err(RegistryError::ManifestBlobUnknown(_)) => {
                    ctx.counts.push_blob_unknown.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => ctx.violation(format!("manifest after mount into {target}: {e}")),
            }
        }
        ctx.timed(started);
    }
}

async fn puller(ctx: Arc<Ctx>, seed: u64, deadline: Instant) {
    let mut rng = Rng(seed);
    while Instant::now() < deadline {
        let image = {
            let state = ctx.state();
            (!state.images.is_empty())
                .then(|| state.images[rng.below(state.images.len() as u64) as usize].clone())
        };
        let Some(image) = image else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let reference = Reference::Digest(image.manifest.clone());
        let started = Instant::now();
        let result = pull(&ctx.reg, &image.repo, &reference).await;
        ctx.timed(started);
        match result {
            Ok(_) => {
                ctx.counts.pulls.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Deleted meanwhile by the deleter: not a failure.
                let still_there = ctx
                    .state()
                    .images
                    .iter()
                    .any(|i| i.repo == image.repo && i.manifest == image.manifest);
                if still_there {
                    ctx.violation(format!("pull (pushed as tag {}): {e}", image.tag));
                } else {
                    ctx.counts.pulls_skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Deletes a manifest now and then, and uploads orphans (content no manifest will use).
async fn deleter(ctx: Arc<Ctx>, seed: u64, deadline: Instant) {
    let mut rng = Rng(seed);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let name = format!("soak/r{}", rng.below(REPOS));
        let content = ctx.fresh_content(&mut rng, "orphan");
        match upload(&ctx.reg, &name, &content).await {
            Ok(digest) => {
                ctx.counts.orphans.fetch_add(1, Ordering::Relaxed);
                let mut state = ctx.state();
                state.contents.insert(digest.clone(), content);
                state.pool.push((name, digest));
            }
            Err(e) => ctx.violation(format!("orphan upload: {e}")),
        }
        if rng.below(3) != 0 {
            continue;
        }
        let victim = {
            let mut state = ctx.state();
            if state.images.len() < 8 {
                continue;
            }
            let pick = state.images[rng.below(state.images.len() as u64) as usize].clone();
            state
                .images
                .retain(|i| !(i.repo == pick.repo && i.manifest == pick.manifest));
            pick
        };
        let reference = Reference::Digest(victim.manifest.clone());
        match ctx
            .reg
            .delete_manifest(&repo(&victim.repo), &reference)
            .await
        {
            Ok(()) => {
                ctx.counts.deletes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => ctx.violation(format!("delete {}@{}: {e}", victim.repo, victim.manifest)),
        }
    }
}

async fn collector(ctx: Arc<Ctx>, delay: Duration) {
    let options = OnlineGcOptions {
        delay,
        dry_run: false,
    };
    while !ctx.stop.load(Ordering::Relaxed) {
        collect_once(&ctx, options).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn collect_once(ctx: &Ctx, options: OnlineGcOptions) {
    match ctx.reg.collect_garbage_online(options).await {
        Ok(report) => {
            let c = &ctx.counts;
            c.gc_runs.fetch_add(1, Ordering::Relaxed);
            c.trashed
                .fetch_add(report.trashed.len() as u64, Ordering::Relaxed);
            c.put_back
                .fetch_add(report.put_back.len() as u64, Ordering::Relaxed);
            c.restored
                .fetch_add(report.restored.len() as u64, Ordering::Relaxed);
            c.purged
                .fetch_add(report.purged.len() as u64, Ordering::Relaxed);
        }
        Err(e) => ctx.violation(format!("online gc: {e}")),
    }
}

/// Every manifest the test still holds pulls, by digest and by tag, with intact blobs.
async fn verify_all(ctx: &Ctx) -> usize {
    let images = ctx.state().images.clone();
    for image in &images {
        let by_digest = Reference::Digest(image.manifest.clone());
        if let Err(e) = pull(&ctx.reg, &image.repo, &by_digest).await {
            ctx.violation(format!("final pull: {e}"));
        }
        for blob in &image.blobs {
            if let Err(e) = check_blob(&ctx.reg, &image.repo, blob).await {
                ctx.violation(format!("final blob: {e}"));
            }
        }
    }
    let mut tags = 0;
    for r in (0..REPOS).flat_map(|i| [format!("soak/r{i}"), format!("soak/m{i}")]) {
        let Ok(all) = ctx.reg.all_tags(&repo(&r)).await else {
            continue;
        };
        for tag in all {
            let reference: Reference = tag.parse().expect("tag");
            match pull(&ctx.reg, &r, &reference).await {
                Ok(_) => tags += 1,
                Err(e) => ctx.violation(format!("final tag pull: {e}")),
            }
        }
    }
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_gc_under_concurrent_pushes_mounts_and_pulls() {
    let secs: u64 = std::env::var("BERTH_GC_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let delay_ms: u64 = std::env::var("BERTH_GC_SOAK_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let delay = Duration::from_millis(delay_ms);
    let dir = tempfile::tempdir().expect("tempdir");
    // No fsync: more operations per second, hence more races; renames stay atomic.
    let driver = FilesystemDriver::new(dir.path())
        .expect("driver")
        .with_sync(false);
    let options = RegistryOptions {
        delete_enabled: true,
        read_only: false,
    };
    let reg = Registry::new(Arc::new(driver), options);
    let ctx = Arc::new(Ctx {
        reg,
        state: Mutex::default(),
        counts: Counts::default(),
        violations: Violations::default(),
        stop: AtomicBool::new(false),
    });

    let deadline = Instant::now() + Duration::from_secs(secs);
    let gc = tokio::spawn(collector(ctx.clone(), delay));
    let mut clients = Vec::new();
    for seed in 1..=3u64 {
        clients.push(tokio::spawn(pusher(ctx.clone(), seed * 7919, deadline)));
    }
    clients.push(tokio::spawn(mounter(ctx.clone(), 104_729, deadline)));
    for seed in [15_485_863u64, 32_452_843] {
        clients.push(tokio::spawn(puller(ctx.clone(), seed, deadline)));
    }
    clients.push(tokio::spawn(deleter(ctx.clone(), 49_979_687, deadline)));
    for client in clients {
        client.await.expect("client task");
    }
    ctx.stop.store(true, Ordering::Relaxed);
    gc.await.expect("collector task");

    let verify_started = Instant::now();
    let tags_during = verify_all(&ctx).await;
    eprintln!("verified in {:?}", verify_started.elapsed());
    // Quiet now: more collections, past the delay twice so orphans are trashed and purged.
    for _ in 0..3 {
        tokio::time::sleep(delay + Duration::from_millis(50)).await;
        collect_once(
            &ctx,
            OnlineGcOptions {
                delay,
                dry_run: false,
            },
        )
        .await;
    }
    let tags_after = verify_all(&ctx).await;

    let c = &ctx.counts;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "online GC soak ({secs}s, delay {delay_ms}ms): {} GC runs; {} image pushes ({} re-pushed blobs, {} uploads skipped after HEAD), {} pushes failed with BLOB_UNKNOWN; {} mounts ({} refused, uploaded instead); {} pulls ({} of deleted images skipped); {} manifest deletes; {} orphans; blobs trashed {}, put back at once {}, restored by GC {}, restored by requests {}, purged {}; {} images and {} tags verified; slowest client operation {} ms",
        n(&c.gc_runs), n(&c.pushes), n(&c.repushes), n(&c.head_skips), n(&c.push_blob_unknown),
        n(&c.mounts), n(&c.mount_fallbacks), n(&c.pulls), n(&c.pulls_skipped), n(&c.deletes),
        n(&c.orphans), n(&c.trashed), n(&c.put_back), n(&c.restored), ctx.reg.trash_restores(),
        n(&c.purged), ctx.state().images.len(), tags_after, n(&c.max_op_ms),
    );
    let violations = ctx.violations.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        violations.is_empty(),
        "{} violations: {:#?}",
        violations.len(),
        &violations[..violations.len().min(20)]
    );
    assert_eq!(tags_during, tags_after);
    assert!(n(&c.gc_runs) > 5 && n(&c.pushes) > 20 && n(&c.pulls) > 20);
    assert!(
        n(&c.trashed) > 0 && n(&c.purged) > 0,
        "the collector had work to do"
    );
}
