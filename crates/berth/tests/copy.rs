//! `berth copy` with real parts on 127.0.0.1: Berth and Debian's docker-registry 2.8 (which
//! has no referrers API, so referrers travel by the `sha256-<hex>` tag schema), OCI layout
//! directories and docker-archive tarballs. Every copy is checked by digest, and by skopeo
//! when it is installed.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod copy_kit;
mod mirror_kit;

use common::oci::{assert_serves, push_multi_arch, sha256, Reg, DOCKER_MANIFEST};
use copy_kit::{addr, manifest_digest, ok, skopeo_digest, Env};
use mirror_kit::{have_registry2, Registry2};

/// berth -> docker-registry -> berth: the index, both platforms and the signature arrive
/// byte-identical; a second copy uploads no blob; `--platform` copies one child as the image.
#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_with_referrers_through_registry2_and_back() {
    if !have_registry2() {
        return;
    }
    let env = Env::new();
    let a = Reg::start("");
    let pushed = push_multi_arch(&a, "app").await;
    let r2 = Registry2::start("");
    let b = Reg::start("");
    let (a_addr, r2_addr, b_addr) = (addr(&a.url), r2.addr.clone(), addr(&b.url));

    let out = env
        .copy(
            &["--referrers"],
            &format!("docker://{a_addr}/app:v1"),
            &format!("docker://{r2_addr}/app:v1"),
        )
        .await;
    let log = ok(&out);
    assert!(log.contains("copied referrer"), "{log}");
    let r2_api = r2.api();
    assert_eq!(
        manifest_digest(&r2_api, "app", "v1").await.as_deref(),
        Some(pushed.index.as_str())
    );
    // registry:2 has no referrers API: the signature is listed by the tag schema.
    let tag = pushed.index.replace(':', "-");
    let r = r2_api
        .send(
            "GET",
            &format!("/v2/app/manifests/{tag}"),
            &[("accept", common::oci::OCI_INDEX)],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["manifests"][0]["digest"], pushed.sig.as_str());
    let uploads = r2.requests("POST", "/v2/app/blobs/uploads/");
    assert!(uploads >= 6, "{uploads} uploads");

    // Again: everything is there, so no blob moves.
    let out = env
        .copy(
            &["--referrers"],
            &format!("docker://{a_addr}/app:v1"),
            &format!("docker://{r2_addr}/app:v1"),
        )
        .await;
    let log = ok(&out);
    assert!(log.contains("unchanged"), "{log}");
    assert_eq!(r2.requests("POST", "/v2/app/blobs/uploads/"), uploads);

    // And back into another Berth, under another name: exactly what was pushed.
    let out = env
        .copy(
            &["--referrers", "--json"],
            &format!("docker://{r2_addr}/app:v1"),
            &format!("docker://{b_addr}/copied:v1"),
        )
        .await;
    ok(&out);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = events.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["digest"], pushed.index.as_str());
    assert_eq!(done["blobs_copied"], 6);
    assert_serves(&b, "copied", &pushed).await;
    if let Some(d) = skopeo_digest(&format!("{b_addr}/copied:v1")).await {
        assert_eq!(d, pushed.index);
    }

    // One platform: its manifest becomes the image, digest kept.
    let out = env
        .copy(
            &["--platform", "linux/arm64"],
            &format!("docker://{a_addr}/app:v1"),
            &format!("docker://{r2_addr}/armonly:v1"),
        )
        .await;
    ok(&out);
    let arm = &pushed.manifests[1].0;
    assert_eq!(
        manifest_digest(&r2_api, "armonly", "v1").await.as_ref(),
        Some(arm)
    );

    // Within one registry, blobs are mounted rather than uploaded.
    let out = env
        .copy(
            &[],
            &format!("docker://{b_addr}/copied:v1"),
            &format!("docker://{b_addr}/other:v1"),
        )
        .await;
    let log = ok(&out);
    assert!(log.contains("mounted blob"), "{log}");
    assert!(!log.contains("copied blob"), "{log}");
}

