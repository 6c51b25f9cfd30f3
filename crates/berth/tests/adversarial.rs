//! The outside probe's findings, replayed against the real binary: each test is an attack
//! that once worked (see docs/security.md, "Threat model"), and asserts that it no longer
//! does. The authorization bypasses are in auth_matrix.rs and auth_routing.rs; a malicious
//! upstream is in mirror_hostile.rs.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::auth::{add_user, basic, builtin_token_auth, fresh_loopback, send, SERVICE};
use common::oci::{
    descriptor, image_manifest, raw_request, Api, Reg, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST,
};
use common::process::peak_rss_kib;
use common::{text, write_config, Server};
use serde_json::Value;

fn htpasswd_config(dir: &std::path::Path, limits: &str) -> String {
    let htpasswd = dir.join("htpasswd");
    for (user, password) in [("alice", "alice-pw"), ("mallory", "mallory-pw")] {
        add_user(&htpasswd, user, password);
    }
    write_config(
        dir,
        &format!(
            "auth:\n  htpasswd: {{realm: adversarial, path: {}}}\n{limits}",
            htpasswd.display()
        ),
    )
}

/// Item 3: wrong passwords against alice, interleaved with the attacker's own good login
/// (which used to reset the count), from one address: guessing stops at the client's limit,
/// and alice's account, guessed from many addresses, locks at its own.
#[tokio::test]
async fn failed_logins_are_limited_per_client_and_per_account() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "limits: {login: {clientfailures: 5, accountfailures: 3, window: 5m}}\n";
    let server = Server::start(&[&htpasswd_config(dir.path(), limits)], &[]);
    let url = server.url.clone();
    let attacker = Some(fresh_loopback());
    let (mut guesses, mut refused) = (0, 0);
    for round in 0..10 {
        for victim in [format!("victim{round}a"), format!("victim{round}b")] {
            let r = send(
                &url,
                "GET",
                "/v2/",
                Some(&basic(&victim, "guess")),
                None,
                attacker,
            )
            .await;
            match r.status {
                401 => guesses += 1,
                429 => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
        let own = send(
            &url,
            "GET",
            "/v2/",
            Some(&basic("mallory", "mallory-pw")),
            None,
            attacker,
        )
        .await;
        assert!(matches!(own.status, 200 | 429), "{}", own.status);
    }
    assert_eq!(guesses, 5, "guesses stop at limits.login.clientfailures");
    assert_eq!(refused, 15);
    // Alice's password guessed from a new address each time: the account locks at 3, and
    // then even the right password is refused (a right guess cannot be recognised).
    for _ in 0..3 {
        let r = send(
            &url,
            "GET",
            "/v2/",
            Some(&basic("alice", "guess")),
            None,
            Some(fresh_loopback()),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let r = send(
        &url,
        "GET",
        "/v2/",
        Some(&basic("alice", "alice-pw")),
        None,
        Some(fresh_loopback()),
    )
    .await;
    r.assert_error(429, "TOOMANYREQUESTS");
    assert!(r.header("retry-after").parse::<u64>().unwrap() > 0);
    // Mallory's account, from an address with no failures, is untouched.
    let r = send(
        &url,
        "GET",
        "/v2/",
        Some(&basic("mallory", "mallory-pw")),
        None,
        Some(fresh_loopback()),
    )
    .await;
    r.assert_status(200);
    let logs = server.logs(Duration::from_millis(300)).join("\n");
    assert!(
        logs.contains("too many failed logins from this client"),
        "{logs}"
    );
    assert!(
        logs.contains("too many failed logins for this account"),
        "{logs}"
    );
    assert!(
        !logs.contains("Some("),
        "client addresses are logged as addresses: {logs}"
    );
}

/// The same limits hold at the built-in token server, whose form logins share them.
#[tokio::test]
async fn token_endpoint_logins_are_limited_too() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "alice", "alice-pw");
    add_user(&htpasswd, "mallory", "mallory-pw");
    let key = dir.path().join("key.pem");
    let mut yaml = builtin_token_auth("adversarial", &htpasswd, &key, "");
    yaml.push_str("limits: {login: {clientfailures: 4, accountfailures: 100}}\n");
    let config = write_config(dir.path(), &yaml);
    let server = Server::start(&[&config], &[]);
    let attacker = Some(fresh_loopback());
    let path = format!("/auth/token?service={SERVICE}");
    let mut guesses = 0;
    // The probe's pattern: 9 wrong passwords for one account, 1 good login as another.
    for _ in 0..3 {
        for _ in 0..9 {
            let r = send(
                &server.url,
                "GET",
                &path,
                Some(&basic("alice", "guess")),
                None,
                attacker,
            )
            .await;
            if r.status == 401 {
                guesses += 1;
            } else {
                assert_eq!(r.status, 429);
            }
        }
        let form = b"grant_type=password&username=mallory&password=mallory-pw".to_vec();
        let body = Some(("application/x-www-form-urlencoded", form));
        let r = send(&server.url, "POST", "/auth/token", None, body, attacker).await;
        assert!(matches!(r.status, 200 | 429), "{}", r.status);
    }
    assert_eq!(guesses, 4);
}

/// Item 14: a password in the token endpoint's URL is refused, on GET and on POST.
#[tokio::test]
async fn token_endpoint_refuses_credentials_in_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "alice", "alice-pw");
    let key = dir.path().join("key.pem");
    let config = write_config(
        dir.path(),
        &builtin_token_auth("adversarial", &htpasswd, &key, ""),
    );
    let server = Server::start(&[&config], &[]);
    let url = &server.url;
    let query = format!(
        "/auth/token?service={SERVICE}&grant_type=password&username=alice&password=alice-pw"
    );
    send(url, "GET", &query, None, None, None)
        .await
        .assert_error(400, "UNSUPPORTED");
    let form = Some((
        "application/x-www-form-urlencoded",
        b"grant_type=password".to_vec(),
    ));
    send(url, "POST", &query, None, form, None)
        .await
        .assert_error(400, "UNSUPPORTED");
    // The same credentials in a form body work.
    let form = b"grant_type=password&username=alice&password=alice-pw".to_vec();
    let r = send(
        url,
        "POST",
        &format!("/auth/token?service={SERVICE}"),
        None,
        Some(("application/x-www-form-urlencoded", form)),
        None,
    )
    .await;
    r.assert_status(200);
    let logs = server.logs(Duration::from_millis(300)).join("\n");
    assert!(
        !logs.contains("alice-pw"),
        "no password in the logs: {logs}"
    );
}

