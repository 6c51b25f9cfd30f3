//! `berth export` and `berth import` with the real binary: a multi-arch image with a referrer,
//! pushed over HTTP, is exported (while the registry serves) to an OCI image layout that skopeo
//! and umoci read, imported into a second, empty registry while it serves, and pulled back byte
//! for byte. Layouts written by umoci and by skopeo import too, and a corrupt one is refused
//! with nothing tagged. Under CI=true a missing skopeo or umoci is a failure, not a skip.

mod common;

use std::path::Path;
use std::process::Command;

use common::oci::{assert_serves, push_multi_arch, Reg, OCI_MANIFEST};
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
