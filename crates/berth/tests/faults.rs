//! Faults an operator meets: a full disk gives a clear error, frees what the failed push took,
//! and pulls keep working.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{write_config, Server};
use sha2::{Digest as _, Sha256};

/// A small tmpfs, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts `size` of tmpfs at `dir`; `None` when not root (then the test cannot run here).
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts `size` of tmpfs under `dir` and starts a registry whose data lives on it, with
/// `maintenance` YAML (a `storage.maintenance` body) if given. `None` when the test cannot run
/// here (not root), which CI does not accept.
fn registry_on_small_disk(
    dir: &Path,
    size: &str,
    maintenance: Option<&str>,
) -> Option<(SmallDisk, Server)> {
    let Some(disk) = SmallDisk::mount(&dir.join("disk"), size) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run this test as root (it mounts a tmpfs)"
        );
        eprintln!("skipping: mounting a tmpfs needs root");
        return None;
    };
    // The data goes on the small disk; blob sources the tests write live outside it.
    let config = write_config(dir, "");
    let mut yaml = std::fs::read_to_string(&config).unwrap().replace(
        &format!("rootdirectory: {}", dir.join("data").display()),
        &format!("rootdirectory: {}", dir.join("disk/data").display()),
    );
    if let Some(maintenance) = maintenance {
        yaml = yaml.replace(
            "delete: {enabled: true}",
            &format!("delete: {{enabled: true}}\n  maintenance:\n    {maintenance}"),
        );
    }
    std::fs::write(&config, yaml).unwrap();
    Some((disk, Server::start(&[&config], &[])))
}

fn blob_file(dir: &Path, name: &str, size: usize, seed: u8) -> (PathBuf, String) {
    let data: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (
        path,
        format!("sha256:{}", hex::encode(Sha256::digest(&data))),
    )
}

#[test]
fn full_disk_is_a_clear_error_and_pulls_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_disk, server)) = registry_on_small_disk(dir.path(), "4m", None) else {
        return;
    };

    let (small, small_digest) = blob_file(dir.path(), "small", 100_000, 1);
    let (status, _) = server.request(
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={small_digest}"),
        &[],
        Some(&small),
    );
    assert_eq!(status, 201);

    let (big, big_digest) = blob_file(dir.path(), "big", 8 << 20, 2);
    let (status, body) = server.request(
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={big_digest}"),
        &[],
        Some(&big),
    );
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("DENIED") && body.contains("full"), "{body}");

    let (status, body) = server.request("PATCH", "/v2/r/blobs/uploads/not-a-uuid", &[], None);
    assert_eq!(status, 404, "{body}");

    // Pulls keep working, and the failed monolithic push left nothing behind.
    let out = Command::new("curl")
        .args(["-sf", &format!("{}/v2/r/blobs/{small_digest}", server.url)])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&small).unwrap());
    let (status, _) = server.request("HEAD", &format!("/v2/r/blobs/{big_digest}"), &[], None);
    assert_eq!(status, 404);
    let (again, again_digest) = blob_file(dir.path(), "again", 1_000_000, 3);
    let (status, body) = server.request(
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={again_digest}"),
        &[],
        Some(&again),
    );
    assert_eq!(status, 201, "space of the failed push was freed: {body}");
}

#[test]
fn disk_watermark_refuses_new_uploads_and_lifts_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let watermark = "diskwatermark: {enabled: true, warn: 50, refuse: 70, interval: 50ms}";
    let Some((_disk, server)) = registry_on_small_disk(dir.path(), "8m", Some(watermark)) else {
        return;
    };
    let (kept, kept_digest) = blob_file(dir.path(), "kept", 100_000, 3);
    let push = |path: &Path, digest: &str| {
        server.request(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
            &[],
            Some(path),
        )
    };
    assert_eq!(push(&kept, &kept_digest).0, 201);

    // Something else fills the disk to ~75%: above the refuse mark, still room to write.
    let filler = dir.path().join("disk/filler");
    std::fs::write(&filler, vec![7u8; 6 << 20]).unwrap();
    let (next, next_digest) = blob_file(dir.path(), "next", 100_000, 4);
    let refused = wait_until(|| {
        let (status, body) = push(&next, &next_digest);
        (status == 507).then_some(body)
    });
    assert!(refused.contains("DENIED"), "{refused}");
    assert!(refused.contains("full"), "the message says why: {refused}");
    let (status, _) = server.request("POST", "/v2/r/blobs/uploads/", &[], None);
    assert_eq!(status, 507, "a chunked upload cannot start either");
    let (status, _) = server.get(&format!("/v2/r/blobs/{kept_digest}"));
    assert_eq!(status, 200, "pulls keep working");
    assert!(
        server
            .logs(std::time::Duration::from_millis(100))
            .iter()
            .any(|l| l.contains("refuse mark")),
        "the refusal is logged"
    );

    std::fs::remove_file(&filler).unwrap();
    // Below the mark again: the next check lifts the refusal and the same push goes through.
    wait_until(|| (push(&next, &next_digest).0 == 201).then_some(()));
}

/// Retries `f` every 50 ms for up to 10 s until it returns `Some`.
fn wait_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met in 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
