//! `berth retention` in the real binary, on a data directory filled through the HTTP API:
//! the dry run names exactly what the real run deletes, the registry then serves exactly the
//! kept tags, and a real run killed with SIGKILL leaves every listed tag pullable.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::oci::{
    artifact_manifest, descriptor, image_manifest, index_manifest, manifest_descriptor, sha256,
    Api, Reg, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};
use common::{berth, text, BERTH};
use serde_json::Value;

const DAY: f64 = 24.0 * 3600.0;

/// The policy, set from the environment as a whole section (registry:2's YAML override form).
fn retention_env(policy: &str) -> (&'static str, String) {
    (
        "REGISTRY_STORAGE_MAINTENANCE_RETENTION",
        format!("{{policies: [{policy}]}}"),
    )
}

fn repo_dir(reg: &Reg, repo: &str) -> PathBuf {
    reg.dir
        .path()
        .join("data/docker/registry/v2/repositories")
        .join(repo)
}

fn ago(days: f64) -> SystemTime {
    SystemTime::now() - Duration::from_secs_f64(days * DAY)
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// Gives every file under `dir` the same modification time.
fn age_all(dir: &Path, time: SystemTime) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            age_all(&path, time);
        } else {
            set_mtime(&path, time);
        }
    }
}

fn set_pushed(reg: &Reg, repo: &str, tag: &str, days: f64) {
    let link = repo_dir(reg, repo).join(format!("_manifests/tags/{tag}/current/link"));
    set_mtime(&link, ago(days));
}

