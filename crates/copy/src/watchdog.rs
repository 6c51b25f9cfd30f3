//! Uploads watched for progress instead of timed as a whole: a blob upload may rightly take
//! hours, so no overall or read timeout can bound it (reqwest's read timeout also counts the
//! time spent sending the body). Instead the body records when the target last took a chunk;
//! an upload whose target takes nothing for [`STALL`] fails, and so does one whose target
//! does not answer within [`COMMIT`] after the last byte (a registry verifying and storing a
//! large blob takes a while, on S3 especially).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
// tokio's clock, so the test can run on paused time.
use tokio::time::Instant;

use crate::verify::BlobStream;

/// Longest time the target may take no data during an upload.
pub const STALL: Duration = Duration::from_secs(120);
/// Longest time the target may take to answer once it has every byte.
pub const COMMIT: Duration = Duration::from_secs(600);
/// How often progress is checked.
const TICK: Duration = Duration::from_secs(1);

/// The progress of one upload.
#[derive(Debug)]
pub struct Watch {
    last: Mutex<Instant>,
    finished: AtomicBool,
}

impl Watch {
    /// A watch starting now.
    pub fn new() -> Arc<Watch> {
        Arc::new(Watch {
            last: Mutex::new(Instant::now()),
            finished: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// `stream`, recording in `watch` each chunk the sender takes and the end.
pub fn watched(stream: BlobStream, watch: Arc<Watch>) -> BlobStream {
    Box::pin(Watched {
        inner: stream,
        watch,
    })
}

struct Watched {
    inner: BlobStream,
    watch: Arc<Watch>,
}

impl Stream for Watched {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(_)) => self.watch.touch(),
            Poll::Ready(None) => {
                self.watch.touch();
                self.watch.finished.store(true, Ordering::Release);
            }
            Poll::Pending => {}
        }
        polled
    }
}

/// Runs `upload` until it ends, or fails it with the reason when the watch shows a stall.
pub async fn supervise<F: Future>(upload: F, watch: &Watch) -> Result<F::Output, String> {
    supervise_with(upload, watch, STALL, COMMIT).await
}

async fn supervise_with<F: Future>(
    upload: F,
    watch: &Watch,
    stall: Duration,
    commit: Duration,
) -> Result<F::Output, String> {
    tokio::pin!(upload);
    loop {
        tokio::select! {
            done = &mut upload => return Ok(done),
            () = tokio::time::sleep(TICK) => {
                let finished = watch.finished.load(Ordering::Acquire);
                let idle = watch.idle();
                if !finished && idle > stall {
                    return Err(format!("the upload made no progress for {}s", idle.as_secs()));
                }
                if finished && idle > commit {
                    return Err(format!(
                        "no answer {}s after the last byte of the upload",
                        idle.as_secs()
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_upload_fails_and_a_slow_one_does_not() {
        let watch = Watch::new();
        let never = std::future::pending::<()>();
        let e = supervise_with(
            never,
            &watch,
            Duration::from_secs(5),
            Duration::from_secs(9),
        )
        .await
        .err();
        assert!(e.is_some_and(|e| e.contains("no progress")));

        // Progress every 2 s keeps a 5 s stall limit happy for 20 s.
        let watch = Watch::new();
        let w = watch.clone();
        let slow = async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                w.touch();
            }
            7
        };
        let r = supervise_with(slow, &watch, Duration::from_secs(5), Duration::from_secs(9)).await;
        assert_eq!(r, Ok(7));
    }
}
