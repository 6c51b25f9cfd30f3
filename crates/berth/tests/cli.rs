//! Tests of the `berth` binary as an operator uses it: flags, `config check`, starting from a
//! registry:2 config or the embedded default with `REGISTRY_*` overrides, log formats, refusing
//! unsafe configurations, and shutting down on SIGTERM.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::process::cpu_ticks;
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
    // registry:2's field names for its "response completed" line.
    assert_eq!(access["http.request.uri"], "/v2/nope/tags/list");
    assert_eq!(access["http.response.status"], 404);
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

/// Pushes `tags` of `repo`, each a distinct image, oldest first; returns their digests.
async fn push_tags(api: &common::oci::Api, repo: &str, tags: &[&str]) -> Vec<String> {
    let mut digests = Vec::new();
    for t in tags {
        digests.push(api.push_image(repo, t, &format!("{repo}:{t}")).await.1);
    }
    digests
}

/// A stopped registry's directory and config, holding what `fill` pushed.
async fn filled<F: std::future::Future<Output = ()>>(
    extra: &str,
    fill: impl FnOnce(common::oci::Api) -> F,
) -> (tempfile::TempDir, String) {
    let reg = common::oci::Reg::start(extra);
    fill(common::oci::Api::new(&reg.url)).await;
    let common::oci::Reg {
        server,
        dir,
        config,
        ..
    } = reg;
    drop(server);
    (dir, config)
}

