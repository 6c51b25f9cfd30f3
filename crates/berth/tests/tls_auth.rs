//! TLS and htpasswd against the real binary: certificates and the htpasswd file are replaced
//! while a client is connected, and both take effect without a restart or a dropped
//! connection; wrong logins are refused and then rate-limited.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::auth::add_user;
use common::{berth, write_config, Server};
use reqwest::{Certificate, Client, StatusCode};

/// A self-signed certificate for 127.0.0.1 in `dir` (cert.pem, key.pem).
fn make_cert(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA: rustls clients refuse a CA used as an end entity.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success());
}

fn client(ca: &Path) -> Client {
    let pem = std::fs::read(ca).unwrap();
    Client::builder()
        .add_root_certificate(Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

/// Copies `from`'s pair over the served files the way certbot does: write elsewhere, rename.
fn install_cert(from: &Path, served: &Path) {
    for name in ["cert.pem", "key.pem"] {
        let tmp = served.join(format!("{name}.new"));
        std::fs::copy(from.join(name), &tmp).unwrap();
        std::fs::rename(&tmp, served.join(name)).unwrap();
    }
}

#[tokio::test]
async fn certificate_and_htpasswd_reload_while_a_client_is_connected() {
    let dir = tempfile::tempdir().unwrap();
    let (served, first, second) = (
        dir.path().join("served"),
        dir.path().join("first"),
        dir.path().join("second"),
    );
    make_cert(&first);
    make_cert(&second);
    install_cert(&first, &served_dir(&served));
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "ci", "old-pass");
    let config = write_config(
        dir.path(),
        &format!(
            "auth:\n  htpasswd: {{realm: test, path: {}}}\n",
            htpasswd.display()
        ),
    );
    let (cert, key) = (served.join("cert.pem"), served.join("key.pem"));
    let env = [
        ("REGISTRY_HTTP_TLS_CERTIFICATE", cert.to_str().unwrap()),
        ("REGISTRY_HTTP_TLS_KEY", key.to_str().unwrap()),
    ];
    let server = Server::start(&[&config], &env);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let url = |path: &str| format!("{}{path}", server.url);

    let old_ca = client(&first.join("cert.pem"));
    let r = old_ca.get(url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"test\"");
    assert_eq!(
        login(&old_ca, &url("/v2/"), "old-pass").await,
        StatusCode::OK,
        "ci:old-pass"
    );

    // `old_ca` now holds a pooled keep-alive connection that was set up with the first
    // certificate. It only trusts that certificate, so any new handshake would fail.
    // Renewal and password change while that connection is open.
    install_cert(&second, &served);
    add_user(&htpasswd, "ci", "new-pass");
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let new_ca = client(&second.join("cert.pem"));
    assert_eq!(
        login(&new_ca, &url("/v2/"), "new-pass").await,
        StatusCode::OK,
        "new certificate and new password"
    );
    assert_eq!(
        login(&new_ca, &url("/v2/"), "old-pass").await,
        StatusCode::UNAUTHORIZED,
        "the old password is gone"
    );
    let fresh_old_ca = client(&first.join("cert.pem"));
    assert!(
        fresh_old_ca.get(url("/v2/")).send().await.is_err(),
        "new connections get the new certificate"
    );

    // The connection opened before the renewal is still up and serves requests.
    assert_eq!(
        login(&old_ca, &url("/v2/"), "new-pass").await,
        StatusCode::OK,
        "the open connection survived the renewal"
    );
}

/// The status of `GET url` as user `ci` with `password`.
async fn login(client: &Client, url: &str, password: &str) -> StatusCode {
    let r = client
        .get(url)
        .basic_auth("ci", Some(password))
        .send()
        .await;
    r.unwrap().status()
}

fn served_dir(path: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(path).unwrap();
    path.to_owned()
}

#[tokio::test]
async fn failed_logins_are_limited_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "ci", "right");
    let config = write_config(
        dir.path(),
        &format!(
            "auth:\n  htpasswd: {{realm: test, path: {}}}\n",
            htpasswd.display()
        ),
    );
    let server = Server::start(&[&config], &[]);
    let http = Client::new();
    let v2 = format!("{}/v2/", server.url);
    for _ in 0..10 {
        let r = http
            .get(&v2)
            .basic_auth("ci", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    }
    let r = http
        .get(&v2)
        .basic_auth("ci", Some("right"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    let logs = server.logs(Duration::from_millis(100)).join("\n");
    assert!(
        !logs.contains("wrong") && !logs.contains("right"),
        "passwords never reach the log"
    );
}

#[test]
fn htpasswd_command_prints_or_updates_entries() {
    let out = Command::new(common::BERTH)
        .args(["htpasswd", "--password-stdin", "--cost", "4", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            writeln!(c.stdin.take().unwrap(), "pw")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("alice:$2y$04$"), "{line}");
    assert!(bcrypt_verify("pw", line.trim().split_once(':').unwrap().1));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(
        &file,
        "# team\nbob:$2y$04$abcdefghijklmnopqrstuu5Sb9t0UQbDJRuhJ8KLq1S3f1GKIxQ5y\n",
    )
    .unwrap();
    add_user(&file, "alice", "pw");
    add_user(&file, "alice", "pw2");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with("# team\nbob:"), "{text}");
    let empty = berth(
        &[
            "htpasswd",
            "--password-stdin",
            "-f",
            file.to_str().unwrap(),
            "a:b",
        ],
        &[],
    );
    assert!(!empty.status.success());
}

fn bcrypt_verify(password: &str, hash: &str) -> bool {
    // The hash must be one that Apache's tools accept too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, format!("u:{hash}\n")).unwrap();
    Command::new("htpasswd")
        .arg("-vb")
        .arg(&file)
        .args(["u", password])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("htpasswd (apache2-utils) must be installed")
        .success()
}
