//! The delivery task against a local receiver: retries until the endpoint accepts, counts
//! under registry:2's metric names, and times out an endpoint that never answers.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use berth_config::{EndpointConfig, EventsConfig, IgnoreConfig, NotificationsConfig};
use berth_notify::{Action, ActorRecord, Notifier, RequestRecord, SourceRecord, Target};

#[derive(Clone, Default)]
struct Hook {
    bodies: Arc<Mutex<Vec<String>>>,
    attempts: Arc<AtomicUsize>,
    fail_first: usize,
}

async fn receive(State(hook): State<Hook>, body: String) -> StatusCode {
    if hook.attempts.fetch_add(1, Ordering::SeqCst) < hook.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    hook.bodies.lock().unwrap().push(body);
    StatusCode::ACCEPTED
}

async fn receiver(fail_first: usize) -> (String, Hook) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hook = Hook {
        fail_first,
        ..Hook::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(hook.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hook)
}

fn config(name: &str, url: &str, timeout: Duration) -> NotificationsConfig {
    NotificationsConfig {
        events: EventsConfig::default(),
        endpoints: vec![EndpointConfig {
            name: name.to_owned(),
            disabled: false,
            url: url.to_owned(),
            headers: BTreeMap::new(),
            timeout,
            threshold: 2,
            backoff: Duration::from_millis(300),
            ignoredmediatypes: Vec::new(),
            ignore: IgnoreConfig::default(),
        }],
    }
}

fn emit(n: &Notifier, digest: &str) {
    let target = Target::blob("repo", digest, 3, String::new());
    let request = RequestRecord::new(String::new(), String::new(), "PUT", String::new());
    n.emit(Action::Push, target, &request, &ActorRecord::default());
}

/// The value of a sample of `family` whose labels include all of `labels`.
fn metric(family: &str, labels: &[(&str, &str)]) -> f64 {
    for f in prometheus::gather() {
        if f.name() != family {
            continue;
        }
        for m in f.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if matches {
                return match f.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    _ => m.get_gauge().get_value(),
                };
            }
        }
    }
    0.0
}

async fn wait(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retries_until_accepted_and_counts_like_registry2() {
    let (url, hook) = receiver(4).await;
    let n = Notifier::start(
        &config("retry", &url, Duration::from_secs(2)),
        SourceRecord::default(),
    )
    .unwrap()
    .unwrap();
    let started = Instant::now();
    emit(&n, "sha256:01");
    emit(&n, "sha256:02");
    wait("both events", || hook.bodies.lock().unwrap().len() == 2).await;
    // Two attempts at once, then one per 300 ms backoff: the 5th attempt comes after ≥ 0.9 s.
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hook.attempts.load(Ordering::SeqCst), 6);
    let bodies = hook.bodies.lock().unwrap().clone();
    assert!(bodies[0].contains("sha256:01") && bodies[1].contains("sha256:02"));
    assert!(bodies[0].starts_with("{\n   \"events\": [\n      {\n         \"id\""));

    let events = "registry_notifications_events_total";
    // The receiver has both bodies before the sender has read the second answer and counted
    // it: wait for the count rather than race it (this failed once on a loaded machine).
    wait("the second success counted", || {
        metric(events, &[("type", "Successes"), ("endpoint", "retry")]) == 2.0
    })
    .await;
    assert_eq!(
        metric(events, &[("type", "Events"), ("endpoint", "retry")]),
        2.0
    );
    assert_eq!(
        metric(events, &[("type", "Successes"), ("endpoint", "retry")]),
        2.0
    );
    assert_eq!(
        metric(events, &[("type", "Failures"), ("endpoint", "retry")]),
        4.0
    );
    let status = "registry_notifications_status_total";
    assert_eq!(
        metric(
            status,
            &[("code", "503 Service Unavailable"), ("endpoint", "retry")]
        ),
        4.0
    );
    assert_eq!(
        metric(status, &[("code", "202 Accepted"), ("endpoint", "retry")]),
        2.0
    );
    assert_eq!(
        metric(
            "registry_notifications_pending_total",
            &[("endpoint", "retry")]
        ),
        0.0
    );
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out_and_counts_errors() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let n = Notifier::start(
        &config("silent", &url, Duration::from_millis(200)),
        SourceRecord::default(),
    )
    .unwrap()
    .unwrap();
    let started = Instant::now();
    emit(&n, "sha256:03");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "emit never waits"
    );
    let errors = || {
        metric(
            "registry_notifications_events_total",
            &[("type", "Errors"), ("endpoint", "silent")],
        )
    };
    wait("two timed-out attempts", || errors() >= 2.0).await;
    assert_eq!(
        metric(
            "registry_notifications_pending_total",
            &[("endpoint", "silent")]
        ),
        1.0
    );
    drop(n);
    silent.abort();
}

/// A receiver that accepts and then answers with a body that never ends: the delivery counts
/// as a success at once and reads only a bounded part of the answer (it used to read the whole
/// answer into memory until the timeout, and count an error).
#[tokio::test]
async fn an_endless_answer_is_not_read_to_its_end() {
    use std::sync::atomic::AtomicU64;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                let chunks = futures_util::stream::repeat_with(move || {
                    counter.fetch_add(64 * 1024, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))
                });
                (StatusCode::ACCEPTED, axum::body::Body::from_stream(chunks))
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let n = Notifier::start(
        &config("endless", &url, Duration::from_secs(30)),
        SourceRecord::default(),
    )
    .unwrap()
    .unwrap();
    emit(&n, "sha256:04");
    let successes = || {
        metric(
            "registry_notifications_events_total",
            &[("type", "Successes"), ("endpoint", "endless")],
        )
    };
    wait("the delivery to succeed", || successes() >= 1.0).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent < 64 * 1024 * 1024,
        "the receiver got to send {sent} bytes"
    );
    drop(n);
    server.abort();
}

#[test]
fn disabled_endpoints_and_bad_urls() {
    let mut c = config("off", "http://127.0.0.1:9/", Duration::from_secs(1));
    c.endpoints[0].disabled = true;
    assert!(Notifier::start(&c, SourceRecord::default())
        .unwrap()
        .is_none());
    let c = config("bad", "ftp://example/", Duration::from_secs(1));
    let e = Notifier::start(&c, SourceRecord::default()).unwrap_err();
    assert!(
        e.to_string().contains("notifications.endpoints[0] (bad)"),
        "{e}"
    );
}
