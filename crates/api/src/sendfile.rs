//! Blob bodies sent with `sendfile(2)` on plain HTTP/1 connections: the file's pages go from
//! the page cache to the socket without being copied through user space, as nginx's
//! `sendfile on` and registry:2 (Go's `io.Copy` to a TCP connection) send them.
//!
//! hyper owns the connection and only writes the `Bytes` a body yields; it has no way to send a
//! file. So a blob body on such a connection yields *placeholders*: `Bytes` pointing into a
//! reserved region of memory that nothing ever writes or reads, one slot per chunk in flight,
//! each registered with the connection (file, offset, length) before hyper gets it. The
//! connection's stream, [`ZeroCopyStream`], recognises a placeholder by its address when hyper
//! writes it and sends the registered file range instead, in order.
//!
//! This rests on how hyper's HTTP/1 writer treats body chunks: on a stream that writes
//! vectored, it queues each chunk as given and hands it to `poll_write_vectored` by address,
//! counting bytes only; it copies chunks into its own buffer only on a stream that cannot write
//! vectored or with pipeline flushing, neither of which Berth uses. The tests below run a real
//! hyper server over the stream and pin that. Every mismatch between a placeholder and the
//! registered range (a slot, an offset or a length that is not the next one expected) fails the
//! connection instead of sending wrong bytes. TLS and HTTP/2 connections never carry a
//! [`FileSender`] and read blobs into memory as before.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Bytes sent per placeholder: large enough that the per-chunk work (a residency check, a frame
/// through hyper) is noise, small enough that a chunk that must be read from disk first is
/// one ordinary read.
const CHUNK: usize = 2 << 20;

/// Placeholders that may be in flight on one connection. hyper asks a body for more only while
/// less than its write buffer (~400 KiB) is queued, so one or two chunks are; a placeholder
/// whose slot was reused while it waited would be caught by the slot check, and this many makes
/// that impossible.
const SLOTS: usize = 16;

/// The reserved region placeholders point into: zeroed memory that is never written or read,
/// so the kernel maps no page of it (it costs address space, not memory).
fn region() -> &'static [u8] {
    static REGION: OnceLock<&'static [u8]> = OnceLock::new();
    REGION.get_or_init(|| vec![0u8; CHUNK * SLOTS].leak())
}

/// Bytes sent with `sendfile` since the process started (the tests read it).
static SENT_FROM_FILES: AtomicU64 = AtomicU64::new(0);

/// Where `buf` lies in the region: `(slot, offset in the slot)`, or `None` for ordinary bytes.
fn placeholder(buf: &[u8]) -> Option<(usize, usize)> {
    let start = region().as_ptr() as usize;
    let at = (buf.as_ptr() as usize).checked_sub(start)?;
    (!buf.is_empty() && at < CHUNK * SLOTS).then_some((at / CHUNK, at % CHUNK))
}

/// One registered file range.
struct Job {
    file: Arc<File>,
    offset: u64,
    len: usize,
    sent: usize,
    slot: usize,
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    next_slot: usize,
}

/// A plain HTTP/1 connection's way to send file ranges: request extension of connections
/// served over a [`ZeroCopyStream`]. Clones share the connection's queue.
#[derive(Clone, Default)]
pub struct FileSender(Arc<Mutex<Jobs>>);