/// Item 4: `?n=0` (and other page sizes) on the catalog with auth on used to loop forever.
#[tokio::test]
async fn catalog_pages_with_auth_on_always_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[&htpasswd_config(dir.path(), "")], &[]);
    let api = Api::new(&server.url);
    let alice = basic("alice", "alice-pw");
    let auth = [("authorization", alice.as_str())];
    for i in 0..3 {
        let data = format!("blob {i}");
        let digest = common::oci::sha256(data.as_bytes());
        let path = format!("/v2/r{i}/blobs/uploads/?digest={digest}");
        api.send("POST", &path, &auth, data.into_bytes())
            .await
            .assert_status(201);
    }
    for query in [
        "n=0",
        "n=0&last=r0",
        "n=1",
        "n=1&last=zzz",
        "n=18446744073709551615",
        "last=%00",
    ] {
        let started = Instant::now();
        let path = format!("/v2/_catalog?{query}");
        let call = api.send("GET", &path, &auth, Vec::new());
        let r = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or_else(|_| panic!("?{query}: no answer within 10 s"));
        assert!(matches!(r.status, 200 | 400), "?{query}: {}", r.status);
        let healthz = reqwest::get(format!("{}/healthz", server.url))
            .await
            .unwrap();
        assert_eq!(healthz.status(), 200, "?{query}");
        println!("catalog ?{query}: {} in {:?}", r.status, started.elapsed());
    }
    let r = api.send("GET", "/v2/_catalog?n=0", &auth, Vec::new()).await;
    assert_eq!(r.json()["repositories"], serde_json::json!([]));
    assert!(!r.has("link"));
}

