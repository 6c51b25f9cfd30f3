//! Which cached images a pass evicts, decided from an inventory without touching storage, so
//! the order is easy to test.
//!
//! 1. **Expiry**: an image not pulled for longer than its upstream's expiry (registry:2 mode:
//!    `proxy.ttl`; else `upstreams[].cache.maxage` or `proxy.cache.maxage`) goes.
//! 2. **Size**: while the cache holds more than `proxy.cache.maxsize`, or an upstream more
//!    than its `cache.maxsize`, the least recently pulled image that counts towards an
//!    exceeded limit goes (ties: by repository, then digest).
//!
//! Images pulled within the grace period (the pull-record refresh period) are never evicted:
//! their records cannot tell them apart, and they are being used. When only such images are
//! left the cache stays over its limit until the next pass, which the report says.
//!
//! Bytes are counted from what images *reference*: a blob counts once for the whole cache
//! (and once for each upstream whose images use it) as long as a remaining image uses it, so
//! evicted images stop counting at once, before garbage collection has freed their blobs.

use std::collections::HashMap;
use std::time::Duration;

use berth_oci::Digest;
use berth_registry::cache::CachedImage;

/// Limits of one upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// Bytes its images may use.
    pub maxsize: Option<u64>,
    /// How long its images may go unpulled.
    pub expiry: Option<Duration>,
}

/// What a pass enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes all cached images may use together.
    pub maxsize: Option<u64>,
    /// Per upstream, in routing order.
    pub upstreams: Vec<UpstreamLimits>,
    /// Images pulled more recently than this are kept.
    pub grace: Duration,
}

/// Why an image is evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not pulled for longer than the expiry.
    Expired,
    /// The cache is over `proxy.cache.maxsize`.
    CacheFull,
    /// Its upstream is over its own `cache.maxsize`.
    UpstreamFull,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Expired => "expired",
            Reason::CacheFull => "cache over maxsize",
            Reason::UpstreamFull => "upstream over its maxsize",
        })
    }
}

/// A cached image and the upstream (routing index) it belongs to.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the upstream.
    pub upstream: usize,
    /// The image.
    pub image: CachedImage,
}

/// Bytes the remaining images use, for the whole cache and per upstream, kept up to date as
/// images are removed.
#[derive(Debug, Clone)]
pub struct Ledger {
    sizes: HashMap<Digest, u64>,
    users: HashMap<Digest, u32>,
    upstream_users: Vec<HashMap<Digest, u32>>,
    /// Bytes all remaining images use.
    pub bytes: u64,
    /// Bytes per upstream.
    pub upstream_bytes: Vec<u64>,
    /// Images per upstream.
    pub upstream_images: Vec<u64>,
}

impl Ledger {
    /// The ledger of `candidates` over `upstreams` upstreams, with the blob `sizes`.
    pub fn new(candidates: &[Candidate], upstreams: usize, sizes: HashMap<Digest, u64>) -> Ledger {
        let mut ledger = Ledger {
            sizes,
            users: HashMap::new(),
            upstream_users: vec![HashMap::new(); upstreams],
            bytes: 0,
            upstream_bytes: vec![0; upstreams],
            upstream_images: vec![0; upstreams],
        };
        for c in candidates {
            let u = c.upstream;
            if u >= upstreams {
                continue;
            }
            ledger.upstream_images[u] += 1;
            for blob in &c.image.blobs {
                let size = ledger.sizes.get(blob).copied().unwrap_or(0);
                let n = ledger.users.entry(blob.clone()).or_default();
                *n += 1;
                if *n == 1 {
                    ledger.bytes += size;
                }
                let n = ledger.upstream_users[u].entry(blob.clone()).or_default();
                *n += 1;
                if *n == 1 {
                    ledger.upstream_bytes[u] += size;
                }
            }
        }
        ledger
    }

    /// Takes an image out; returns the bytes the whole cache no longer uses.
    pub fn remove(&mut self, c: &Candidate) -> u64 {
        let u = c.upstream;
        if u >= self.upstream_bytes.len() {
            return 0;
        }
        self.upstream_images[u] = self.upstream_images[u].saturating_sub(1);
        let mut freed = 0;
        for blob in &c.image.blobs {
            let size = self.sizes.get(blob).copied().unwrap_or(0);
            if release(&mut self.users, blob) {
                self.bytes -= size;
                freed += size;
            }
            if release(&mut self.upstream_users[u], blob) {
                self.upstream_bytes[u] -= size;
            }
        }
        freed
    }
}

/// One user fewer; whether that was the last one.
fn release(users: &mut HashMap<Digest, u32>, blob: &Digest) -> bool {
    match users.get_mut(blob) {
        Some(1) => {
            users.remove(blob);
            true
        }
        Some(n) => {
            *n -= 1;
            false
        }
        None => false,
    }
}

/// The images to evict, in order, with why: indexes into `candidates`. `now_ms` and the
/// candidates' pull times are unix milliseconds; a candidate without a pull time counts as
/// pulled now.
pub fn plan(
    candidates: &[Candidate],
    ledger: &Ledger,
    limits: &Limits,
    now_ms: u64,
) -> Vec<(usize, Reason)> {
    let mut ledger = ledger.clone();
    let age = |c: &Candidate| {
        Duration::from_millis(now_ms.saturating_sub(c.image.last_pull.unwrap_or(now_ms)))
    };
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| age(&candidates[i]) >= limits.grace)
        .collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a].image, &candidates[b].image);
        (a.last_pull, &a.repository, &a.root).cmp(&(b.last_pull, &b.repository, &b.root))
    });
    let mut out = Vec::new();
    order.retain(|&i| {
        let c = &candidates[i];
        let limit = limits
            .upstreams
            .get(c.upstream)
            .copied()
            .unwrap_or_default();
        if limit.expiry.is_some_and(|e| age(c) > e) {
            ledger.remove(c);
            out.push((i, Reason::Expired));
            return false;
        }
        true
    });
    for i in order {
        let c = &candidates[i];
        let own = limits.upstreams.get(c.upstream).and_then(|l| l.maxsize);
        let upstream_full = own.is_some_and(|max| {
            ledger
                .upstream_bytes
                .get(c.upstream)
                .is_some_and(|&b| b > max)
        });
        let cache_full = limits.maxsize.is_some_and(|max| ledger.bytes > max);
        let reason = match (upstream_full, cache_full) {
            (true, _) => Reason::UpstreamFull,
            (false, true) => Reason::CacheFull,
            (false, false) => continue,
        };
        ledger.remove(c);
        out.push((i, reason));
    }
    out
}

/// Whether the remaining images still exceed a limit.
pub fn over_limit(ledger: &Ledger, limits: &Limits) -> bool {
    let upstream = limits.upstreams.iter().enumerate().any(|(u, l)| {
        l.maxsize
            .is_some_and(|max| ledger.upstream_bytes.get(u).is_some_and(|&b| b > max))
    });
    upstream || limits.maxsize.is_some_and(|max| ledger.bytes > max)
}
