//! Blobs already sent to a destination registry during one sync, by digest: the first image
//! that needs a blob uploads it, the others (running at the same time or later) wait for that
//! upload and mount the blob from the repository it went to, instead of uploading it again.
//! Base layers shared by many images then cross the network once, as skopeo's blob-info
//! cache achieves for images copied one after another.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_oci::Digest;
use tokio::sync::OnceCell;

/// The repository a blob went to, once its first send ended.
type Origin = Arc<OnceCell<String>>;

/// Where blobs went, per destination registry host and digest.
#[derive(Debug, Default)]
pub struct KnownBlobs {
    cells: Mutex<HashMap<(String, Digest), Origin>>,
}

/// How a blob got to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// This call sent it.
    Sent,
    /// Another image's copy sent it to this repository, on the same registry.
    ElsewhereIn(String),
}

impl KnownBlobs {
    /// A fresh, shared map.
    pub fn new() -> Arc<KnownBlobs> {
        Arc::new(KnownBlobs::default())
    }

    /// Runs `send` unless another copy sent `digest` to `host` (or is sending it: then this
    /// waits for it). A failed send is not remembered, so the next caller tries its own.
    pub async fn once<F, Fut>(
        &self,
        host: &str,
        repo: &str,
        digest: &Digest,
        send: F,
    ) -> crate::Result<Arrival>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = crate::Result<()>>,
    {
        let cell = self
            .cells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((host.to_owned(), digest.clone()))
            .or_default()
            .clone();
        let sent_here = AtomicBool::new(false);
        let origin = cell
            .get_or_try_init(|| async {
                sent_here.store(true, Ordering::Relaxed);
                send().await.map(|()| repo.to_owned())
            })
            .await?;
        Ok(if sent_here.load(Ordering::Relaxed) {
            Arrival::Sent
        } else {
            Arrival::ElsewhereIn(origin.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn one_send_per_digest_and_host() {
        let known = KnownBlobs::new();
        let sends = AtomicUsize::new(0);
        let d = Digest::sha256_of(b"layer");
        let send = || async {
            sends.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(())
        };
        let (a, b) = tokio::join!(
            known.once("h", "r1", &d, send),
            known.once("h", "r2", &d, send)
        );
        assert_eq!(sends.load(Ordering::SeqCst), 1);
        let arrivals = [a.ok(), b.ok()];
        assert!(arrivals.contains(&Some(Arrival::Sent)));
        assert!(arrivals.contains(&Some(Arrival::ElsewhereIn("r1".to_owned()))));
        // Another registry needs its own send; a failed send is not remembered.
        let failing = || async { Err(crate::Failure::Target("refused".to_owned())) };
        assert!(known.once("other", "r", &d, failing).await.is_err());
        assert_eq!(
            known.once("other", "r", &d, send).await.ok(),
            Some(Arrival::Sent)
        );
    }
}
