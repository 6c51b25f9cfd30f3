//! The pull-through cache's spool directory (`proxy.spooldir`): checked at startup, so a
//! missing, non-directory or read-only directory (or, unset, a temp directory that does not
//! exist, as in the `FROM scratch` image without `/tmp`) stops `berth serve` with an error
//! naming the key, the directory, the OS error and the fix; a valid one takes the cold
//! downloads as unnamed files and keeps nothing.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod mirror_kit;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::oci::{sha256, Reg};
use common::BERTH;
use futures_util::StreamExt;
use mirror_kit::{data, have_registry2, push_image, upstreams_yaml, Mode, Registry2, TestProxy};

/// A config in `dir` (readable by anyone, for the run as another user): in-memory storage, one
/// upstream that is never contacted, and `proxy_extra` under `proxy`.
fn config(dir: &Path, proxy_extra: &str) -> PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!(
            "version: 0.1\nlog: {{level: info}}\nstorage: {{inmemory: {{}}}}\nhttp: {{addr: 127.0.0.1:0}}\n{}",
            upstreams_yaml(&[("docker.io", "http://127.0.0.1:9", "")], proxy_extra)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// Runs `cmd` (a `berth serve`), which must exit with an error within 20 s; returns stderr.
fn refused(mut cmd: Command) -> String {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!status.success(), "berth serve exited 0: {stderr}");
            return stderr;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "berth serve started although the spool directory is unusable: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve(config: &Path) -> Command {
    let mut cmd = Command::new(BERTH);
    cmd.arg("serve").arg(config).env_remove("RUST_LOG");
    cmd
}

#[track_caller]
fn assert_names(stderr: &str, dir: &Path, os_error: &str) {
    let last = stderr.lines().last().unwrap_or("");
    for part in [
        "proxy.spooldir",
        &dir.display().to_string(),
        os_error,
        "set proxy.spooldir",
        "writable local directory",
        "data volume",
    ] {
        assert!(
            last.contains(part),
            "{part:?} missing from the error: {stderr}"
        );
    }
}

#[test]
fn an_unusable_spool_directory_stops_startup_with_the_key_the_directory_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // Missing.
    let missing = dir.path().join("no-such-dir");
    let yaml = config(dir.path(), &format!("  spooldir: {}\n", missing.display()));
    let stderr = refused(serve(&yaml));
    assert_names(&stderr, &missing, "No such file or directory (os error 2)");
    eprintln!("missing: {}", stderr.lines().last().unwrap_or(""));

    // A file, not a directory.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let yaml = config(dir.path(), &format!("  spooldir: {}\n", file.display()));
    let stderr = refused(serve(&yaml));
    assert_names(&stderr, &file, "not a directory");

    // Unset, storage not local, and the temp directory missing: the FROM scratch image
    // without TMPDIR.
    let yaml = config(dir.path(), "");
    let mut cmd = serve(&yaml);
    cmd.env("TMPDIR", &missing);
    let stderr = refused(cmd);
    assert_names(&stderr, &missing, "No such file or directory");
    assert!(stderr.contains("system temp directory"), "{stderr}");

    // Read-only: permission bits do not bind root, so as root the server runs as nobody.
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let yaml = config(
        dir.path(),
        &format!("  spooldir: {}\n", read_only.display()),
    );
    let root = std::fs::File::create(read_only.join("probe")).is_ok();
    let cmd = if root {
        std::fs::remove_file(read_only.join("probe")).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BERTH])
            .arg("serve")
            .arg(&yaml)
            .env_remove("RUST_LOG");
        cmd
    } else {
        serve(&yaml)
    };
    let stderr = refused(cmd);
    assert_names(&stderr, &read_only, "Permission denied (os error 13)");
    eprintln!("read-only: {}", stderr.lines().last().unwrap_or(""));
}

/// The targets of the process's open files under `dir` (an unnamed `O_TMPFILE` file shows as
/// `<dir>/#<inode> (deleted)`).
fn open_files_under(pid: u32, dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.starts_with(dir))
        .map(|t| t.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_spool_directory_takes_the_cold_download_and_keeps_nothing() {
    if !have_registry2() {
        return;
    }
    let up = Registry2::start("");
    let big = data(8 << 20, 11);
    let (body, _) = push_image(
        &up.api(),
        "library/spooled",
        "1",
        std::slice::from_ref(&big),
        None,
    )
    .await;
    let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let faults = TestProxy::reverse(&up.url).await;
    let spool = tempfile::tempdir().unwrap();
    let reg = Reg::start(&upstreams_yaml(
        &[("docker.io", &faults.url(), "")],
        &format!(
            "  default: docker.io\n  spooldir: {}\n",
            spool.path().display()
        ),
    ));
    let logs = reg.server.logs(Duration::from_millis(100)).join("\n");
    assert!(
        logs.contains("pull-through cache spool directory")
            && logs.contains(&spool.path().display().to_string()),
        "the spool directory is logged at startup: {logs}"
    );
    reg.get("/v2/spooled/manifests/1").await.assert_status(200);

    // A slow cold pull, so that the spool file can be seen while it is in use.
    faults.set(Mode::Slow(4096));
    let url = format!("{}/v2/spooled/blobs/{layer}", reg.url);
    let pull = tokio::spawn(async move {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        got
    });
    let pid = reg.server.child.id();
    let started = Instant::now();
    let in_use = loop {
        let open = open_files_under(pid, spool.path());
        if !open.is_empty() {
            break open;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10) && !pull.is_finished(),
            "no open file in the spool directory during the cold pull"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("spool file while downloading: {in_use:?}");
    assert!(
        in_use.iter().all(|t| t.ends_with("(deleted)")),
        "spool files have no name: {in_use:?}"
    );
    let listed: Vec<_> = std::fs::read_dir(spool.path()).unwrap().flatten().collect();
    assert!(
        listed.is_empty(),
        "nothing is listed in the spool directory: {listed:?}"
    );

    let got = pull.await.unwrap();
    assert!(got == big, "the cold pull got the whole blob");
    assert_eq!(sha256(&got), layer);
    // Stored: served again with the upstream failing.
    faults.set(Mode::Status(500));
    let again = reg.get(&format!("/v2/spooled/blobs/{layer}")).await;
    again.assert_status(200);
    assert!(again.body == big);
    // The download is over: its spool file is closed and nothing is left in the directory.
    let started = Instant::now();
    while !open_files_under(pid, spool.path()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the spool file stays open after the download"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in the spool directory: {left:?}");
}
