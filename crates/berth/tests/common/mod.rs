//! Shared fixture for the binary's integration tests: run `berth`, start `berth serve` on an
//! ephemeral port, talk to it with curl, stop it by PID.
#![allow(dead_code, clippy::unwrap_used)] // test fixtures: a failed step should panic where it happened

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod auth;
pub mod metrics;
pub mod oci;
pub mod process;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub fn berth(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BERTH);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run berth")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `berth serve`, stopped by PID when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The debug server's URL (`http.debug.addr`), when one was started.
    pub debug_url: Option<String>,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BERTH);
        cmd.arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (url_tx, url_rx) = mpsc::channel();
        let (debug_tx, debug_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                    // The debug server announces itself first, on its own line.
                    let tx = if line.contains("debug server") {
                        &debug_tx
                    } else {
                        &url_tx
                    };
                    let _ = tx.send(url);
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
        Server {
            child,
            url,
            debug_url: debug_rx.try_recv().ok(),
            stderr: err_rx,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, &[], None)
    }

    /// Sends a request with curl; `body` is a file to upload. Returns status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&Path>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", &url]);
        // curl waits for a HEAD response's announced body unless told it is a HEAD (-I).
        if method == "HEAD" {
            cmd.arg("-I");
        } else {
            cmd.args(["-X", method]);
        }
        for h in headers {
            cmd.args(["-H", h]);
        }
        if let Some(file) = body {
            cmd.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        let out = cmd.output().expect("curl");
        let body = text(&out.stdout);
        let (body, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
    }

    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn logs(&self, settle: Duration) -> Vec<String> {
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

pub fn write_config(dir: &Path, extra: &str) -> String {
    let path = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:0}}\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}
