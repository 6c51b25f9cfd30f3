//! The webhook receivers of tests/notifications.rs: one that records every envelope (and can
//! fail its first answers), one that accepts connections and never answers, and the config
//! entry of an endpoint pointing at them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;

pub const EVENTS_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// What one POST carried.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

#[derive(Clone, Default)]
pub struct Hook {
    pub got: Arc<Mutex<Vec<Delivery>>>,
    pub attempts: Arc<AtomicUsize>,
    fail_first: usize,
}

/// A webhook receiver on `listener` answering 500 to the first `fail_first` POSTs.
pub async fn receiver(listener: TcpListener, fail_first: usize) -> Hook {
    let hook = Hook {
        fail_first,
        ..Hook::default()
    };
    let app = Router::new()
        .route("/events", post(receive))
        .with_state(hook.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    hook
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: String) -> StatusCode {
    if hook.attempts.fetch_add(1, Ordering::SeqCst) < hook.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let raw = body;
    let body = serde_json::from_str(&raw).expect("the envelope is JSON");
    hook.got
        .lock()
        .unwrap()
        .push(Delivery { headers, body, raw });
    StatusCode::OK
}

impl Hook {
    /// Every event received so far, in order.
    pub fn events(&self) -> Vec<Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .flat_map(|d| d.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until an event matches `pred`, and returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event; got {:#?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the event with `action` on `digest` (or `tag`) in `repo`.
    pub async fn event(&self, action: &str, repo: &str, digest_or_tag: &str) -> Value {
        self.wait_for(&format!("{action} {repo} {digest_or_tag}"), |e| {
            e["action"] == action
                && e["target"]["repository"] == repo
                && (e["target"]["digest"] == digest_or_tag || e["target"]["tag"] == digest_or_tag)
        })
        .await
    }
}

pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub fn endpoint(name: &str, port: u16, extra: &str) -> String {
    format!(
        "    - name: {name}\n      url: http://127.0.0.1:{port}/events\n      timeout: 2s\n      threshold: 2\n      backoff: 100ms\n{extra}"
    )
}

/// A receiver that accepts connections and never answers.
pub async fn hanging_receiver() -> (u16, tokio::task::JoinHandle<()>) {
    let l = listener().await;
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = l.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}
