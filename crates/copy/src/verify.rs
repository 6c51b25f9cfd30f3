//! Blob content checked while it streams: the size may never pass the descriptor's, and the
//! digest must match at the end. The last chunk is held back until the end is verified, so a
//! consumer that commits on end-of-stream (a PUT that completes an upload, a file renamed into
//! place) never completes with bad content: the stream ends with an error instead.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use berth_oci::{Descriptor, Digest, Digester};
use bytes::Bytes;
use futures_util::Stream;

/// A blob's bytes as they arrive.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Marks the `io::Error` of a content check, so it is reported as refused content rather
/// than a failing source or target.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ContentError(pub String);

/// `inner`, checked against `expected` (digest and size).
pub fn verified(inner: BlobStream, expected: &Descriptor) -> BlobStream {
    Box::pin(Verified {
        inner,
        digest: expected.digest.clone(),
        size: expected.size,
        seen: 0,
        digester: Some(Digester::new(expected.digest.algorithm())),
        held: None,
        done: false,
    })
}

struct Verified {
    inner: BlobStream,
    digest: Digest,
    size: u64,
    seen: u64,
    digester: Option<Digester>,
    held: Option<Bytes>,
    done: bool,
}

fn content(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ContentError(message))
}

impl Stream for Verified {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    this.seen += chunk.len() as u64;
                    if this.seen > this.size {
                        this.done = true;
                        return Poll::Ready(Some(Err(content(format!(
                            "blob {} is larger than its descriptor's {} bytes",
                            this.digest, this.size
                        )))));
                    }
                    if let Some(d) = this.digester.as_mut() {
                        d.update(&chunk);
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let actual = this.digester.take().map(Digester::finish);
                    if this.seen != this.size {
                        return Poll::Ready(Some(Err(content(format!(
                            "blob {} ended after {} of its {} bytes",
                            this.digest, this.seen, this.size
                        )))));
                    }
                    if actual.as_ref() != Some(&this.digest) {
                        let actual = actual.map(|a| a.to_string()).unwrap_or_default();
                        return Poll::Ready(Some(Err(content(format!(
                            "blob {} hashes to {actual}",
                            this.digest
                        )))));
                    }
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

/// Whether `e` (or what it wraps) is a content check's failure.
pub fn is_content_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(c) = err.downcast_ref::<ContentError>() {
            return Some(c.0.clone());
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(c) = io.get_ref().and_then(|i| i.downcast_ref::<ContentError>()) {
                return Some(c.0.clone());
            }
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> BlobStream {
        let items: Vec<io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    fn descriptor(data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: Digest::sha256_of(data),
            size: data.len() as u64,
            urls: Vec::new(),
            annotations: None,
            artifact_type: None,
        }
    }

    async fn collect(s: BlobStream) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        let mut s = s;
        loop {
            match s.try_next().await {
                Ok(Some(c)) => out.extend_from_slice(&c),
                Ok(None) => return (out, None),
                Err(e) => return (out, is_content_error(&e)),
            }
        }
    }

    #[tokio::test]
    async fn good_content_passes_whole() {
        let (out, err) = collect(verified(chunks(&[b"ab", b"cd"]), &descriptor(b"abcd"))).await;
        assert_eq!(out, b"abcd");
        assert_eq!(err, None);
    }

    #[tokio::test]
    async fn wrong_digest_never_delivers_the_last_chunk() {
        let (out, err) = collect(verified(chunks(&[b"ab", b"cX"]), &descriptor(b"abcd"))).await;
        assert_eq!(out, b"ab", "the last chunk is held back");
        assert!(err.is_some_and(|e| e.contains("hashes to")));
    }

    #[tokio::test]
    async fn too_long_and_too_short_are_refused() {
        let (_, err) = collect(verified(chunks(&[b"abcde"]), &descriptor(b"abcd"))).await;
        assert!(err.is_some_and(|e| e.contains("larger")));
        let (out, err) = collect(verified(chunks(&[b"ab"]), &descriptor(b"abcd"))).await;
        assert!(out.is_empty());
        assert!(err.is_some_and(|e| e.contains("ended after")));
    }
}
