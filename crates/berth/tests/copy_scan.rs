//! `berth scan` with a real external command: a script the test writes that takes Trivy's
//! command line and writes valid SARIF or CycloneDX (no scanner database can be downloaded
//! here). The report lands as a referrer of the image with the format's artifact type, on
//! Berth (referrers API) and on docker-registry 2.8 (tag schema); a failing, hanging or
//! garbage-writing scanner exits 7, is killed after the timeout, and attaches nothing.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod copy_kit;
mod mirror_kit;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::oci::{push_multi_arch, Reg, OCI_INDEX};
use copy_kit::{addr, ok, Env};
use mirror_kit::{have_registry2, Registry2};

const SARIF: &str = r#"{"version":"2.1.0","$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[{"tool":{"driver":{"name":"fake-scanner"}},"results":[]}]}"#;
const CYCLONEDX: &str =
    r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[]}"#;

/// Writes an executable script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A scanner with Trivy's command line that logs its arguments to `args.log`.
fn fake_scanner(dir: &Path) -> PathBuf {
    let log = dir.join("args.log");
    script(
        dir,
        "scanner",
        &format!(
            r#"[ "$1" = image ] && [ "$2" = --format ] && [ "$4" = --output ] || exit 64
echo "$@" >> {log}
case "$3" in
  sarif) printf '%s' '{SARIF}' > "$5" ;;
  cyclonedx) printf '%s' '{CYCLONEDX}' > "$5" ;;
  *) printf '{{"ArtifactName":"%s"}}' "$6" > "$5" ;;
esac"#,
            log = log.display()
        ),
    )
}

async fn scan(env: &Env, args: &[&str]) -> std::process::Output {
    let mut all = vec!["scan", "--tls-verify=false"];
    all.extend_from_slice(args);
    env.berth(&all).await
}

