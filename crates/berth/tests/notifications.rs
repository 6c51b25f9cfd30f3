//! registry:2 notifications against the real binary: a webhook receiver in the test records
//! what Berth POSTs and checks every event's registry:2 JSON shape (push, pull, mount, delete),
//! the headers, the ignore rules and the actor; a receiver that hangs never slows a push, and
//! one that is down gets the queued events, in order, once it comes back.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod notify_kit;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::oci::{descriptor, sha256, Reg, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use notify_kit::{endpoint, hanging_receiver, listener, receiver, EVENTS_TYPE};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The parts every event has: id, timestamp, request and source, checked; `target` returned.
#[track_caller]
fn check_envelope_fields(e: &Value, method: &str, reg: &Reg) -> Value {
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "action",
            "actor",
            "id",
            "request",
            "source",
            "target",
            "timestamp"
        ],
        "{e:#}"
    );
    assert_eq!(e["id"].as_str().unwrap().len(), 36, "a UUID: {e}");
    let ts = e["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    let host = reg.url.trim_start_matches("http://");
    let r = &e["request"];
    assert_eq!(r["method"], method, "{e:#}");
    assert_eq!(r["host"], host);
    assert!(r["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
    assert_eq!(r["id"].as_str().unwrap().len(), 36);
    assert!(r["useragent"].is_string());
    // registry:2 takes the port from `http.addr`, here `127.0.0.1:0`.
    assert!(e["source"]["addr"].as_str().unwrap().ends_with(":0"), "{e}");
    assert_eq!(e["source"]["instanceID"].as_str().unwrap().len(), 36);
    e["target"].clone()
}

#[tokio::test]
async fn every_event_has_registry2_shape() {
    let (l, other) = (listener().await, listener().await);
    let port = l.local_addr().unwrap().port();
    let filtered_port = other.local_addr().unwrap().port();
    let hook = receiver(l, 0).await;
    let filtered = receiver(other, 0).await;
    let headers = "      headers:\n        Authorization: [Bearer hook-secret-token]\n        X-Extra: [one, two]\n";
    let ignore =
        "      ignoredmediatypes: [application/octet-stream]\n      ignore: {actions: [pull]}\n";
    let reg = Reg::start(&format!(
        "notifications:\n  events: {{includereferences: true}}\n  endpoints:\n{}{}",
        endpoint("all", port, headers),
        endpoint("filtered", filtered_port, ignore),
    ));

    // Push: two monolithic blob uploads and a manifest by tag.
    let (body, digest) = reg.push_image("app", "v1", "n1").await;
    let config = r#"{"architecture":"amd64","os":"linux","seed":"n1"}"#;
    let layer = b"layer of n1";
    let e = hook.event("push", "app", &digest).await;
    let target = check_envelope_fields(&e, "PUT", &reg);
    assert_eq!(
        target,
        json!({
            "mediaType": OCI_MANIFEST,
            "size": body.len(),
            "digest": digest,
            "length": body.len(),
            "repository": "app",
            "url": format!("{}/v2/app/manifests/{digest}", reg.url),
            "tag": "v1",
            "references": [descriptor(OCI_CONFIG, config.as_bytes()), descriptor(OCI_LAYER, layer)],
        })
    );
    assert_eq!(
        e["actor"],
        json!({}),
        "anonymous requests have no actor name"
    );
    let layer_digest = sha256(layer);
    let e = hook.event("push", "app", &layer_digest).await;
    let target = check_envelope_fields(&e, "POST", &reg);
    assert_eq!(
        target,
        json!({
            "mediaType": "application/octet-stream",
            "size": layer.len(),
            "digest": layer_digest,
            "length": layer.len(),
            "repository": "app",
            "url": format!("{}/v2/app/blobs/{layer_digest}", reg.url),
        })
    );

    // Pulls: a manifest by tag (GET, with a User-Agent) and by digest (HEAD), a blob.
    let r = reg
        .send(
            "GET",
            "/v2/app/manifests/v1",
            &[("user-agent", "notify-test/1.0"), ("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    r.assert_status(200);
    let e = hook
        .wait_for("manifest pull by tag", |e| {
            e["action"] == "pull" && e["target"]["tag"] == "v1"
        })
        .await;
    let target = check_envelope_fields(&e, "GET", &reg);
    assert_eq!(e["request"]["useragent"], "notify-test/1.0");
    assert_eq!(
        (&target["digest"], &target["mediaType"]),
        (&json!(digest), &json!(OCI_MANIFEST))
    );
    reg.head(&format!("/v2/app/manifests/{digest}"))
        .await
        .assert_status(200);
    let e = hook
        .wait_for("manifest pull by digest", |e| {
            e["action"] == "pull" && e["request"]["method"] == "HEAD"
        })
        .await;
    assert!(e["target"].get("tag").is_none(), "{e}");
    reg.get(&format!("/v2/app/blobs/{layer_digest}"))
        .await
        .assert_status(200);
    let e = hook
        .wait_for("blob pull", |e| {
            e["action"] == "pull" && e["target"]["digest"] == layer_digest.as_str()
        })
        .await;
    assert_eq!(check_envelope_fields(&e, "GET", &reg)["size"], layer.len());

    // Mount into another repository; a chunked upload (session + PUT) is a push too.
    let r = reg
        .send(
            "POST",
            &format!("/v2/copy/blobs/uploads/?mount={layer_digest}&from=app"),
            &[],
            Vec::new(),
        )
        .await;
    r.assert_status(201);
    let e = hook.event("mount", "copy", &layer_digest).await;
    let target = check_envelope_fields(&e, "POST", &reg);
    assert_eq!(target["fromRepository"], "app");
    assert_eq!(target["mediaType"], "application/octet-stream");
    assert_eq!(
        target["url"],
        format!("{}/v2/copy/blobs/{layer_digest}", reg.url)
    );
    let chunked = b"uploaded in a session".to_vec();
    let chunked_digest = sha256(&chunked);
    let location = reg.start_upload("app").await;
    let sep = if location.contains('?') { '&' } else { '?' };
    reg.send(
        "PUT",
        &format!("{location}{sep}digest={chunked_digest}"),
        &[],
        chunked.clone(),
    )
    .await
    .assert_status(201);
    let e = hook.event("push", "app", &chunked_digest).await;
    assert_eq!(
        check_envelope_fields(&e, "PUT", &reg)["size"],
        chunked.len()
    );

    // Deletes: a tag, then a manifest by digest (with the tag still on it), then a blob.
    reg.push_manifest("app", "v2", OCI_MANIFEST, &body).await;
    reg.delete("/v2/app/manifests/v2").await.assert_status(202);
    let e = hook.event("delete", "app", "v2").await;
    assert_eq!(
        check_envelope_fields(&e, "DELETE", &reg),
        json!({"repository": "app", "tag": "v2"})
    );
    reg.delete(&format!("/v2/app/manifests/{digest}"))
        .await
        .assert_status(202);
    let e = hook.event("delete", "app", &digest).await;
    assert_eq!(
        check_envelope_fields(&e, "DELETE", &reg),
        json!({"repository": "app", "digest": digest})
    );
    let tag_event = hook.event("delete", "app", "v1").await;
    assert_eq!(
        tag_event["request"]["id"], e["request"]["id"],
        "the manifest and its tags are deleted by one request"
    );
    assert_ne!(tag_event["id"], e["id"]);
    reg.delete(&format!("/v2/copy/blobs/{layer_digest}"))
        .await
        .assert_status(202);
    let e = hook.event("delete", "copy", &layer_digest).await;
    assert_eq!(
        e["target"],
        json!({"repository": "copy", "digest": layer_digest})
    );

    // One event per POST, registry:2's media type, the configured headers.
    let deliveries = hook.got.lock().unwrap().clone();
    for d in &deliveries {
        assert_eq!(d.body["events"].as_array().unwrap().len(), 1);
        assert_eq!(d.headers["content-type"], EVENTS_TYPE);
        assert_eq!(d.headers["authorization"], "Bearer hook-secret-token");
        let extra: Vec<_> = d.headers.get_all("x-extra").iter().collect();
        assert_eq!(extra, ["one", "two"]);
    }
    if std::env::var_os("BERTH_PRINT_ENVELOPE").is_some() {
        // The envelopes exactly as sent, for docs/notifications.md.
        for d in &deliveries {
            println!("{}", d.raw);
        }
    }

    // The filtered endpoint saw neither blobs (octet-stream) nor pulls, in the same order.
    filtered
        .wait_for("the last delete", |e| {
            e["action"] == "delete" && e["target"]["repository"] == "copy"
        })
        .await;
    let seen: Vec<(String, String)> = filtered
        .events()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"]["mediaType"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("push", OCI_MANIFEST),
        ("push", OCI_MANIFEST),
        ("delete", ""),
        ("delete", ""),
        ("delete", ""),
        ("delete", ""),
    ]
    .iter()
    .map(|(a, m)| (a.to_string(), m.to_string()))
    .collect();
    assert_eq!(seen, expected);
    let logs = reg.server.logs(Duration::from_millis(200)).join("\n");
    assert!(
        !logs.contains("hook-secret-token"),
        "header values are never logged"
    );
}

#[tokio::test]
async fn the_actor_is_the_authenticated_user() {
    let l = listener().await;
    let port = l.local_addr().unwrap().port();
    let hook = receiver(l, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    common::auth::add_user(&htpasswd, "alice", "wonderland");
    let extra = format!(
        "auth:\n  htpasswd: {{realm: test, path: {}}}\nnotifications:\n  endpoints:\n{}",
        htpasswd.display(),
        endpoint("hook", port, "")
    );
    let config = common::write_config(dir.path(), &extra);
    let reg = Reg::start_in(dir, config);
    let data = b"pushed by alice";
    let digest = sha256(data);
    let auth = common::auth::basic("alice", "wonderland");
    reg.send(
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={digest}"),
        &[("authorization", &auth)],
        data.to_vec(),
    )
    .await
    .assert_status(201);
    let e = hook.event("push", "app", &digest).await;
    assert_eq!(e["actor"], json!({"name": "alice"}));
}

#[tokio::test]
async fn a_hanging_receiver_never_slows_a_push() {
    let (port, task) = hanging_receiver().await;
    let hang = "    - name: hang\n      url: http://127.0.0.1:PORT/events\n      timeout: 30s\n"
        .replace("PORT", &port.to_string());
    let reg = Reg::start(&format!("notifications:\n  endpoints:\n{hang}"));
    // Warm up the connection pool, then time pushes while the receiver hangs on the first event.
    reg.push_image("warm", "v1", "warm").await;
    let started = Instant::now();
    for i in 0..10 {
        reg.push_image("app", &format!("v{i}"), &format!("seed{i}"))
            .await;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "10 image pushes took {elapsed:?} while the receiver hangs"
    );
    task.abort();
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_comes_back() {
    // Reserve a port, then leave it closed: connections are refused until the receiver starts.
    let port = listener().await.local_addr().unwrap().port();
    let headers = "      headers: {Authorization: [Bearer down-secret]}\n";
    let reg = Reg::start(&format!(
        "notifications:\n  endpoints:\n{}",
        endpoint("late", port, headers)
    ));
    let started = Instant::now();
    let mut pushed = Vec::new();
    for i in 0..3 {
        pushed.push(
            reg.push_image("app", &format!("v{i}"), &format!("late{i}"))
                .await
                .1,
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "pushes are not slowed by a receiver that is down"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // It comes back, failing its first answers: every event still arrives once, in order.
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let hook = receiver(l, 3).await;
    hook.event("push", "app", &pushed[2]).await;
    let events = hook.events();
    let actions: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["target"]["mediaType"].as_str().unwrap(),
                e["target"]["tag"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for i in 0..3 {
        let tag = format!("v{i}");
        expected.extend([
            ("application/octet-stream", String::new()),
            ("application/octet-stream", String::new()),
            (OCI_MANIFEST, tag),
        ]);
    }
    let expected: Vec<_> = expected.iter().map(|(m, t)| (*m, t.as_str())).collect();
    assert_eq!(
        actions, expected,
        "all nine events, once each, in push order"
    );
    assert!(
        hook.attempts.load(Ordering::SeqCst) >= 12,
        "the failed answers were retried"
    );
    let logs = reg.server.logs(Duration::from_millis(200)).join("\n");
    assert!(
        logs.contains("notification delivery failed"),
        "failures are logged: {logs}"
    );
    assert!(
        !logs.contains("down-secret"),
        "header values are never logged"
    );
}
