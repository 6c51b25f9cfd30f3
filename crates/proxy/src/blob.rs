//! Cold blobs: one upstream download per blob however many clients wait, streamed to every
//! client while it arrives and teed into storage through the registry's own upload path
//! (`put_blob`), which verifies the digest before the blob becomes visible.
//!
//! The download writes into an unnamed spool file (`O_TMPFILE`: nothing is left behind by a
//! crash or `SIGKILL`); each client reads the spool at its own pace as it grows, so a slow
//! client never slows the download or the other clients, a client that arrives late replays
//! what already arrived, and memory stays flat whatever the blob size. The blob's last byte is
//! held back from clients until the whole blob is verified and stored, so a corrupt download is
//! never delivered complete, and a client that got the whole blob can rely on the cache having
//! it. When the upstream sends no length (chunked encoding), any chunk may be the last, so the
//! last [`UNKNOWN_TAIL`] bytes received are held back instead until the body ends and the
//! digest is checked. A download cut short resumes with `Range` from where it stopped.
//!
//! A download stops as soon as the upstream sends more than it announced, or, without an
//! announced length, more than the size a manifest of the repository declared for the blob.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Digest, Digester};
use berth_registry::{BodyStream, Registry};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, StatusCode};
use tokio::sync::{mpsc, watch};

use crate::error::What;
use crate::route::Route;
use crate::{ProxyError, UpstreamError};

/// Spool reads and writes happen in chunks of this size.
const CHUNK: usize = 256 * 1024;
/// Resumes of one download before it fails.
const MAX_RESUMES: u32 = 5;
/// The longest the upstream may send no body data before the download is resumed.
const BODY_IDLE: Duration = Duration::from_secs(30);
/// Held back from clients while a download of unknown length runs: the end may be in any
/// chunk, and a client must never get the end of a blob whose digest does not match.
pub const UNKNOWN_TAIL: u64 = CHUNK as u64;

/// Where a download is.
#[derive(Debug, Clone, Default)]
enum State {
    /// Waiting for the upstream's response headers.
    #[default]
    Starting,
    /// Receiving data.
    Running,
    /// The blob turned out to be stored already: serve it from storage.
    Local,
    /// Every byte arrived and the digest matched.
    Done,
    /// The download failed; clients reading it get an error (and a cut connection).
    Failed(ProxyError),
}

#[derive(Debug, Clone, Default)]
struct Progress {
    size: Option<u64>,
    written: u64,
    state: State,
}

/// What a client waiting for a download gets once the upstream answered.
pub enum Ready {
    /// The blob is in storage.
    Local,
    /// The blob is arriving; its size when the upstream said.
    Streaming(Option<u64>),
}

/// One in-progress download of a blob, shared by every client that wants it.
pub struct Download {
    file: Arc<File>,
    progress: watch::Receiver<Progress>,
}

impl Download {
    /// Starts downloading `digest` for `route` into a spool file in `spool_dir`, teeing it to
    /// storage. `declared` is the blob's size in a manifest, when known: the download fails as
    /// soon as the upstream announces or sends more. `on_end` runs when the download has
    /// finished either way.
    pub fn start(
        registry: Arc<Registry>,
        route: Route,
        digest: Digest,
        declared: Option<u64>,
        spool_dir: &Path,
        on_end: impl FnOnce() + Send + 'static,
    ) -> Result<Arc<Download>, ProxyError> {
        let file = Arc::new(
            tempfile::tempfile_in(spool_dir)
                .map_err(|e| spool_error(&format!("spool file in {}", spool_dir.display()), e))?,
        );
        let (tx, rx) = watch::channel(Progress::default());
        let fetcher = Fetcher {
            registry,
            route,
            digest,
            declared,
            file: file.clone(),
            tx,
        };
        tokio::spawn(async move {
            fetcher.run().await;
            on_end();
        });
        Ok(Arc::new(Download { file, progress: rx }))
    }