/// Item 5: PATCHes to upload ids that do not exist left state behind (+9 MiB per 20,000).
/// Peak memory (VmHWM) after a second flood equals that after the first, within noise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_requests_for_unknown_sessions_leave_no_state() {
    let reg = Reg::start("");
    let pid = reg.server.child.id();
    let client = reqwest::Client::new();
    let flood = async |from: usize, n: usize| {
        for i in from..from + n {
            let id = format!("{:08x}-0000-4000-8000-{i:012x}", 0x5eed_0000_u32);
            let url = format!("{}/v2/app/blobs/uploads/{id}", reg.server.url);
            let r = client.patch(&url).body("x").send().await.unwrap();
            assert_eq!(r.status(), 404);
        }
    };
    flood(0, 5_000).await;
    let before = peak_rss_kib(pid);
    flood(5_000, 20_000).await;
    let after = peak_rss_kib(pid);
    println!("upload flood: VmHWM {before} KiB after 5,000 warm-up requests, {after} KiB after 20,000 more");
    assert!(
        after < before + 1024,
        "peak memory grew from {before} to {after} KiB"
    );
    let r = reg
        .api
        .send(
            "PATCH",
            "/v2/app/blobs/uploads/0f8fad5b-d9cb-469f-a165-70867728950e",
            &[],
            b"x".to_vec(),
        )
        .await;
    r.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

/// Item 7: a manifest with more references than `limits.manifests.maxreferences` is refused
/// before any is looked up; the default stops what a 4 MiB manifest can hold (~27,000).
#[tokio::test]
async fn manifests_with_too_many_references_are_refused() {
    let layers = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| descriptor(OCI_LAYER, format!("layer {i}").as_bytes()))
            .collect()
    };
    let config = || descriptor(OCI_CONFIG, b"{}");
    let reg = Reg::start("limits: {manifests: {maxreferences: 50}}\n");
    // 49 layers and the config: within the limit, so the references are looked up.
    let body = image_manifest(OCI_MANIFEST, config(), &layers(49));
    let r = reg.put_manifest("app", "v1", OCI_MANIFEST, &body).await;
    r.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    let body = image_manifest(OCI_MANIFEST, config(), &layers(50));
    let r = reg.put_manifest("app", "v1", OCI_MANIFEST, &body).await;
    r.assert_error(400, "MANIFEST_INVALID");
    assert!(r.text().contains("at most 50"), "{}", r.text());

    let default = Reg::start("");
    // Compact JSON, as a client would send to fit the most references in 4 MiB.
    let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config(), "layers": layers(27_000)})
    .to_string();
    assert!(body.len() < 4 * 1024 * 1024);
    let r = default.put_manifest("app", "v1", OCI_MANIFEST, &body).await;
    r.assert_error(400, "MANIFEST_INVALID");
    assert!(r.text().contains("at most 1000"), "{}", r.text());
}

/// Item 11: `/readyz` answers anyone, so it says "not ready" and the failing check's target
/// (here a file path) goes only to the log; the API's 503 names no target either.
#[tokio::test]
async fn readyz_names_no_internal_target() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("secret-maintenance-flag");
    std::fs::write(&flag, b"").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "health:\n  file:\n    - {{file: {}, interval: 100ms}}\n",
            flag.display()
        ),
    );
    let server = Server::start(&[&config], &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body) = server.get("/readyz");
        if status == 503 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
    let (status, body) = server.get("/v2/");
    assert_eq!(status, 503);
    assert!(
        !body.contains("secret-maintenance-flag") && !body.contains("/debug/health"),
        "{body}"
    );
    let logs = server.logs(Duration::from_millis(200)).join("\n");
    assert!(
        logs.contains("secret-maintenance-flag"),
        "the log names it: {logs}"
    );
}