/// Registry -> OCI layout -> registry, with the referrer, digests kept; the layout is one
/// skopeo reads.
#[tokio::test(flavor = "multi_thread")]
async fn oci_layout_both_ways() {
    let env = Env::new();
    let a = Reg::start("");
    let pushed = push_multi_arch(&a, "app").await;
    let b = Reg::start("");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = format!("oci:{}:v1", layout.display());

    let out = env
        .copy(
            &["--referrers"],
            &format!("docker://{}/app:v1", addr(&a.url)),
            &oci,
        )
        .await;
    ok(&out);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let named = entries
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "v1")
        .unwrap();
    assert_eq!(named["digest"], pushed.index.as_str());
    assert!(entries.iter().any(|e| e["digest"] == pushed.sig.as_str()));
    for (digest, content) in &pushed.blobs {
        let file = layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        assert_eq!(&std::fs::read(file).unwrap(), content);
    }
    let skopeo = tokio::process::Command::new("skopeo")
        .args(["inspect", "--raw", &oci])
        .output()
        .await;
    if let Ok(o) = skopeo {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha256(&o.stdout), pushed.index);
    }

    let out = env
        .copy(
            &["--referrers"],
            &oci,
            &format!("docker://{}/fromdir:v1", addr(&b.url)),
        )
        .await;
    ok(&out);
    assert_serves(&b, "fromdir", &pushed).await;
}