fn ok_stdout(args: &[&str]) -> String {
    let out = berth(args, &[]);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[tokio::test]
async fn every_command_takes_config_as_last_argument_or_with_c() {
    let (dir, config) = filled("", |api| async move {
        push_tags(&api, "app", &["v1"]).await;
    })
    .await;
    let layout = dir.path().join("layout").display().to_string();
    for base in [
        vec!["garbage-collect", "--dry-run"],
        vec!["du"],
        vec!["retention", "--dry-run"],
        vec!["config", "check"],
        vec!["export", "app:v1", &layout],
        vec!["import", &layout, "copy"],
    ] {
        let mut outputs = Vec::new();
        for form in [
            vec![config.as_str()],
            vec!["-c", &config],
            vec!["--config", &config],
        ] {
            let args = [base.as_slice(), form.as_slice()].concat();
            outputs.push(ok_stdout(&args));
        }
        // The same report either way (export and import report bytes written, which change
        // once the layout or the repository holds the content).
        let compare = !matches!(base[0], "export" | "import");
        assert!(
            !compare || outputs.iter().all(|o| o == &outputs[0]),
            "{base:?}: {outputs:#?}"
        );
        let both = [base.as_slice(), &[config.as_str(), "-c", &config]].concat();
        let out = berth(&both, &[]);
        assert!(!out.status.success(), "{both:?} accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains("the configuration is given twice") && err.contains("-c/--config"),
            "{err}"
        );
    }
    let server = Server::start(&["-c", &config], &[]);
    assert_eq!(server.get("/v2/app/tags/list").0, 200);
}

#[tokio::test]
async fn retention_rules_from_the_command_line_replace_the_configured_policies() {
    let (dir, config) = filled("", |api| async move {
        push_tags(&api, "team/app", &["b1", "b2", "b3", "b4"]).await;
        push_tags(&api, "other", &["x1", "x2"]).await;
    })
    .await;
    // The configured policy would delete every tag: the rules given must be used instead.
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        "delete: {enabled: true}",
        "delete: {enabled: true}\n  maintenance: {retention: {policies: [{repositories: ['**'], deletetags: ['.*']}]}}",
    );
    std::fs::write(&config, yaml).unwrap();
    // b1 was pushed 40 days ago; the others are recent.
    let link = dir
        .path()
        .join("data/docker/registry/v2/repositories/team/app/_manifests/tags/b1/current/link");
    std::fs::File::options()
        .write(true)
        .open(&link)
        .and_then(|f| {
            f.set_modified(std::time::SystemTime::now() - Duration::from_secs(40 * 86400))
        })
        .unwrap();
    let tags = |repo: &str| -> Vec<String> {
        let dir = dir.path().join(format!(
            "data/docker/registry/v2/repositories/{repo}/_manifests/tags"
        ));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    // Older than 30 days AND beyond the newest one: only b1.
    let aged: Vec<&str> = "retention --dry-run --repository team/* --keep-last 1 --older-than 30d"
        .split_whitespace()
        .collect();
    let dry = ok_stdout(&[&aged[..], &[&config]].concat());
    let deletions: Vec<&str> = dry.lines().filter(|l| l.contains("would delete")).collect();
    assert_eq!(deletions.len(), 1, "{dry}");
    assert!(
        deletions[0].starts_with("team/app: would delete tag b1 ")
            && deletions[0].contains("not among the newest 1 and older than 30days"),
        "{dry}"
    );
    assert_eq!(
        tags("team/app"),
        ["b1", "b2", "b3", "b4"],
        "a dry run deletes nothing"
    );

    // Beyond the newest 2, any age, with -c: b1 and b2 go; other/ is not matched.
    let real = ok_stdout(&[
        "retention",
        "--repository",
        "team/**",
        "--keep-last",
        "2",
        "-c",
        &config,
    ]);
    assert!(
        real.contains("team/app: deleted tag b1 ") && real.contains("team/app: deleted tag b2 "),
        "{real}"
    );
    assert!(
        real.contains(
            "1 repositories checked, 2 tags kept, 2 tags and 0 untagged manifests deleted"
        ),
        "{real}"
    );
    assert_eq!(tags("team/app"), ["b3", "b4"]);
    assert_eq!(tags("other"), ["x1", "x2"]);

    for (args, expected) in [
        (vec!["--keep-last", "2"], "need --repository PATTERN"),
        (vec!["--repository", "team/*"], "needs a rule that deletes"),
        (
            vec!["--repository", "a//b", "--keep-last", "1"],
            "repository pattern \"a//b\"",
        ),
        (
            vec!["--repository", "x", "--delete-tag", "("],
            "retention regex \"(\"",
        ),
        (
            vec!["--repository", "x", "--older-than", "30x"],
            "--older-than",
        ),
    ] {
        let out = berth(&[&["retention"], &args[..], &[&config]].concat(), &[]);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let help = ok_stdout(&["retention", "--help"]);
    for flag in [
        "--repository <PATTERN>",
        "--keep-last <N>",
        "--older-than <AGE>",
        "--dry-run",
        "-c, --config <CONFIG>",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[tokio::test]
async fn garbage_collection_dry_and_real_runs_print_the_same_lines_in_the_same_order() {
    let (_dir, config) = filled("", |api| async move {
        for repo in ["a", "b/c", "d"] {
            push_tags(&api, repo, &["1", "2", "3", "4"]).await;
        }
        // Untagged: removed with --delete-untagged, with its blobs.
        api.push_image("b/c", "gone", "gone").await;
        assert_eq!(api.delete("/v2/b/c/manifests/gone").await.status, 202);
    })
    .await;
    let run = |extra: &[&str]| {
        ok_stdout(&[&["garbage-collect", "--delete-untagged"], extra, &[&config]].concat())
            .replace("would remove", "removed")
            .lines()
            .filter(|l| !l.contains("blobs marked"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (dry, dry_again, real) = (run(&["--dry-run"]), run(&["--dry-run"]), run(&[]));
    assert_eq!(
        dry.iter()
            .filter(|l| l.contains("marking manifest"))
            .count(),
        12
    );
    assert!(
        dry.iter().any(|l| l.starts_with("b/c: removed manifest")),
        "{dry:#?}"
    );
    assert_eq!(dry, dry_again);
    assert_eq!(
        dry, real,
        "the dry run must name what the real run removes, in its order"
    );
}

#[tokio::test]
async fn export_of_a_mirror_repository_writes_only_its_report_on_stdout() {
    let upstream = common::oci::Reg::start("");
    let (_, digest) = upstream.push_image("library/app", "1", "mirrored").await;
    let proxy = format!(
        "proxy:\n  upstreams:\n    - {{host: up.lan, url: {}}}\n",
        upstream.url
    );
    let (dir, config) = filled(&proxy, |api| async move {
        let r = api
            .send(
                "GET",
                "/v2/up.lan/library/app/manifests/1",
                &[("accept", common::oci::OCI_MANIFEST)],
                Vec::new(),
            )
            .await;
        r.assert_status(200);
        let body: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        let mut blobs = vec![body["config"]["digest"].as_str().unwrap().to_owned()];
        blobs.extend(
            body["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned()),
        );
        for blob in blobs {
            api.get(&format!("/v2/up.lan/library/app/blobs/{blob}"))
                .await
                .assert_status(200);
        }
    })
    .await;
    let layout = dir.path().join("layout").display().to_string();
    for env in [vec![], vec![("REGISTRY_LOG_FORMATTER", "json")]] {
        let out = berth(
            &["export", "up.lan/library/app", &layout, "-c", &config],
            &env,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        assert_eq!(
            lines[0],
            format!("exported up.lan/library/app:1 ({digest})")
        );
        assert!(
            lines[1].starts_with(&format!("{layout}: 1 manifests and 2 blobs")),
            "{stdout}"
        );
        // Whatever the export logs goes to stderr, in the configured format.
        for line in text(&out.stderr).lines() {
            assert!(
                line.contains("level") && line.contains("msg"),
                "not a log line: {line}"
            );
        }
    }
}

#[test]
fn accept_errors_back_off_on_tcp_and_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let socket = dir.path().join("berth.sock").display().to_string();
    for unix in [true, false] {
        let env: Vec<(&str, &str)> = if unix {
            vec![
                ("REGISTRY_HTTP_NET", "unix"),
                ("REGISTRY_HTTP_ADDR", &socket),
            ]
        } else {
            vec![]
        };
        let server = Server::start(&[&config], &env);
        let pid = server.child.id();
        // Out of file descriptors: two more connections fit, the rest wait in the backlog and
        // every accept fails with EMFILE until one of them closes.
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        // Only the soft limit: raising it back afterwards needs no privilege.
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let soft = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
            .unwrap();
        let limit = format!("--nofile={}:", open + 2);
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &limit])
            .status()
            .expect("prlimit (util-linux)");
        assert!(status.success());
        let connect = || -> Box<dyn std::any::Any> {
            if unix {
                Box::new(std::os::unix::net::UnixStream::connect(&socket).unwrap())
            } else {
                let addr = server.url.trim_start_matches("http://");
                Box::new(std::net::TcpStream::connect(addr).unwrap())
            }
        };
        let clients: Vec<_> = (0..6).map(|_| connect()).collect();
        let _ = server.logs(Duration::from_millis(200));
        let before = cpu_ticks(pid);
        let failures = server
            .logs(Duration::from_secs(2))
            .iter()
            .filter(|l| l.contains("accept failed"))
            .count();
        let used = cpu_ticks(pid) - before;
        // Backing off 5 ms, doubling up to 1 s: about ten failures in 2 s, not thousands,
        // and the process idles (a spinning loop burns about 200 ticks in 2 s).
        assert!(used < 50, "unix {unix}: {used} ticks of CPU in 2 s");
        assert!(
            (1..=30).contains(&failures),
            "unix {unix}: {failures} accept failures logged in 2 s"
        );
        // Once connections close, accepting works again.
        drop(clients);
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(1200));
        let mut curl = std::process::Command::new("curl");
        curl.args(["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"]);
        if unix {
            curl.args(["--unix-socket", &socket, "http://localhost/v2/"]);
        } else {
            curl.arg(format!("{}/v2/", server.url));
        }
        assert_eq!(text(&curl.output().unwrap().stdout), "200", "unix {unix}");
    }
}
