//! Tests of the `berth` binary as an operator uses it: flags, `config check`, starting from a
//! registry:2 config or the embedded default with `REGISTRY_*` overrides, log formats, refusing
//! unsafe configurations, and shutting down on SIGTERM.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{berth, text, write_config, Server};

#[test]
fn version_and_help() {
    let out = berth(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION"))
    );
    let help = text(&berth(&["--help"], &[]).stdout);
    assert!(help.contains("serve") && help.contains("config"), "{help}");
}

#[test]
fn config_check_prints_effective_config_with_env_overrides_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = berth(
        &["config", "check", &config],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:5055"),
            ("REGISTRY_HTTP_SECRET", "topsecret"),
            ("REGISTRY_HTTP_ADR", "x"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("addr: 127.0.0.1:5055"), "{stdout}");
    assert!(!stdout.contains("topsecret"), "secret printed: {stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("REGISTRY_HTTP_ADR") && stderr.contains("REGISTRY_HTTP_ADDR"),
        "{stderr}"
    );
}

#[test]
fn wrong_value_stops_with_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let bad = std::fs::read_to_string(&config)
        .unwrap()
        .replace("delete: {enabled: true}", "delete: {enabled: maybe}");
    std::fs::write(&config, bad).unwrap();
    for args in [vec!["config", "check", &config], vec!["serve", &config]] {
        let out = berth(&args, &[]);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("storage.delete.enabled") && stderr.contains("config.yml"),
            "{stderr}"
        );
    }
}

#[test]
fn unusable_auth_and_tls_files_stop_startup_with_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "auth:\n  htpasswd: {realm: r, path: /nonexistent/htpasswd}\n",
    );
    let out = berth(&["serve", &config], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("auth.htpasswd.path")
            && err.contains("/nonexistent/htpasswd")
            && err.contains("berth htpasswd"),
        "{err}"
    );

    // A key that does not belong to the certificate.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for d in [dir.path(), other.as_path()] {
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem"))
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success());
    }
    let config = write_config(dir.path(), "");
    let (cert, key) = (dir.path().join("cert.pem"), other.join("key.pem"));
    let env = [
        ("REGISTRY_HTTP_TLS_CERTIFICATE", cert.to_str().unwrap()),
        ("REGISTRY_HTTP_TLS_KEY", key.to_str().unwrap()),
    ];
    let out = berth(&["serve", &config], &env);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("does not belong to http.tls.certificate"),
        "{err}"
    );
}

#[test]
fn embedded_default_with_registry_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.display().to_string();
    let server = Server::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root_str),
        ],
    );
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let (status, body) = server.get("/v2/");
    assert_eq!((status, body.as_str()), (200, "{}"));
    let (status, body) = server.get("/v2/_catalog");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"repositories":[]}"#);
    assert!(
        root.is_dir(),
        "data directory created where the override says"
    );
}

#[test]
fn json_logs_carry_fields_and_access_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(
        &[&config],
        &[
            ("REGISTRY_LOG_FORMATTER", "json"),
            ("REGISTRY_LOG_FIELDS_ENVIRONMENT", "test"),
        ],
    );
    let _ = server.get("/v2/nope/tags/list");
    let logs = server.logs(Duration::from_millis(300));
    let parsed: Vec<serde_json::Value> = logs
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(parsed
        .iter()
        .all(|l| l["environment"] == "test" && l["time"].is_string() && l["level"].is_string()));
    let access = parsed
        .iter()
        .find(|l| l["type"] == "access")
        .expect("an access log line");
    assert_eq!(access["path"], "/v2/nope/tags/list");
    assert_eq!(access["status"], 404);
    assert!(
        parsed.iter().any(|l| l["code"] == "NAME_UNKNOWN"),
        "rejections are logged with their code"
    );
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut server = Server::start(&[&config], &[]);
    server.signal("-TERM");
    let status = server
        .wait(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let logs = server.logs(Duration::from_millis(50)).join("\n");
    assert!(
        logs.contains("SIGTERM") && logs.contains("stopped"),
        "{logs}"
    );
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish() {
    use sha2::{Digest as _, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut server = Server::start(&[&config], &[]);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("blob");
    std::fs::write(&file, &data).unwrap();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    // About 3 s at 1 MiB/s: SIGTERM arrives while the body is still streaming.
    let upload = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--limit-rate",
            "1M",
            "-X",
            "POST",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!(
            "{}/v2/slow/blobs/uploads/?digest={digest}",
            server.url
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    server.signal("-TERM");
    let out = upload.wait_with_output().unwrap();
    assert_eq!(
        text(&out.stdout),
        "201",
        "the upload in flight at SIGTERM completes"
    );
    let status = server
        .wait(Duration::from_secs(15))
        .expect("exits once drained");
    assert!(status.success());
    let again = Server::start(&[&config], &[]);
    let (status, _) = again.request("HEAD", &format!("/v2/slow/blobs/{digest}"), &[], None);
    assert_eq!(status, 200, "the blob was durably stored");
}

#[test]
fn serves_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let socket = dir.path().join("berth.sock");
    let socket_str = socket.display().to_string();
    let server = Server::start(
        &[&config],
        &[
            ("REGISTRY_HTTP_NET", "unix"),
            ("REGISTRY_HTTP_ADDR", &socket_str),
        ],
    );
    assert_eq!(server.url, format!("unix:{socket_str}"));
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket", &socket_str, "http://localhost/v2/"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "{}");
}

#[test]
fn sighup_switches_read_only_mode_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(&[&config], &[]);
    let (status, _) = server.request("POST", "/v2/r/blobs/uploads/", &[], None);
    assert_eq!(status, 202);
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}\n").replace(
            "delete: {enabled: true}",
            "delete: {enabled: true}\n  maintenance: {readonly: {enabled: true}}",
        ),
    )
    .unwrap();
    server.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = server.request("POST", "/v2/r/blobs/uploads/", &[], None);
    assert_eq!(status, 405, "{body}");
    assert!(
        body.contains("UNSUPPORTED") && body.contains("read-only"),
        "{body}"
    );
    let (status, _) = server.get("/v2/");
    assert_eq!(status, 200, "reads keep working");
    std::fs::write(&config, original).unwrap();
    server.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = server.request("POST", "/v2/r/blobs/uploads/", &[], None);
    assert_eq!(status, 202);
}

#[test]
fn probes_and_the_healthcheck_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(&[&config], &[("REGISTRY_HTTP_PREFIX", "/registry/")]);
    for probe in ["/healthz", "/readyz"] {
        let (status, body) = server.get(probe);
        assert_eq!(
            (status, body.as_str()),
            (200, "ok\n"),
            "{probe} outside the prefix"
        );
        let out = berth(&["healthcheck", &format!("{}{probe}", server.url)], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = berth(&["healthcheck", "http://127.0.0.1:9/readyz"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("does not answer"));
    let out = berth(&["healthcheck", &format!("{}/nope", server.url)], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
}