/// Writes a tarball in `docker save`'s layout: `<id>/layer.tar`, `<config hex>.json`,
/// `manifest.json` and `repositories`, with the system tar.
fn docker_save(dir: &std::path::Path, layer: &[u8], config: &[u8]) -> std::path::PathBuf {
    let root = dir.join("save");
    let id = sha256(layer).trim_start_matches("sha256:").to_owned();
    let config_hex = sha256(config).trim_start_matches("sha256:").to_owned();
    std::fs::create_dir_all(root.join(&id)).unwrap();
    std::fs::write(root.join(&id).join("layer.tar"), layer).unwrap();
    std::fs::write(root.join(format!("{config_hex}.json")), config).unwrap();
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["demo:1"],
        "Layers": [format!("{id}/layer.tar")],
    }]);
    std::fs::write(root.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(
        root.join("repositories"),
        format!(r#"{{"demo":{{"1":"{id}"}}}}"#),
    )
    .unwrap();
    let file = dir.join("demo.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&file)
        .arg("-C")
        .arg(&root)
        .args([
            "manifest.json",
            "repositories",
            &format!("{config_hex}.json"),
            &id,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    file
}

/// A layer: a real tar of one file, made with the system tar.
fn layer_tar(dir: &std::path::Path) -> Vec<u8> {
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), "hello from a docker-archive\n").unwrap();
    let out = std::process::Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(&content)
        .arg("hello.txt")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A docker-archive into Berth and back out: config and layer keep their digests (the layer
/// stays an uncompressed tar, so it is still the config's diff_id) and the archive written
/// lists the image under its name.
#[tokio::test(flavor = "multi_thread")]
async fn docker_archive_in_and_out() {
    let env = Env::new();
    let a = Reg::start("");
    let dir = tempfile::tempdir().unwrap();
    let layer = layer_tar(dir.path());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    })
    .to_string()
    .into_bytes();
    let archive = docker_save(dir.path(), &layer, &config);
    let a_addr = addr(&a.url);

    let out = env
        .copy(
            &[],
            &format!("docker-archive:{}:demo:1", archive.display()),
            &format!("docker://{a_addr}/demo:1"),
        )
        .await;
    ok(&out);
    let r = a
        .send(
            "GET",
            "/v2/demo/manifests/1",
            &[("accept", DOCKER_MANIFEST)],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    let manifest = r.json();
    let first = sha256(&r.body);
    assert_eq!(manifest["config"]["digest"], sha256(&config).as_str());
    assert_eq!(manifest["layers"][0]["digest"], sha256(&layer).as_str());
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    if let Some(d) = skopeo_digest(&format!("{a_addr}/demo:1")).await {
        assert_eq!(d, first);
    }

    let back = dir.path().join("back.tar");
    let out = env
        .copy(
            &[],
            &format!("docker://{a_addr}/demo:1"),
            &format!("docker-archive:{}:demo:1", back.display()),
        )
        .await;
    ok(&out);
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&back)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(listing[0]["RepoTags"][0], "demo:1");
    let config_path = listing[0]["Config"].as_str().unwrap();
    assert_eq!(std::fs::read(unpacked.join(config_path)).unwrap(), config);
    let layer_path = listing[0]["Layers"][0].as_str().unwrap();
    assert_eq!(std::fs::read(unpacked.join(layer_path)).unwrap(), layer);
    assert!(
        !dir.path().join("back.tar.berth-partial.d").exists(),
        "staging removed"
    );

    // The archive Berth wrote reads back as the same image.
    let out = env
        .copy(
            &[],
            &format!("docker-archive:{}", back.display()),
            &format!("docker://{a_addr}/again:1"),
        )
        .await;
    ok(&out);
    assert_eq!(manifest_digest(&a, "again", "1").await, Some(first));
}

/// Credentials both ways: a registry:2 with htpasswd (Basic) as the source with
/// `--src-creds`, a Berth with its built-in token server (Bearer tokens by the
/// `WWW-Authenticate` flow) as the target with `docker login`'s config file. Without the
/// target's credentials the copy fails as the destination's (exit 4).
#[tokio::test(flavor = "multi_thread")]
async fn basic_source_and_token_server_target() {
    use base64::Engine as _;
    use common::auth::{add_user, bearer, builtin_token_auth};

    if !have_registry2() {
        return;
    }
    let r2 = Registry2::start_htpasswd();
    let basic = common::auth::basic("user", "pass");
    let (_, digest) = mirror_kit::push_image(
        &r2.api(),
        "team/app",
        "1",
        &[mirror_kit::data(5000, 1)],
        Some(&basic),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "root", "rootpw");
    let auth = builtin_token_auth(
        "copy-test",
        &htpasswd,
        &dir.path().join("signing.pem"),
        "admins: [root]",
    );
    let config = common::write_config(dir.path(), &auth);
    let server = common::Server::start(&[&config], &[]);
    let target = addr(&server.url);
    let env = Env::new();
    let src = format!("docker://{}/team/app:1", r2.addr);
    let dst = format!("docker://{target}/copied/app:1");

    let out = env.copy(&["--src-creds", "user:pass"], &src, &dst).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let auths = serde_json::json!({"auths": {target.clone(): {
        "auth": base64::engine::general_purpose::STANDARD.encode("root:rootpw")
    }}});
    std::fs::write(env.dir.path().join("config.json"), auths.to_string()).unwrap();
    let out = env.copy(&["--src-creds", "user:pass"], &src, &dst).await;
    ok(&out);
    let token = bearer(
        &server.url,
        Some(("root", "rootpw")),
        &["repository:copied/app:pull"],
    )
    .await;
    let r = common::auth::send(
        &server.url,
        "GET",
        "/v2/copied/app/manifests/1",
        Some(&token),
        None,
        None,
    )
    .await;
    r.assert_status(200);
    assert_eq!(sha256(&r.body), digest);
}

/// `local:` with `--config`: into Berth's storage with no server running, then served by a
/// server started on it, byte for byte with the referrer; and back out of the storage.
#[tokio::test(flavor = "multi_thread")]
async fn local_storage_offline_both_ways() {
    let env = Env::new();
    let a = Reg::start("");
    let pushed = push_multi_arch(&a, "app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let out = env
        .copy(
            &["--referrers", "-c", &config],
            &format!("docker://{}/app:v1", addr(&a.url)),
            "local:offline/app:v1",
        )
        .await;
    let log = ok(&out);
    assert!(log.contains("copied referrer"), "{log}");
    let b = Reg::start_in(dir, config.clone());
    assert_serves(&b, "offline/app", &pushed).await;

    let layout = tempfile::tempdir().unwrap();
    let oci = format!("oci:{}:v1", layout.path().display());
    let out = env
        .copy(
            &["--referrers", "-c", &config],
            "local:offline/app:v1",
            &oci,
        )
        .await;
    ok(&out);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert!(digests.contains(&pushed.index.as_str()), "{digests:?}");
    assert!(digests.contains(&pushed.sig.as_str()), "{digests:?}");
}
