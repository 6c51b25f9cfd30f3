//! Reused read buffers for streamed file content.
//!
//! A blob stream reads 256 KiB at a time. A fresh buffer per chunk is at glibc's mmap threshold
//! (see `crates/berth/src/memory.rs`), so every chunk cost an `mmap`, a page fault per 4 KiB
//! page with the kernel zeroing it, a second zeroing by us, and an `munmap` with TLB shootdowns
//! when hyper had sent it: about a fifth of the server's CPU time when serving a 256 MiB blob
//! (`perf`, 2026-12-06). Buffers now come back here when the bytes handed to the client are
//! dropped, and are read into again without being cleared (every byte of a chunk is
//! overwritten by the read before anyone sees it).
//!
//! At most [`KEPT`] buffers are kept (2 MiB): enough for the chunks in flight of a few
//! concurrent streams, little enough not to show in the server's resident memory.

use std::sync::Mutex;

use bytes::Bytes;

/// Size of every buffer.
pub(crate) const SIZE: usize = 256 * 1024;
/// Buffers kept for reuse at most.
const KEPT: usize = 8;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of [`SIZE`] bytes: a kept one, or a new one.
pub(crate) fn take() -> Vec<u8> {
    let kept = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    kept.unwrap_or_else(|| vec![0; SIZE])
}

/// The first `len` bytes of `buf`, as `Bytes` that return `buf` to the pool when dropped.
pub(crate) fn freeze(buf: Vec<u8>, len: usize) -> Bytes {
    Bytes::from_owner(Filled { buf, len })
}

/// A buffer and how much of it holds content.
struct Filled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() == SIZE {
            let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
            if free.len() < KEPT {
                free.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_hold_only_what_was_read() {
        let mut buf = take();
        assert_eq!(buf.len(), SIZE);
        buf[..3].copy_from_slice(b"abc");
        let bytes = freeze(buf, 3);
        assert_eq!(&bytes[..], b"abc");
        let slice = bytes.slice(1..);
        drop(bytes);
        assert_eq!(&slice[..], b"bc", "a slice keeps the buffer alive");
        drop(slice);
        assert!(FREE.lock().expect("lock").len() <= KEPT);
        // A reused buffer is overwritten by the next read; what a caller sees is only that.
        let again = take();
        assert_eq!(again.len(), SIZE);
        let bytes = freeze(again, 0);
        assert!(bytes.is_empty());
    }
}