/// Item 12: `/v2/_berth/usage` lists only what the caller may see, and registry-wide totals
/// only to a caller who sees everything.
#[tokio::test]
async fn usage_totals_only_for_callers_who_see_everything() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    add_user(&htpasswd, "root", "root-pw");
    add_user(&htpasswd, "alice", "alice-pw");
    let key = dir.path().join("key.pem");
    let rules = "admins: [root]\nrules:\n  - {repositories: [\"alice/*\"], users: [alice], actions: [pull, push]}";
    let config = write_config(
        dir.path(),
        &builtin_token_auth("adversarial", &htpasswd, &key, rules),
    );
    let server = Server::start(&[&config], &[]);
    let url = &server.url;
    let token = async |user: &str, pw: &str, scope: &str| {
        let path = format!("/auth/token?service={SERVICE}&scope={scope}&scope=registry:catalog:*");
        let r = send(url, "GET", &path, Some(&basic(user, pw)), None, None).await;
        format!("Bearer {}", r.json()["token"].as_str().unwrap())
    };
    let root = token("root", "root-pw", "repository:secret/app:pull,push").await;
    let alice = token("alice", "alice-pw", "repository:alice/app:pull,push").await;
    for (who, repo) in [(&root, "secret/app"), (&alice, "alice/app")] {
        let config = format!("{{\"repo\":\"{repo}\"}}");
        let digest = common::oci::sha256(config.as_bytes());
        let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let body = Some(("application/octet-stream", config.clone().into_bytes()));
        send(url, "POST", &path, Some(who), body, None)
            .await
            .assert_status(201);
        let manifest = image_manifest(OCI_MANIFEST, descriptor(OCI_CONFIG, config.as_bytes()), &[]);
        let body = Some((OCI_MANIFEST, manifest.into_bytes()));
        let path = format!("/v2/{repo}/manifests/v1");
        send(url, "PUT", &path, Some(who), body, None)
            .await
            .assert_status(201);
    }
    let full = send(url, "GET", "/v2/_berth/usage", Some(&root), None, None)
        .await
        .json();
    assert!(
        full.get("bytes").is_some() && full.get("partial").is_none(),
        "{full}"
    );
    assert_eq!(full["repositories"].as_array().unwrap().len(), 2, "{full}");
    let partial = send(url, "GET", "/v2/_berth/usage", Some(&alice), None, None)
        .await
        .json();
    let names: Vec<&str> = partial["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice/app"], "{partial}");
    for total in ["blobs", "bytes", "unreferenced_blobs", "unreferenced_bytes"] {
        assert!(partial.get(total).is_none(), "{total} in {partial}");
    }
    assert_eq!(partial["partial"], true);
}

/// Item 13: bcrypt reads 72 bytes of a password; longer ones are refused when set.
#[test]
fn htpasswd_refuses_passwords_bcrypt_would_cut() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let file = file.to_str().unwrap();
    let long = "p".repeat(100);
    let out = run_with_stdin(
        &["htpasswd", "-f", file, "--password-stdin", "alice"],
        &long,
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("72"), "{}", text(&out.stderr));
    assert!(!std::path::Path::new(file).exists(), "nothing written");
    let ok = run_with_stdin(
        &["htpasswd", "-f", file, "--password-stdin", "alice"],
        &"p".repeat(72),
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
}

fn run_with_stdin(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(common::BERTH)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{input}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Item 15: a `Content-Range` whose length overflows, or that does not match a chunked body,
/// is 416, and the session keeps exactly what it had before.
#[tokio::test]
async fn content_range_extremes_leave_the_session_as_it_was() {
    let reg = Reg::start("");
    let location = reg.start_upload("app").await;
    let path = location.trim_start_matches(&reg.server.url).to_owned();
    let chunked = |data: &str| format!("{:x}\r\n{data}\r\n0\r\n\r\n", data.len()).into_bytes();
    let te = "Transfer-Encoding: chunked";
    let first = "0123456789";
    let (status, _) = raw_request(
        &reg.server.url,
        "PATCH",
        &path,
        &["Content-Range: 0-9", "Content-Length: 10"],
        first.as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
    for (range, body) in [
        ("10-18446744073709551615", "abc"),
        ("0-18446744073709551615", "abc"),
        ("18446744073709551615-18446744073709551615", "abc"),
        ("10-12", "abcdefgh"), // longer than announced
        ("10-19", "abc"),      // shorter than announced
        ("11-13", "abc"),      // not where the upload ends
    ] {
        let header = format!("Content-Range: {range}");
        let (status, text) = raw_request(
            &reg.server.url,
            "PATCH",
            &path,
            &[&header, te],
            &chunked(body),
        )
        .await;
        assert_eq!(status, 416, "{range}: {text}");
        let r = reg.api.get(&path).await;
        r.assert_status(204);
        assert_eq!(r.header("range"), "0-9", "{range}: the chunk was not kept");
    }
    let (status, _) = raw_request(
        &reg.server.url,
        "PATCH",
        &path,
        &["Content-Range: 10-12", te],
        &chunked("abc"),
    )
    .await;
    assert_eq!(status, 202, "a matching chunked chunk is taken");
    assert_eq!(reg.api.get(&path).await.header("range"), "0-12");
}