/// The referrers of `digest` in `repo` with `artifact_type`, by the referrers API.
async fn referrers(
    reg: &Reg,
    repo: &str,
    digest: &str,
    artifact_type: &str,
) -> Vec<serde_json::Value> {
    let t = artifact_type.replace('+', "%2B");
    let r = reg
        .get(&format!("/v2/{repo}/referrers/{digest}?artifactType={t}"))
        .await;
    r.assert_status(200);
    r.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The report a referrer holds.
async fn report(api: &common::oci::Api, repo: &str, referrer: &str) -> String {
    let r = api
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{referrer}"),
            &[("accept", common::oci::OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    let layer = r.json()["layers"][0]["digest"].as_str().unwrap().to_owned();
    api.get(&format!("/v2/{repo}/blobs/{layer}")).await.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_become_referrers_on_berth_and_registry2() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = fake_scanner(dir.path());
    let scanner = scanner.to_str().unwrap();
    let env = Env::new();
    let a = Reg::start("");
    let pushed = push_multi_arch(&a, "app").await;
    let image = format!("{}/app:v1", addr(&a.url));

    let out = scan(
        &env,
        &["--command", scanner, "--format", "sarif", "--json", &image],
    )
    .await;
    ok(&out);
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["subject"], pushed.index.as_str());
    assert_eq!(line["artifactType"], "application/sarif+json");
    let args = std::fs::read_to_string(dir.path().join("args.log")).unwrap();
    let pinned = format!("{}/app@{}", addr(&a.url), pushed.index);
    assert!(
        args.contains("--output ") && args.trim_end().ends_with(&pinned),
        "{args}"
    );
    let found = referrers(&a, "app", &pushed.index, "application/sarif+json").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["digest"], line["referrer"]);
    assert_eq!(
        report(&a, "app", line["referrer"].as_str().unwrap()).await,
        SARIF
    );

    // The format from the config's scan section.
    let config = dir.path().join("scan.yml");
    std::fs::write(
        &config,
        format!("version: 0.1\nstorage: {{inmemory: {{}}}}\nscan:\n  command: {scanner}\n  format: cyclonedx\n  timeout: 30s\n"),
    )
    .unwrap();
    let out = scan(&env, &["-c", config.to_str().unwrap(), &image]).await;
    ok(&out);
    let found = referrers(&a, "app", &pushed.index, "application/vnd.cyclonedx+json").await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        report(&a, "app", found[0]["digest"].as_str().unwrap()).await,
        CYCLONEDX
    );

    // docker-registry has no referrers API: the report is listed by the sha256-<hex> tag.
    if !have_registry2() {
        return;
    }
    let r2 = Registry2::start("");
    let (_, digest) =
        mirror_kit::push_image(&r2.api(), "svc", "1", &[b"layer".to_vec()], None).await;
    let out = scan(&env, &["--command", scanner, &format!("{}/svc:1", r2.addr)]).await;
    ok(&out);
    let r = r2
        .api()
        .send(
            "GET",
            &format!("/v2/svc/manifests/{}", digest.replace(':', "-")),
            &[("accept", OCI_INDEX)],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    let index = r.json();
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/sarif+json"
    );
    let referrer = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(report(&r2.api(), "svc", referrer).await, SARIF);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_hanging_and_garbage_scanners_attach_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new();
    let a = Reg::start("");
    let pushed = push_multi_arch(&a, "app").await;
    let image = format!("{}/app:v1", addr(&a.url));
    let pid_file = dir.path().join("pid");
    let failing = script(
        dir.path(),
        "failing",
        "echo 'no vulnerability database here' >&2\nexit 3",
    );
    let hanging = script(
        dir.path(),
        "hanging",
        &format!("echo $$ > {}\nexec sleep 60", pid_file.display()),
    );
    let garbage = script(dir.path(), "garbage", "echo 'not json' > \"$5\"");

    let out = scan(&env, &["--command", failing.to_str().unwrap(), &image]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("no vulnerability database here"),
        "{stderr}"
    );

    let started = Instant::now();
    let out = scan(
        &env,
        &[
            "--command",
            hanging.to_str().unwrap(),
            "--timeout",
            "1s",
            &image,
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("killed"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the hanging scanner was killed");

    let out = scan(&env, &["--command", garbage.to_str().unwrap(), &image]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("not JSON"), "{stderr}");

    let r = a.get(&format!("/v2/app/referrers/{}", pushed.index)).await;
    let listed: Vec<String> = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        vec![pushed.sig.clone()],
        "only the signature pushed before"
    );
}

/// A Berth config with the debug server (metrics) and `scan` YAML.
fn scan_config(dir: &Path, scan: &str) -> String {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!(
            "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:0\n    prometheus: {{enabled: true, path: /metrics}}\nscan:\n{scan}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Waits until `berth_scan_total{result}` reaches `n`.
async fn wait_for_scans(reg: &Reg, result: &str, n: f64) {
    for _ in 0..300 {
        let scrape = common::metrics::Scrape::take(reg).await;
        if scrape.value("berth_scan_total", &[("result", result)]) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {result} scan");
}

/// `scan.enabled`: a tagged push is scanned after it is stored (the index, not its children
/// or the signature pushed by digest), the CycloneDX report attached as a referrer; a hanging
/// scanner is killed at the timeout, counted as failed, and the push was not held up.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_are_scanned_inside_serve() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = fake_scanner(dir.path());
    let config = scan_config(
        dir.path(),
        &format!(
            "  enabled: true\n  command: {}\n  format: cyclonedx\n  timeout: 30s\n",
            scanner.display()
        ),
    );
    let a = Reg::start_in(dir, config);
    let pushed = push_multi_arch(&a, "app").await;
    wait_for_scans(&a, "ok", 1.0).await;
    let found = referrers(&a, "app", &pushed.index, "application/vnd.cyclonedx+json").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        report(&a, "app", found[0]["digest"].as_str().unwrap()).await,
        CYCLONEDX
    );
    let args = std::fs::read_to_string(a.dir.path().join("args.log")).unwrap();
    assert_eq!(
        args.lines().count(),
        1,
        "one scan, of the tagged index: {args}"
    );
    assert!(args.contains(&format!("/app@{}", pushed.index)), "{args}");

    let dir = tempfile::tempdir().unwrap();
    let hanging = script(dir.path(), "hanging", "exec sleep 60");
    let config = scan_config(
        dir.path(),
        &format!(
            "  enabled: true\n  command: {}\n  timeout: 1s\n",
            hanging.display()
        ),
    );
    let b = Reg::start_in(dir, config);
    let started = Instant::now();
    let (_, digest) = b.push_image("svc", "1", "hang").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the push waits for no scan"
    );
    wait_for_scans(&b, "failed", 1.0).await;
    let r = b.get(&format!("/v2/svc/referrers/{digest}")).await;
    assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(0));
}
