//! `berth export` and `berth import` with the real binary: a multi-arch image with a referrer,
//! pushed over HTTP, is exported (while the registry serves) to an OCI image layout that skopeo
//! and umoci read, imported into a second, empty registry while it serves, and pulled back byte
//! for byte. Layouts written by umoci and by skopeo import too, and a corrupt one is refused
//! with nothing tagged. Under CI=true a missing skopeo or umoci is a failure, not a skip.

mod common;

use std::path::Path;
use std::process::Command;

use common::oci::{
    artifact_manifest, descriptor, index_manifest, manifest_descriptor, sha256, Api, Reg,
    OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};
use common::{berth, text};
use serde_json::{json, Value};

/// Whether `tool` is installed; under CI=true its absence fails the test.
fn tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have {name} (scripts/install-test-deps.sh installs it)"
        );
        eprintln!("skipping the {name} checks: {name} is not installed");
    }
    found
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out.stdout
}

/// What was pushed: manifests by digest with their bodies, and every blob.
struct Pushed {
    index: String,
    index_body: String,
    manifests: Vec<(String, String)>,
    blobs: Vec<(String, Vec<u8>)>,
    sig: String,
}

/// Two platform images (pushed by digest), an index of them tagged `v1`, and a signature
/// whose subject is the index.
async fn push_multi_arch(api: &Api, repo: &str) -> Pushed {
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
        let body = common::oci::image_manifest(
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
async fn assert_serves(reg: &Reg, repo: &str, pushed: &Pushed) {
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

fn index_entries(layout: &Path) -> Vec<Value> {
    let body = std::fs::read(layout.join("index.json")).expect("index.json");
    let index: Value = serde_json::from_slice(&body).expect("JSON");
    index["manifests"].as_array().expect("manifests").clone()
}

#[tokio::test]
async fn export_then_import_into_an_empty_registry_while_both_serve() {
    let a = Reg::start("");
    let pushed = push_multi_arch(&a, "demo/app").await;
    a.push_image("demo/app", "solo", "not exported").await;
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let layout_arg = layout.to_str().expect("utf-8 path");

    let out = berth(&["export", "-c", &a.config, "demo/app:v1", layout_arg], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("exported demo/app:v1 ({})", pushed.index)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("exported referrer {}", pushed.sig)),
        "{stdout}"
    );
    assert!(stdout.contains("4 manifests and 6 blobs"), "{stdout}");
    let entries = index_entries(&layout);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    assert_eq!(entries[0]["digest"], pushed.index.as_str());
    assert_eq!(entries[1]["digest"], pushed.sig.as_str());
    assert!(entries[1].get("annotations").is_none());

    if tool("skopeo") {
        let raw =
            run(Command::new("skopeo").args(["inspect", "--raw", &format!("oci:{layout_arg}:v1")]));
        assert_eq!(raw, pushed.index_body.as_bytes());
        let inspect = run(Command::new("skopeo").args([
            "inspect",
            "--override-arch",
            "arm64",
            "--override-os",
            "linux",
            &format!("oci:{layout_arg}:v1"),
        ]));
        let inspect: Value = serde_json::from_slice(&inspect).expect("skopeo JSON");
        assert_eq!(inspect["Architecture"], "arm64", "{inspect}");
        // skopeo followed the index to the arm64 image and read its config and layer list.
        assert_eq!(inspect["Digest"], pushed.index.as_str(), "{inspect}");
        assert_eq!(inspect["Layers"], json!([pushed.blobs[3].0]), "{inspect}");
    }
    if tool("umoci") {
        let refs = run(Command::new("umoci").args(["ls", "--layout", layout_arg]));
        assert_eq!(text(&refs).trim(), "v1");
        // umoci's garbage collection keeps what index.json lists: the referrer and its blobs.
        let cleaned = work.path().join("cleaned");
        run(Command::new("cp").args(["-r", layout_arg]).arg(&cleaned));
        run(Command::new("umoci").args(["gc", "--layout"]).arg(&cleaned));
        let manifests = pushed.manifests.iter().map(|(d, _)| d);
        for digest in manifests.chain(pushed.blobs.iter().map(|(d, _)| d)) {
            let hex = digest.trim_start_matches("sha256:");
            assert!(
                cleaned.join("blobs/sha256").join(hex).exists(),
                "umoci gc removed {digest}"
            );
        }
    }

    // Import into a second registry while it serves, and pull everything back.
    let b = Reg::start("");
    let out = berth(&["import", "-c", &b.config, layout_arg, "demo/copy"], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("tagged demo/copy:v1 ({})", pushed.index)),
        "{stdout}"
    );
    assert_serves(&b, "demo/copy", &pushed).await;
    let tags = b.get("/v2/demo/copy/tags/list").await.json();
    assert_eq!(tags["tags"], json!(["v1"]));

    // A corrupt copy of the layout is refused, and nothing is tagged.
    let bad = work.path().join("bad");
    run(Command::new("cp").args(["-r", layout_arg]).arg(&bad));
    let (layer_digest, layer) = &pushed.blobs[1];
    let mut flipped = layer.clone();
    flipped[0] ^= 0x01;
    let hex = layer_digest.trim_start_matches("sha256:");
    std::fs::write(bad.join("blobs/sha256").join(hex), &flipped).expect("corrupt");
    let out = berth(
        &[
            "import",
            "-c",
            &b.config,
            bad.to_str().expect("utf-8"),
            "demo/bad",
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a corrupt layout was imported");
    assert!(
        stderr.contains("content does not match its name") && stderr.contains("nothing was tagged"),
        "{stderr}"
    );
    b.get("/v2/demo/bad/tags/list")
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn layouts_written_by_umoci_and_skopeo_import() {
    let reg = Reg::start("");
    let work = tempfile::tempdir().expect("tempdir");
    if tool("umoci") {
        let layout = work.path().join("umoci");
        let image = format!("{}:t1", layout.display());
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
        run(Command::new("umoci").args(["new", "--image", &image]));
        let entry = index_entries(&layout).remove(0);
        let digest = entry["digest"].as_str().expect("digest").to_owned();
        let hex = digest.trim_start_matches("sha256:");
        let body = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("manifest");

        let out = berth(
            &[
                "import",
                "-c",
                &reg.config,
                layout.to_str().expect("utf-8"),
                "seed/umoci",
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let r = reg
            .send(
                "GET",
                "/v2/seed/umoci/manifests/t1",
                &[("accept", OCI_MANIFEST)],
                Vec::new(),
            )
            .await;
        r.assert_status(200);
        assert_eq!(r.body, body);
        assert_eq!(r.header("docker-content-digest"), digest);
    }
    if tool("skopeo") {
        // A layout skopeo wrote (copied from Berth's export under another ref name), imported
        // by that ref name under a tag given on the command line.
        let (body, digest) = reg.push_image("seed/src", "one", "skopeo").await;
        let exported = work.path().join("exported");
        let copied = work.path().join("copied");
        let out = berth(
            &[
                "export",
                "-c",
                &reg.config,
                "seed/src:one",
                exported.to_str().expect("utf-8"),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        run(Command::new("skopeo").args([
            "copy",
            "--preserve-digests",
            &format!("oci:{}:one", exported.display()),
            &format!("oci:{}:other-name", copied.display()),
        ]));
        let out = berth(
            &[
                "import",
                "-c",
                &reg.config,
                "--ref",
                "other-name",
                copied.to_str().expect("utf-8"),
                "seed/skopeo:two",
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let r = reg
            .send(
                "GET",
                "/v2/seed/skopeo/manifests/two",
                &[("accept", OCI_MANIFEST)],
                Vec::new(),
            )
            .await;
        r.assert_status(200);
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(r.header("docker-content-digest"), digest);
        let tags = reg.get("/v2/seed/skopeo/tags/list").await.json();
        assert_eq!(tags["tags"], json!(["two"]), "only the tag given");
    }
}