    /// Waits until the upstream answered: the size to announce, or why it failed.
    pub async fn ready(&self) -> Result<Ready, ProxyError> {
        let mut rx = self.progress.clone();
        loop {
            let p = rx.borrow_and_update().clone();
            match p.state {
                State::Starting => {}
                State::Local => return Ok(Ready::Local),
                State::Running | State::Done => return Ok(Ready::Streaming(p.size)),
                State::Failed(e) => return Err(e),
            }
            if rx.changed().await.is_err() {
                return Err(ProxyError::Storage(
                    "download task ended unexpectedly".into(),
                ));
            }
        }
    }

    /// The bytes `offset..offset+len` (or to the end), as they arrive.
    pub fn stream(self: &Arc<Self>, offset: u64, len: Option<u64>) -> BodyStream {
        let end = len.map(|l| offset + l);
        let state = (self.clone(), offset, self.progress.clone());
        Box::pin(futures_util::stream::unfold(
            Some(state),
            move |state| async move {
                let (download, mut pos, mut rx) = state?;
                loop {
                    let p = rx.borrow_and_update().clone();
                    let done = match &p.state {
                        State::Failed(e) => {
                            return Some((Err(io::Error::other(e.to_string())), None))
                        }
                        State::Local => {
                            return Some((Err(io::Error::other("download state changed")), None))
                        }
                        State::Done => true,
                        State::Starting | State::Running => false,
                    };
                    // The last byte waits for verification, so a bad download never looks whole;
                    // without a known size, the last chunk does.
                    let mut readable = match (done, p.size) {
                        (true, _) => p.written,
                        (false, Some(size)) => p.written.min(size.saturating_sub(1)),
                        (false, None) => p.written.saturating_sub(UNKNOWN_TAIL),
                    };
                    if let Some(end) = end {
                        readable = readable.min(end);
                    }
                    if pos < readable {
                        let n = (readable - pos).min(CHUNK as u64) as usize;
                        return match read_at(download.file.clone(), pos, n).await {
                            Ok(chunk) => {
                                pos += n as u64;
                                Some((Ok(chunk), Some((download, pos, rx))))
                            }
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                    let finished = if done {
                        pos >= end.unwrap_or(p.written)
                    } else {
                        // A range that ends before the last byte needs no verification.
                        end.is_some_and(|e| pos >= e && p.size.is_some_and(|s| e < s))
                    };
                    if finished {
                        return None;
                    }
                    if rx.changed().await.is_err() && !matches!(rx.borrow().state, State::Done) {
                        return Some((Err(io::Error::other("download abandoned")), None));
                    }
                }
            },
        ))
    }
}

/// A spool file error, keeping "disk full" a full-disk error (507 to the client, as a push
/// gets) rather than an internal one.
fn spool_error(what: &str, e: io::Error) -> ProxyError {
    match berth_storage::StorageError::from_io(what, e) {
        full @ berth_storage::StorageError::Full(_) => {
            ProxyError::Registry(Arc::new(berth_registry::RegistryError::Storage(full)))
        }
        other => ProxyError::Storage(other.to_string()),
    }
}

async fn read_at(file: Arc<File>, pos: u64, n: usize) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; n];
        file.read_exact_at(&mut buf, pos)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(io::Error::other)?
}

async fn write_at(file: Arc<File>, pos: u64, chunks: Vec<Bytes>) -> io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut pos = pos;
        for c in chunks {
            file.write_all_at(&c, pos)?;
            pos += c.len() as u64;
        }
        Ok(())
    })
    .await
    .map_err(io::Error::other)?
}

/// The task that downloads one blob.
struct Fetcher {
    registry: Arc<Registry>,
    route: Route,
    digest: Digest,
    declared: Option<u64>,
    file: Arc<File>,
    tx: watch::Sender<Progress>,
}

