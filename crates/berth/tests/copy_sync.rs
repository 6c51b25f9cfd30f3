//! `berth sync` with a skopeo sync file from Berth into Debian's docker-registry (whose access
//! log counts the uploads), and a `berth copy` killed half-way and re-run. All on 127.0.0.1.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod copy_kit;
mod mirror_kit;

use std::time::Duration;

use common::oci::{sha256, Reg};
use copy_kit::{addr, manifest_digest, ok, Env};
use mirror_kit::{data, have_registry2, Mode, Registry2, TestProxy};

/// A tag regex selects v1.x; the first run copies them, the second moves nothing (no upload,
/// no manifest written); a dry run into a fresh prefix reports bytes and writes nothing; a
/// semver range selects the rest.
#[tokio::test(flavor = "multi_thread")]
async fn sync_by_tag_regex_twice_moves_nothing_the_second_time() {
    if !have_registry2() {
        return;
    }
    let env = Env::new();
    let a = Reg::start("");
    let mut digests = Vec::new();
    for (tag, seed) in [("v1.0", "a"), ("v1.1", "b"), ("v2.0", "c"), ("latest", "c")] {
        digests.push(a.push_image("tools", tag, seed).await.1);
    }
    let r2 = Registry2::start("");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync.yml");
    std::fs::write(
        &file,
        format!(
            "{}:\n  tls-verify: false\n  images-by-tag-regex:\n    tools: '^v1\\.'\n",
            addr(&a.url)
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let dest = format!("{}/mirror", r2.addr);
    let sync = |extra: &'static [&'static str], dest: String| {
        let file = file.clone();
        let env = &env;
        async move {
            let mut args = vec!["sync", "--dest-tls-verify=false"];
            args.extend_from_slice(extra);
            args.extend([file.as_str(), dest.as_str()]);
            env.berth(&args).await
        }
    };

    let log = ok(&sync(&[], dest.clone()).await);
    assert!(log.contains("sync: 2 images (0 unchanged)"), "{log}");
    let r2_api = r2.api();
    assert_eq!(
        manifest_digest(&r2_api, "mirror/tools", "v1.0")
            .await
            .as_ref(),
        Some(&digests[0])
    );
    assert_eq!(
        manifest_digest(&r2_api, "mirror/tools", "v1.1")
            .await
            .as_ref(),
        Some(&digests[1])
    );
    assert_eq!(manifest_digest(&r2_api, "mirror/tools", "v2.0").await, None);
    let uploads = r2.requests("POST", "/v2/mirror/tools/blobs/uploads/");
    let puts = r2.requests("PUT", "/v2/mirror/tools/manifests/v1.0")
        + r2.requests("PUT", "/v2/mirror/tools/manifests/v1.1");
    assert_eq!(uploads, 4, "two configs and two layers");
    assert_eq!(puts, 2);

    let log = ok(&sync(&[], dest.clone()).await);
    assert!(
        log.contains("sync: 2 images (2 unchanged), copied 0 blobs"),
        "{log}"
    );
    assert_eq!(
        r2.requests("POST", "/v2/mirror/tools/blobs/uploads/"),
        uploads
    );
    assert_eq!(
        r2.requests("PUT", "/v2/mirror/tools/manifests/v1.0")
            + r2.requests("PUT", "/v2/mirror/tools/manifests/v1.1"),
        puts
    );

    // A dry run into a fresh prefix says what would move, and moves nothing.
    let out = sync(&["--dry-run", "--json"], format!("{}/dry", r2.addr)).await;
    let log = ok(&out);
    assert!(log.contains("would copy 4 blobs"), "{log}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let done: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "done")
        .collect();
    assert_eq!(done.len(), 2);
    assert!(done
        .iter()
        .all(|d| d["dry_run"] == true && d["bytes_copied"].as_u64() > Some(0)));
    assert_eq!(r2.requests("POST", "/v2/dry/tools/blobs/uploads/"), 0);
    assert_eq!(manifest_digest(&r2_api, "dry/tools", "v1.0").await, None);

    // skopeo's images-by-semver: v2.0 only ("latest" is no version).
    std::fs::write(
        &file,
        format!(
            "{}:\n  tls-verify: false\n  images-by-semver:\n    tools: '>= 2'\n",
            addr(&a.url)
        ),
    )
    .unwrap();
    let log = ok(&sync(&[], dest.clone()).await);
    assert!(log.contains("sync: 1 images"), "{log}");
    assert_eq!(
        manifest_digest(&r2_api, "mirror/tools", "v2.0")
            .await
            .as_ref(),
        Some(&digests[2])
    );

    // A repository that cannot be listed fails alone: exit 6, the rest is copied.
    std::fs::write(
        &file,
        format!(
            "{}:\n  tls-verify: false\n  images:\n    tools: [latest]\n    nothere: []\n",
            addr(&a.url)
        ),
    )
    .unwrap();
    let out = sync(&[], dest.clone()).await;
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{log}");
    assert!(log.contains("nothere (tag list): FAILED"), "{log}");
    assert_eq!(
        manifest_digest(&r2_api, "mirror/tools", "latest")
            .await
            .as_ref(),
        Some(&digests[3])
    );
}

/// A copy killed while a large layer is on its way leaves no tag at the target; the re-run
/// skips the blobs that made it and completes.
#[tokio::test(flavor = "multi_thread")]
async fn killed_copy_leaves_no_tag_and_a_rerun_completes() {
    let env = Env::new();
    let a = Reg::start("");
    let big = data(3 << 20, 7);
    let small = data(1000, 8);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let api = &a.api;
    push_image_with(api, "big", &config, &[small.clone(), big.clone()]).await;
    // The source is reached through a proxy that sends bodies at 256 KiB/s.
    let slow = TestProxy::reverse(&a.url).await;
    slow.set(Mode::Slow(256));
    let b = Reg::start("");
    let src = format!("docker://{}/big:1", slow.addr);
    let dst = format!("docker://{}/big:1", addr(&b.url));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("copy.log");
    let mut child = env
        .command(&["copy", "--dest-tls-verify=false", &src, &dst])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Wait until the small blobs are there and the big one is under way, then kill.
    let mut copied = 0;
    for _ in 0..200 {
        copied = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("copied blob")
            .count();
        if copied >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        copied,
        2,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    assert_eq!(
        manifest_digest(&b, "big", "1").await,
        None,
        "no tag on a half image"
    );
    b.head(&format!("/v2/big/blobs/{}", sha256(&big)))
        .await
        .assert_status(404);

    slow.set(Mode::Pass);
    let out = env.copy(&[], &src, &dst).await;
    let log = ok(&out);
    assert_eq!(log.matches("skipped blob").count(), 2, "{log}");
    assert_eq!(log.matches("copied blob").count(), 1, "{log}");
    assert_eq!(
        manifest_digest(&b, "big", "1").await,
        manifest_digest(&a, "big", "1").await
    );
    let r = b.get(&format!("/v2/big/blobs/{}", sha256(&big))).await;
    r.assert_status(200);
    assert_eq!(r.body, big);
}

/// An OCI image of `config` and `layers`, tagged `1`.
async fn push_image_with(api: &common::oci::Api, repo: &str, config: &[u8], layers: &[Vec<u8>]) {
    use common::oci::{descriptor, image_manifest, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
    api.push_blob(repo, config).await;
    let mut descriptors = Vec::new();
    for l in layers {
        api.push_blob(repo, l).await;
        descriptors.push(descriptor(OCI_LAYER, l));
    }
    let body = image_manifest(OCI_MANIFEST, descriptor(OCI_CONFIG, config), &descriptors);
    api.push_manifest(repo, "1", OCI_MANIFEST, &body).await;
}

/// The `sync:` section: `berth serve` runs the sync file into its own storage at start (and
/// every interval), with metrics; after a restart the run finds everything unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn sync_section_runs_inside_serve() {
    let a = Reg::start("");
    let mut digests = Vec::new();
    for (tag, seed) in [("v1.0", "a"), ("v1.1", "b"), ("v2.0", "c")] {
        digests.push(a.push_image("tools", tag, seed).await.1);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync.yml");
    std::fs::write(
        &file,
        format!(
            "{}:\n  tls-verify: false\n  images-by-tag-regex:\n    tools: '^v1\\.'\n",
            addr(&a.url)
        ),
    )
    .unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:0\n    prometheus: {{enabled: true, path: /metrics}}\nsync:\n  file: {}\n  interval: 1h\n  prefix: mirror\n",
            dir.path().join("data").display(),
            file.display()
        ),
    )
    .unwrap();
    let b = Reg::start_in(dir, config.display().to_string());
    let mut found = None;
    for _ in 0..200 {
        found = manifest_digest(&b, "mirror/tools", "v1.1").await;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.as_ref(), Some(&digests[1]));
    assert_eq!(
        manifest_digest(&b, "mirror/tools", "v1.0").await.as_ref(),
        Some(&digests[0])
    );
    assert_eq!(manifest_digest(&b, "mirror/tools", "v2.0").await, None);
    let scrape = wait_for_run(&b).await;
    assert_eq!(
        scrape.value("berth_sync_images_total", &[("result", "copied")]),
        2.0
    );
    assert!(scrape.value("berth_sync_bytes_total", &[]) > 0.0);

    // Restarted: the run at start finds both images unchanged and copies nothing.
    let b = b.restart();
    let scrape = wait_for_run(&b).await;
    assert_eq!(
        scrape.value("berth_sync_images_total", &[("result", "unchanged")]),
        2.0
    );
    assert_eq!(scrape.value("berth_sync_bytes_total", &[]), 0.0);
}

/// The metrics once the first sync run has ended.
async fn wait_for_run(reg: &Reg) -> common::metrics::Scrape {
    for _ in 0..200 {
        let scrape = common::metrics::Scrape::take(reg).await;
        if scrape.value("berth_sync_runs_total", &[("result", "ok")]) >= 1.0 {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no sync run ended");
}

/// Two images sharing a layer, synced at the same time into two repositories: the layer is
/// uploaded once and mounted into the other repository.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_layer_is_uploaded_once_per_sync() {
    if !have_registry2() {
        return;
    }
    let env = Env::new();
    let a = Reg::start("");
    let shared = data(200_000, 11);
    for (repo, seed) in [("one", 1), ("two", 2)] {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","n":{seed}}}"#).into_bytes();
        push_image_with(&a, repo, &config, &[shared.clone(), data(1000, seed)]).await;
    }
    let r2 = Registry2::start("");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync.yml");
    std::fs::write(
        &file,
        format!(
            "{}:\n  tls-verify: false\n  images:\n    one: ['1']\n    two: ['1']\n",
            addr(&a.url)
        ),
    )
    .unwrap();
    let out = env
        .berth(&[
            "sync",
            "--json",
            "--dest-tls-verify=false",
            file.to_str().unwrap(),
            &format!("{}/m", r2.addr),
        ])
        .await;
    ok(&out);
    let mounted: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "done")
        .map(|v| v["blobs_mounted"].as_u64().unwrap())
        .sum();
    assert_eq!(mounted, 1);
    let uploads = r2.requests("POST", "/v2/m/one/blobs/uploads/")
        + r2.requests("POST", "/v2/m/two/blobs/uploads/");
    assert_eq!(
        uploads, 5,
        "two configs, two own layers, the shared layer once"
    );
    for repo in ["one", "two"] {
        let r = r2
            .api()
            .head(&format!("/v2/m/{repo}/blobs/{}", sha256(&shared)))
            .await;
        r.assert_status(200);
    }
}