/// Runs `berth retention [--dry-run] CONFIG`; returns stdout's lines.
fn retention(reg: &Reg, dry_run: bool, env: &(&str, String)) -> Vec<String> {
    let mut args = vec!["retention"];
    if dry_run {
        args.push("--dry-run");
    }
    args.push(&reg.config);
    let out = berth(&args, &[(env.0, env.1.as_str())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

async fn tags(api: &Api, repo: &str) -> Vec<String> {
    let r = api.get(&format!("/v2/{repo}/tags/list")).await;
    r.assert_status(200);
    let mut tags: Vec<String> = r.json()["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

/// Pulls `repo:reference` and every blob and child it references, checking each digest.
/// Returns the HTTP status of the manifest GET.
async fn pull(api: &Api, repo: &str, reference: &str) -> u16 {
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
    let r = api
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("accept", accept.as_str())],
            Vec::new(),
        )
        .await;
    if r.status != 200 {
        return r.status;
    }
    let m: Value = r.json();
    let mut blobs: Vec<String> = m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(m.get("config"))
        .filter_map(|d| d["digest"].as_str().map(str::to_owned))
        .collect();
    blobs.sort();
    for digest in blobs {
        let b = api.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        assert_eq!(
            b.status, 200,
            "{repo}:{reference}: blob {digest} is missing"
        );
        assert_eq!(sha256(&b.body), digest, "{repo}:{reference}: blob {digest}");
    }
    for child in m["manifests"].as_array().into_iter().flatten() {
        let digest = child["digest"].as_str().expect("child digest");
        assert_eq!(
            Box::pin(pull(api, repo, digest)).await,
            200,
            "{repo}: child {digest}"
        );
    }
    200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_names_what_the_real_run_deletes() {
    let reg = Reg::start("");
    let mut digests = std::collections::HashMap::new();
    for t in 0..8 {
        let (_, d) = reg
            .push_image("team/app", &format!("build-{t}"), &format!("b{t}"))
            .await;
        digests.insert(format!("build-{t}"), d);
    }
    for tag in ["pr-1", "stable"] {
        let (_, d) = reg.push_image("team/app", tag, tag).await;
        digests.insert(tag.to_owned(), d);
    }
    let (body, _) = reg.push_image("team/app", "scratch", "untagged").await;
    let untagged = sha256(body.as_bytes());
    assert_eq!(
        reg.delete("/v2/team/app/manifests/scratch").await.status,
        202
    );
    // A multi-arch image: untagged children, a tagged index, a signature of the index.
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(r#"{{"architecture":"{arch}"}}"#).into_bytes();
        let layer = format!("{arch} layer").into_bytes();
        reg.push_blob("team/multi", &config).await;
        reg.push_blob("team/multi", &layer).await;
        let body = image_manifest(
            OCI_MANIFEST,
            descriptor(OCI_CONFIG, &config),
            &[descriptor(OCI_LAYER, &layer)],
        );
        let digest = sha256(body.as_bytes());
        reg.push_manifest("team/multi", &digest, OCI_MANIFEST, &body)
            .await;
        children.push(manifest_descriptor(OCI_MANIFEST, &body));
    }
    let index = index_manifest(OCI_INDEX, &children);
    let index_digest = reg
        .push_manifest("team/multi", "latest", OCI_INDEX, &index)
        .await;
    reg.push_blob("team/multi", b"{}").await;
    reg.push_blob("team/multi", b"signature").await;
    let sig = artifact_manifest(
        "application/example.sig",
        b"signature",
        manifest_descriptor(OCI_INDEX, &index),
        "sig",
    );
    let sig_digest = sha256(sig.as_bytes());
    reg.push_manifest("team/multi", &sig_digest, OCI_MANIFEST, &sig)
        .await;

    age_all(&reg.dir.path().join("data"), ago(60.0));
    for t in 0..8 {
        set_pushed(&reg, "team/app", &format!("build-{t}"), f64::from(t) + 0.5);
    }
    let env = retention_env(
        "{repositories: ['team/*'], keeplast: 2, olderthan: 3d, keeptags: ['^stable$'], deletetags: ['^pr-'], deleteuntagged: true}",
    );
    let dry = retention(&reg, true, &env);
    assert_eq!(
        tags(&reg, "team/app").await.len(),
        10,
        "the dry run deleted tags"
    );
    let real = retention(&reg, false, &env);
    for line in dry.iter().chain(&real) {
        println!("{line}");
    }
    let (dry_summary, dry_lines) = dry.split_last().expect("dry output");
    let (real_summary, real_lines) = real.split_last().expect("real output");
    let dry_as_real: Vec<String> = dry_lines
        .iter()
        .map(|l| l.replace(": would delete ", ": deleted "))
        .collect();
    assert_eq!(dry_as_real, real_lines);
    assert_eq!(
        dry_summary.replace("would be deleted", "deleted"),
        *real_summary
    );
    assert!(
        real_summary.starts_with(
            "2 repositories checked, 5 tags kept, 6 tags and 7 untagged manifests deleted"
        ),
        "{real_summary}"
    );

    // Exactly the kept tags are served, each with everything it references.
    let kept = ["build-0", "build-1", "build-2", "stable"];
    assert_eq!(tags(&reg, "team/app").await, kept);
    for tag in kept {
        assert_eq!(pull(&reg, "team/app", tag).await, 200, "{tag}");
    }
    for tag in ["build-3", "build-7", "pr-1"] {
        assert_eq!(pull(&reg, "team/app", tag).await, 404, "{tag}");
        assert_eq!(pull(&reg, "team/app", &digests[tag]).await, 404, "{tag}");
    }
    assert_eq!(pull(&reg, "team/app", &untagged).await, 404);
    assert_eq!(pull(&reg, "team/multi", "latest").await, 200);
    assert_eq!(pull(&reg, "team/multi", &sig_digest).await, 200);
    let referrers = reg
        .get(&format!("/v2/team/multi/referrers/{index_digest}"))
        .await;
    assert_eq!(
        referrers.json()["manifests"].as_array().map(Vec::len),
        Some(1)
    );
    // Nothing is left for a second run.
    let again = retention(&reg, true, &env);
    assert!(
        again[0].contains("0 tags and 0 untagged manifests"),
        "{again:?}"
    );
}

/// Starts a real run, kills it with SIGKILL right after its first deletion, and returns
/// whether it had finished by then.
fn run_and_kill(reg: &Reg, env: &(&str, String)) -> bool {
    let mut child = Command::new(BERTH)
        .args(["retention", &reg.config])
        .env(env.0, &env.1)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn berth retention");
    let stdout = child.stdout.take().expect("stdout");
    let first = BufReader::new(stdout).lines().next();
    let _ = child.kill();
    let finished = first.is_none_or(|l| l.is_ok_and(|l| l.contains("repositories checked")));
    let _ = child.wait();
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_midway_leaves_every_listed_tag_pullable() {
    let mut reg = Reg::start("");
    let layer = b"a layer every image shares".to_vec();
    reg.push_blob("big/app", &layer).await;
    for i in 0..300 {
        let config = format!(r#"{{"n":{i}}}"#).into_bytes();
        reg.push_blob("big/app", &config).await;
        let body = image_manifest(
            OCI_MANIFEST,
            descriptor(OCI_CONFIG, &config),
            &[descriptor(OCI_LAYER, &layer)],
        );
        reg.push_manifest("big/app", &format!("t{i:03}"), OCI_MANIFEST, &body)
            .await;
    }
    // Equal push times: the greatest 50 names are the newest.
    age_all(&reg.dir.path().join("data"), ago(30.0));
    let env = retention_env("{repositories: ['big/**'], keeplast: 50, deleteuntagged: true}");
    let kept: Vec<String> = (250..300).map(|i| format!("t{i:03}")).collect();

    let mut interrupted = 0;
    for _ in 0..5 {
        if run_and_kill(&reg, &env) {
            break;
        }
        let listed = tags(&reg, "big/app").await;
        let revisions = std::fs::read_dir(repo_dir(&reg, "big/app/_manifests/revisions/sha256"))
            .expect("revisions")
            .count();
        if listed.len() > kept.len() || revisions > kept.len() {
            interrupted += 1;
        }
        for tag in &kept {
            assert!(listed.contains(tag), "kept tag {tag} is gone");
        }
        for tag in &listed {
            let status = pull(&reg, "big/app", tag).await;
            if status != 200 {
                // Only the empty directory of a tag being deleted may remain.
                let dir = repo_dir(&reg, "big/app/_manifests/tags").join(tag);
                assert!(!kept.contains(tag), "{tag}: {status}");
                assert!(!dir.join("current/link").exists(), "{tag}: {status}");
            }
        }
    }
    println!("{interrupted} kills landed during a run");
    assert!(interrupted > 0, "no kill landed during a run");

    // Restart, finish the run, and the registry serves exactly the kept tags.
    reg = reg.restart();
    let out = retention(&reg, false, &env);
    println!("{}", out.join("\n"));
    assert_eq!(tags(&reg, "big/app").await, kept);
    for tag in &kept {
        assert_eq!(pull(&reg, "big/app", tag).await, 200, "{tag}");
    }
    let revisions = std::fs::read_dir(repo_dir(&reg, "big/app/_manifests/revisions/sha256"))
        .expect("revisions")
        .count();
    assert_eq!(revisions, kept.len());
}