impl FileSender {
    /// The sender of a request's connection, for HTTP/1 requests only (hyper frames HTTP/2
    /// data itself, copying the bytes).
    pub fn of(parts: &http::request::Parts) -> Option<FileSender> {
        let http1 = matches!(
            parts.version,
            http::Version::HTTP_10 | http::Version::HTTP_11
        );
        http1.then(|| parts.extensions.get::<FileSender>().cloned())?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `len` (at most [`CHUNK`]) bytes of `file` from `offset` and returns their
    /// placeholder.
    fn register(&self, file: &Arc<File>, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut jobs = self.lock();
        if jobs.queue.len() >= SLOTS {
            return Err(io::Error::other(
                "too many file ranges queued on one connection",
            ));
        }
        let slot = jobs.next_slot;
        jobs.next_slot = (slot + 1) % SLOTS;
        jobs.queue.push_back(Job {
            file: file.clone(),
            offset,
            len,
            sent: 0,
            slot,
        });
        let start = slot * CHUNK;
        Ok(Bytes::from_static(&region()[start..start + len]))
    }
}

/// The body of `len` bytes of `file` from `offset`, sent by `sender`'s connection. A chunk
/// whose pages are not in the page cache is first read into it on the blocking pool, so that
/// `sendfile` on the connection's thread does not wait for the disk.
pub fn file_body(sender: FileSender, file: Arc<File>, offset: u64, len: u64) -> Body {
    let end = offset.saturating_add(len);
    let chunks = (offset..end)
        .step_by(CHUNK)
        .map(move |start| (start, (end - start).min(CHUNK as u64) as usize));
    let stream = futures_util::stream::iter(chunks).then(move |(start, want)| {
        let (sender, file) = (sender.clone(), file.clone());
        async move {
            if !cached(&file, start, want) {
                load(file.clone(), start, want).await?;
            }
            sender.register(&file, start, want)
        }
    });
    Body::from_stream(stream.map(|chunk| {
        chunk.inspect_err(|e| tracing::error!(error = %e, "blob read failed mid-stream"))
    }))
}

/// Whether the first and last page of the range are in the page cache (`preadv2` with
/// `RWF_NOWAIT` of one byte each). Files are written and read ahead front to back, so a range
/// whose two ends are cached almost always is whole; a page evicted in between only makes
/// `sendfile` wait for it.
fn cached(file: &File, start: u64, len: usize) -> bool {
    use rustix::io::{preadv2, ReadWriteFlags};
    let mut byte = [0u8; 1];
    [start, start + len as u64 - 1].into_iter().all(|at| {
        let mut slice = [io::IoSliceMut::new(&mut byte)];
        matches!(preadv2(file, &mut slice, at, ReadWriteFlags::NOWAIT), Ok(1))
    })
}

/// Bytes read at a time by [`load`]: one small buffer per blocking call, whatever the chunk.
const LOAD_PIECE: usize = 64 * 1024;

/// Reads a range into the page cache, on the blocking pool, through one small buffer whose
/// contents are dropped: memory stays flat however many cold blobs are being sent. A file
/// shorter than the range is left to `sendfile` to report.
async fn load(file: Arc<File>, start: u64, len: usize) -> io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; LOAD_PIECE.min(len)];
        let end = start + len as u64;
        let mut at = start;
        while at < end {
            let want = buf.len().min((end - at) as usize);
            match file.read_at(&mut buf[..want], at)? {
                0 => break,
                n => at += n as u64,
            }
        }
        Ok(())
    })
    .await
    .map_err(io::Error::other)?
}

/// A TCP connection that sends the placeholders of its [`FileSender`] with `sendfile(2)` and
/// everything else as written.
pub struct ZeroCopyStream {
    tcp: TcpStream,
    sender: FileSender,
}

impl ZeroCopyStream {
    /// Wraps an accepted connection; requests on it carry the returned sender.
    pub fn new(tcp: TcpStream) -> (Self, FileSender) {
        let sender = FileSender::default();
        let stream = ZeroCopyStream {
            tcp,
            sender: sender.clone(),
        };
        (stream, sender)
    }

    /// Sends the file range behind `buf`, a placeholder at `(slot, at)`: at most `buf.len()`
    /// bytes, as one `sendfile` once the socket can take some.
    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        (slot, at): (usize, usize),
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut jobs = self.sender.lock();
        let Some(job) = jobs.queue.front_mut() else {
            return Poll::Ready(Err(out_of_order("no file range registered")));
        };
        if job.slot != slot || job.sent != at || buf.len() != job.len - job.sent {
            return Poll::Ready(Err(out_of_order(
                "placeholder does not match the next range",
            )));
        }
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut offset = job.offset + job.sent as u64;
            let result = self.tcp.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(&self.tcp, &*job.file, Some(&mut offset), buf.len())
                    .map_err(io::Error::from)
            });
            match result {
                Ok(0) => {
                    tracing::error!("blob file ended before its size while being sent");
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => {
                    SENT_FROM_FILES.fetch_add(n as u64, Ordering::Relaxed);
                    job.sent += n;
                    if job.sent == job.len {
                        jobs.queue.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                // Not ready after all, or a signal arrived before anything was sent.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    if !client_gone(&e) {
                        tracing::error!(error = %e, "blob send failed mid-stream");
                    }
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

fn out_of_order(what: &str) -> io::Error {
    tracing::error!(what, "zero-copy blob send out of order: connection closed");
    io::Error::other(what.to_owned())
}

/// Errors that only say the client went away.
fn client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match placeholder(buf) {
            Some(at) => this.poll_send_file(cx, at, buf),
            None => Pin::new(&mut this.tcp).poll_write(cx, buf),
        }
    }

    /// Ordinary bytes before the first placeholder go out in one `writev`; a placeholder in
    /// front goes out alone.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| Some((i, placeholder(b)?)));
        match first {
            Some((0, at)) => this.poll_send_file(cx, at, &bufs[0]),
            Some((i, _)) => Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[..i]),
            None => Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "sendfile_tests.rs"]
mod tests;
