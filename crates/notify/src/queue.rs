//! One endpoint's queue: the ignore rules, then a bounded FIFO that a request thread pushes to
//! without waiting (a short lock, never I/O) and the endpoint's delivery task pops from.
//! registry:2's queue is unbounded, so a receiver that stays down grows it until the process
//! runs out of memory; Berth refuses new events past the bound instead, and counts them.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::event::{Action, Event};
use crate::metrics::EndpointMetrics;

/// Events queued per endpoint before new ones are dropped.
pub const QUEUE_BOUND: usize = 10_000;

/// Which events an endpoint does not want (`ignoredmediatypes`, `ignore.mediatypes`,
/// `ignore.actions`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    media_types: HashSet<String>,
    actions: HashSet<String>,
}

impl Filter {
    /// Ignores events whose target has one of `media_types`, or whose action is one of
    /// `actions`. Unlike registry:2 2.8, which forgets `ignore.actions` when no media type
    /// is ignored, both lists always apply.
    pub fn new<'a>(
        media_types: impl IntoIterator<Item = &'a String>,
        actions: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        Filter {
            media_types: media_types.into_iter().cloned().collect(),
            actions: actions
                .into_iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `event` is not sent.
    pub fn ignores(&self, action: Action, media_type: &str) -> bool {
        self.media_types.contains(media_type) || self.actions.contains(action.as_str())
    }
}

/// A bounded queue of events for one endpoint.
#[derive(Debug)]
pub struct Queue {
    /// The endpoint's name, for logs.
    pub name: String,
    filter: Filter,
    bound: usize,
    events: Mutex<VecDeque<Arc<Event>>>,
    wake: Notify,
    /// Set while events are being dropped, so the warning is logged once per episode.
    dropping: AtomicBool,
    /// The endpoint's counters.
    pub metrics: EndpointMetrics,
}

impl Queue {
    /// An empty queue holding at most `bound` events.
    pub fn new(name: &str, filter: Filter, bound: usize) -> Self {
        Queue {
            name: name.to_owned(),
            filter,
            bound,
            events: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            dropping: AtomicBool::new(false),
            metrics: EndpointMetrics::new(name),
        }
    }

    /// Queues `event` unless the endpoint ignores it or the queue is full (then it is dropped,
    /// counted and, once per episode, logged). Never waits for the delivery task.
    pub fn push(&self, event: &Arc<Event>) {
        if self.filter.ignores(event.action, &event.target.media_type) {
            return;
        }
        {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            if events.len() >= self.bound {
                drop(events);
                self.metrics.dropped.inc();
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = self.name,
                        bound = self.bound,
                        "notification queue is full: new events for this endpoint are dropped until it catches up"
                    );
                }
                return;
            }
            // Counted before the delivery task can see it, so `pending` never dips below zero.
            self.metrics.events.inc();
            self.metrics.pending.inc();
            events.push_back(event.clone());
        }
        self.wake.notify_one();
    }

    /// Waits for the next event.
    pub async fn pop(&self) -> Arc<Event> {
        loop {
            if let Some(event) = self.try_pop() {
                return event;
            }
            // A push between `try_pop` and here leaves a permit, so no wake-up is lost.
            self.wake.notified().await;
        }
    }

    fn try_pop(&self) -> Option<Arc<Event>> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let event = events.pop_front();
        if events.len() < self.bound / 2 && self.dropping.swap(false, Ordering::Relaxed) {
            tracing::info!(endpoint = self.name, "notification queue has room again");
        }
        event
    }

    /// How many events wait (not counting one being delivered).
    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::event::{ActorRecord, RequestRecord, SourceRecord, Target};

    fn event(action: Action, media_type: &str) -> Arc<Event> {
        let mut target = Target::blob("r", "sha256:00", 1, String::new());
        target.media_type = media_type.to_owned();
        Arc::new(Event {
            id: "id".into(),
            timestamp: SystemTime::now(),
            action,
            target,
            request: RequestRecord::default(),
            actor: ActorRecord::default(),
            source: SourceRecord::default(),
        })
    }

    #[tokio::test]
    async fn full_queue_drops_new_events_and_counts_them() {
        let q = Queue::new("unit-bound", Filter::default(), 3);
        for _ in 0..5 {
            q.push(&event(Action::Push, "a"));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.metrics.events.get(), 3);
        assert_eq!(q.metrics.dropped.get(), 2);
        assert_eq!(q.metrics.pending.get(), 3);
        q.pop().await;
        q.push(&event(Action::Pull, "b"));
        assert_eq!(q.len(), 3, "room made by a pop is used again");
        assert_eq!(q.metrics.dropped.get(), 2);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = Arc::new(Queue::new("unit-wait", Filter::default(), 10));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await.action }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        q.push(&event(Action::Mount, "a"));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(got.ok().and_then(Result::ok), Some(Action::Mount));
    }

    #[test]
    fn ignore_rules_match_media_types_and_actions() {
        let types = ["application/octet-stream".to_owned()];
        let actions = ["PULL".to_owned()];
        let q = Queue::new("unit-ignore", Filter::new(&types, &actions), 10);
        q.push(&event(Action::Push, "application/octet-stream"));
        q.push(&event(
            Action::Pull,
            "application/vnd.oci.image.manifest.v1+json",
        ));
        assert_eq!(q.len(), 0);
        q.push(&event(
            Action::Push,
            "application/vnd.oci.image.manifest.v1+json",
        ));
        assert_eq!(q.len(), 1);
        assert_eq!(q.metrics.events.get(), 1, "ignored events are not counted");
    }
}