impl Fetcher {
    async fn run(self) {
        // Another download may have stored it between the caller's look and this one.
        if self
            .registry
            .stat_blob(&self.route.local, &self.digest)
            .await
            .is_ok()
        {
            self.tx.send_modify(|p| p.state = State::Local);
            return;
        }
        let (chunks, receiver) = mpsc::channel::<io::Result<Bytes>>(16);
        let body: BodyStream = Box::pin(futures_util::stream::unfold(receiver, |mut rx| async {
            rx.recv().await.map(|item| (item, rx))
        }));
        let (registry, local, digest) = (
            self.registry.clone(),
            self.route.local.clone(),
            self.digest.clone(),
        );
        let store = tokio::spawn(async move { registry.put_blob(&local, &digest, body).await });
        let host = self.route.upstream.host().to_owned();
        let mut tee = Some(chunks);
        match self.download(&mut tee).await {
            Ok(written) => {
                // Published before the last byte goes out: a client that has the whole blob
                // can count on the cache having it too (unless storage refused it).
                drop(tee);
                match store.await {
                    Ok(Ok(_)) => {
                        tracing::info!(upstream = host, repo = %self.route.local, digest = %self.digest, bytes = written, "blob cached")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(upstream = host, repo = %self.route.local, digest = %self.digest, error = %e, "blob served but not cached")
                    }
                    Err(e) => {
                        tracing::warn!(digest = %self.digest, error = %e, "blob store task failed")
                    }
                }
                self.tx.send_modify(|p| p.state = State::Done);
            }
            Err(e) => {
                tracing::warn!(upstream = host, repo = %self.route.local, digest = %self.digest, error = %e, "blob download failed");
                if let Some(tee) = tee.take() {
                    // Makes put_blob drop its partial upload at once.
                    let _ = tee.send(Err(io::Error::other("download failed"))).await;
                }
                let _ = store.await;
                self.tx.send_modify(|p| p.state = State::Failed(e));
            }
        }
    }

