//! The eviction order, on hand-built inventories: least recently pulled first, expiry before
//! size, shared blobs counted once, per-upstream limits, and images in use kept.

use std::collections::HashMap;
use std::time::Duration;

use berth_oci::Digest;
use berth_registry::cache::CachedImage;

use crate::evict::{over_limit, plan, Candidate, Ledger, Limits, Reason, UpstreamLimits};

const SEC: u64 = 1000;
const NOW: u64 = 100 * SEC;

struct Inventory {
    candidates: Vec<Candidate>,
    sizes: HashMap<Digest, u64>,
}

impl Inventory {
    fn new() -> Inventory {
        Inventory {
            candidates: Vec::new(),
            sizes: HashMap::new(),
        }
    }

    /// An image `name` of `upstream` last pulled at `pulled` (ms), using `blobs` (name, size).
    fn image(
        mut self,
        upstream: usize,
        name: &str,
        pulled: Option<u64>,
        blobs: &[(&str, u64)],
    ) -> Self {
        let digests = blobs
            .iter()
            .map(|(b, size)| {
                let d = Digest::sha256_of(b.as_bytes());
                self.sizes.insert(d.clone(), *size);
                d
            })
            .collect();
        let root = Digest::sha256_of(name.as_bytes());
        self.candidates.push(Candidate {
            upstream,
            image: CachedImage {
                repository: name.parse().expect("name"),
                root: root.clone(),
                members: vec![root],
                tags: Vec::new(),
                blobs: digests,
                last_pull: pulled,
            },
        });
        self
    }

    fn plan(&self, limits: &Limits) -> Vec<(String, Reason)> {
        let ledger = self.ledger(limits);
        plan(&self.candidates, &ledger, limits, NOW)
            .into_iter()
            .map(|(i, r)| (self.candidates[i].image.repository.to_string(), r))
            .collect()
    }

    fn ledger(&self, limits: &Limits) -> Ledger {
        Ledger::new(&self.candidates, limits.upstreams.len(), self.sizes.clone())
    }
}

fn limits(maxsize: Option<u64>, upstreams: &[UpstreamLimits]) -> Limits {
    Limits {
        maxsize,
        upstreams: upstreams.to_vec(),
        grace: Duration::from_secs(5),
    }
}

fn names(plan: &[(String, Reason)]) -> Vec<&str> {
    plan.iter().map(|(n, _)| n.as_str()).collect()
}

fn abc() -> Inventory {
    Inventory::new()
        .image(0, "a", Some(90 * SEC), &[("a", 100)])
        .image(0, "b", Some(10 * SEC), &[("b", 100)])
        .image(0, "c", Some(50 * SEC), &[("c", 100)])
}

#[test]
fn least_recently_pulled_goes_first_and_only_what_is_needed() {
    let inv = abc();
    let up = [UpstreamLimits::default()];
    assert_eq!(inv.ledger(&limits(None, &up)).bytes, 300);
    assert_eq!(
        names(&inv.plan(&limits(Some(300), &up))),
        Vec::<&str>::new()
    );
    let once = inv.plan(&limits(Some(250), &up));
    assert_eq!(once, vec![("b".to_owned(), Reason::CacheFull)]);
    assert_eq!(names(&inv.plan(&limits(Some(150), &up))), ["b", "c"]);
    assert_eq!(names(&inv.plan(&limits(Some(1), &up))), ["b", "c", "a"]);
}

#[test]
fn images_in_use_are_kept_even_over_the_limit() {
    let inv = abc()
        .image(0, "fresh", Some(NOW - 1000), &[("fresh", 1000)])
        .image(0, "unrecorded", None, &[("unrecorded", 1000)]);
    let l = limits(Some(200), &[UpstreamLimits::default()]);
    let planned = inv.plan(&l);
    assert_eq!(names(&planned), ["b", "c", "a"]);
    let mut ledger = inv.ledger(&l);
    for (i, _) in plan(&inv.candidates, &ledger.clone(), &l, NOW) {
        ledger.remove(&inv.candidates[i]);
    }
    assert_eq!(ledger.bytes, 2000);
    assert!(over_limit(&ledger, &l), "reported as still over the limit");
}

#[test]
fn expired_images_go_whatever_the_size() {
    let inv = abc();
    let up = [UpstreamLimits {
        maxsize: None,
        expiry: Some(Duration::from_secs(40)),
    }];
    // b was pulled 90 s ago, c 50 s ago, a 10 s ago.
    let planned = inv.plan(&limits(None, &up));
    assert_eq!(
        planned,
        vec![
            ("b".to_owned(), Reason::Expired),
            ("c".to_owned(), Reason::Expired)
        ]
    );
    // Expiry first: what it frees counts before size eviction looks.
    assert_eq!(names(&inv.plan(&limits(Some(100), &up))), ["b", "c"]);
}

#[test]
fn shared_blobs_count_once_and_free_nothing_until_their_last_user_goes() {
    let inv = Inventory::new()
        .image(0, "old", Some(10 * SEC), &[("base", 1000), ("old", 10)])
        .image(0, "mid", Some(20 * SEC), &[("base", 1000), ("mid", 10)])
        .image(0, "new", Some(30 * SEC), &[("new", 500)]);
    let up = [UpstreamLimits::default()];
    assert_eq!(inv.ledger(&limits(None, &up)).bytes, 1520);
    // Evicting `old` frees 10 bytes only; `mid` must go too to free the base layer.
    assert_eq!(names(&inv.plan(&limits(Some(1000), &up))), ["old", "mid"]);
    assert_eq!(names(&inv.plan(&limits(Some(1510), &up))), ["old"]);
}

#[test]
fn an_upstream_over_its_own_limit_evicts_only_its_images() {
    let inv = Inventory::new()
        .image(0, "hub/oldest", Some(SEC), &[("h1", 100)])
        .image(1, "ghcr/old", Some(2 * SEC), &[("g1", 100)])
        .image(1, "ghcr/new", Some(3 * SEC), &[("g2", 100)]);
    let up = [
        UpstreamLimits::default(),
        UpstreamLimits {
            maxsize: Some(150),
            expiry: None,
        },
    ];
    let planned = inv.plan(&limits(None, &up));
    assert_eq!(planned, vec![("ghcr/old".to_owned(), Reason::UpstreamFull)]);
    // With a cache limit too, the globally least recently pulled goes first.
    assert_eq!(
        inv.plan(&limits(Some(150), &up)),
        vec![
            ("hub/oldest".to_owned(), Reason::CacheFull),
            ("ghcr/old".to_owned(), Reason::UpstreamFull)
        ]
    );
}
