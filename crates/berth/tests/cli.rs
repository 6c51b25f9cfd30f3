//! Tests of the `berth` binary as an operator uses it: flags, `config check`, starting from a
//! registry:2 config or the embedded default with `REGISTRY_*` overrides, log formats, refusing
//! unsafe configurations, and shutting down on SIGTERM.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn berth(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BERTH);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run berth")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `berth serve`, stopped by PID when dropped.
struct Server {
    child: Child,
    url: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BERTH);
        cmd.arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (url_tx, url_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = url_tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let url = match url_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let logs: Vec<String> = err_rx.try_iter().collect();
                panic!("berth did not start: {}", logs.join("\n"));
            }
        };
        Server { child, url, stderr: err_rx }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let out = Command::new("curl").args(["-s", "-o", "-", "-w", "\n%{http_code}", &url]).output().expect("curl");
        let body = text(&out.stdout);
        let (body, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn signal(&self, sig: &str) {
        Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill");
    }

    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn logs(&self, settle: Duration) -> Vec<String> {
        std::thread::sleep(settle);
        self.stderr.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal("-TERM");
            if self.wait(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn write_config(dir: &Path, extra: &str) -> String {
    let path = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:0}}\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

#[test]
fn version_and_help() {
    let out = berth(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), format!("berth {}", env!("CARGO_PKG_VERSION")));
    let help = text(&berth(&["--help"], &[]).stdout);
    assert!(help.contains("serve") && help.contains("config"), "{help}");
}

#[test]
fn config_check_prints_effective_config_with_env_overrides_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = berth(
        &["config", "check", &config],
        &[("REGISTRY_HTTP_ADDR", "127.0.0.1:5055"), ("REGISTRY_HTTP_SECRET", "topsecret"), ("REGISTRY_HTTP_ADR", "x")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("addr: 127.0.0.1:5055"), "{stdout}");
    assert!(!stdout.contains("topsecret"), "secret printed: {stdout}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("REGISTRY_HTTP_ADR") && stderr.contains("REGISTRY_HTTP_ADDR"), "{stderr}");
}

#[test]
fn wrong_value_stops_with_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let bad = std::fs::read_to_string(&config).unwrap().replace("delete: {enabled: true}", "delete: {enabled: maybe}");
    std::fs::write(&config, bad).unwrap();
    for args in [vec!["config", "check", &config], vec!["serve", &config]] {
        let out = berth(&args, &[]);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(stderr.contains("storage.delete.enabled") && stderr.contains("config.yml"), "{stderr}");
    }
}

#[test]
fn auth_and_tls_are_refused_rather_than_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "auth:\n  htpasswd: {realm: r, path: /nonexistent}\n");
    let out = berth(&["serve", &config], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("auth"), "{}", text(&out.stderr));
}

#[test]
fn embedded_default_with_registry_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.display().to_string();
    let server = Server::start(
        &[],
        &[("REGISTRY_HTTP_ADDR", "127.0.0.1:0"), ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root_str)],
    );
    assert!(server.url.starts_with("http://127.0.0.1:"), "{}", server.url);
    let (status, body) = server.get("/v2/");
    assert_eq!((status, body.as_str()), (200, "{}"));
    let (status, body) = server.get("/v2/_catalog");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"repositories":[]}"#);
    assert!(root.is_dir(), "data directory created where the override says");
}

#[test]
fn json_logs_carry_fields_and_access_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(&[&config], &[("REGISTRY_LOG_FORMATTER", "json"), ("REGISTRY_LOG_FIELDS_ENVIRONMENT", "test")]);
    let _ = server.get("/v2/nope/tags/list");
    let logs = server.logs(Duration::from_millis(300));
    let parsed: Vec<serde_json::Value> =
        logs.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    assert!(parsed.iter().all(|l| l["environment"] == "test" && l["time"].is_string() && l["level"].is_string()));
    let access = parsed.iter().find(|l| l["type"] == "access").expect("an access log line");
    assert_eq!(access["path"], "/v2/nope/tags/list");
    assert_eq!(access["status"], 404);
    assert!(parsed.iter().any(|l| l["code"] == "NAME_UNKNOWN"), "rejections are logged with their code");
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut server = Server::start(&[&config], &[]);
    server.signal("-TERM");
    let status = server.wait(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let logs = server.logs(Duration::from_millis(50)).join("\n");
    assert!(logs.contains("SIGTERM") && logs.contains("stopped"), "{logs}");
}