    /// Downloads into the spool (and the tee), resuming with `Range` when the transfer is cut.
    /// Returns the size once the digest has been verified.
    async fn download(
        &self,
        tee: &mut Option<mpsc::Sender<io::Result<Bytes>>>,
    ) -> Result<u64, ProxyError> {
        let upstream = &self.route.upstream;
        let host = upstream.host();
        let fail = |e: UpstreamError| e.into_proxy(What::Blob, host);
        let mut digester = Digester::new(self.digest.algorithm());
        let mut written = 0u64;
        let mut size: Option<u64> = None;
        let mut resumes = 0;
        loop {
            let response = match upstream
                .get_blob(&self.route.remote, &self.digest, written)
                .await
            {
                Ok(r) => r,
                Err(e) if written > 0 && e.is_transient() && resumes < MAX_RESUMES => {
                    resumes += 1;
                    tracing::warn!(upstream = host, digest = %self.digest, written, error = %e, "blob download: resume failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(fail(e)),
            };
            let partial = response.status() == StatusCode::PARTIAL_CONTENT;
            let total = if partial {
                match content_range(response.headers()) {
                    Some((start, total)) if start == written => total,
                    other => {
                        return Err(fail(UpstreamError::Invalid(format!(
                            "asked for bytes from {written}, got Content-Range {other:?}"
                        ))))
                    }
                }
            } else {
                response.content_length()
            };
            // An upstream that ignores Range sends it all again: skip what we have.
            let mut skip = if partial { 0 } else { written };
            match (size, total) {
                (None, t) => {
                    size = t;
                    self.tx.send_modify(|p| {
                        p.size = t;
                        p.state = State::Running;
                    });
                }
                (Some(s), Some(t)) if s != t => {
                    return Err(fail(UpstreamError::Invalid(format!(
                        "blob size changed from {s} to {t} on resume"
                    ))))
                }
                _ => {}
            }
            if let (Some(d), Some(t)) = (self.declared, total) {
                if t > d {
                    return Err(fail(UpstreamError::Invalid(format!(
                        "upstream announces {t} bytes, the manifest declared {d}"
                    ))));
                }
            }
            // Without an announced size, the manifest's is the most that may arrive.
            let cap = size.or(self.declared);
            let mut body = response.bytes_stream();
            let mut batch: Vec<Bytes> = Vec::new();
            let mut batched = 0usize;
            let cut = loop {
                let chunk = match tokio::time::timeout(BODY_IDLE, body.next()).await {
                    Err(_) => break Some(format!("no data for {BODY_IDLE:?}")),
                    Ok(None) => break None,
                    Ok(Some(Err(e))) => break Some(e.to_string()),
                    Ok(Some(Ok(chunk))) => {
                        crate::metrics::pulled(crate::metrics::Kind::Blob, chunk.len() as u64);
                        chunk
                    }
                };
                let chunk = if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    skip -= n;
                    chunk.slice(n as usize..)
                } else {
                    chunk
                };
                if chunk.is_empty() {
                    continue;
                }
                if let Some(cap) = cap {
                    if written + batched as u64 + chunk.len() as u64 > cap {
                        let why = if size.is_some() {
                            "announced"
                        } else {
                            "declared"
                        };
                        return Err(fail(UpstreamError::Invalid(format!(
                            "more data than the {cap} bytes {why}"
                        ))));
                    }
                }
                digester.update(&chunk);
                if let Some(t) = tee.as_ref() {
                    if t.send(Ok(chunk.clone())).await.is_err() {
                        // Storage gave up (full, read-only): keep serving from the spool.
                        *tee = None;
                    }
                }
                batched += chunk.len();
                batch.push(chunk);
                if batched >= CHUNK {
                    written = self.flush(written, &mut batch, &mut batched).await?;
                }
            };
            written = self.flush(written, &mut batch, &mut batched).await?;
            let complete = size.map_or(cut.is_none(), |s| written == s);
            if complete {
                break;
            }
            resumes += 1;
            let why = cut.unwrap_or_else(|| "connection closed early".into());
            if resumes > MAX_RESUMES {
                return Err(fail(UpstreamError::Unreachable(format!(
                    "blob download cut {resumes} times, last at byte {written}: {why}"
                ))));
            }
            tracing::warn!(upstream = host, digest = %self.digest, written, size, error = why, "blob download cut; resuming with Range");
        }
        let actual = digester.finish();
        if actual != self.digest {
            return Err(fail(UpstreamError::Invalid(format!(
                "blob content hashes to {actual}"
            ))));
        }
        Ok(written)
    }

    /// Writes the batched chunks to the spool and tells the readers.
    async fn flush(
        &self,
        written: u64,
        batch: &mut Vec<Bytes>,
        batched: &mut usize,
    ) -> Result<u64, ProxyError> {
        if batch.is_empty() {
            return Ok(written);
        }
        let chunks = std::mem::take(batch);
        write_at(self.file.clone(), written, chunks)
            .await
            .map_err(|e| spool_error("spool write", e))?;
        let written = written + *batched as u64;
        *batched = 0;
        self.tx.send_modify(|p| p.written = written);
        Ok(written)
    }
}

/// Start and total of `Content-Range: bytes 100-199/200` (total `None` for `*`).
fn content_range(headers: &http::HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim();
    let (span, total) = range.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/200"),
        );
        assert_eq!(content_range(&h), Some((100, Some(200))));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 5-9/*"),
        );
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("items 1-2/3"),
        );
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn a_full_spool_disk_is_a_full_disk_error() {
        let full = spool_error("spool write", io::Error::from_raw_os_error(28));
        assert!(
            matches!(
                &full,
                ProxyError::Registry(e) if matches!(
                    e.as_ref(),
                    berth_registry::RegistryError::Storage(berth_storage::StorageError::Full(_))
                )
            ),
            "{full:?}"
        );
        let other = spool_error("spool write", io::Error::other("boom"));
        assert!(matches!(other, ProxyError::Storage(_)), "{other:?}");
    }
}
