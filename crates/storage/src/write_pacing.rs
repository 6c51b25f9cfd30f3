//! How the filesystem's writers hand data to the kernel and the disk: small pieces gathered
//! into writes of about a chunk ([`Gather`]), and data sent on to the disk while more of it is
//! still arriving ([`Writeback`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};

use crate::filesystem::CHUNK;

/// Bytes written between two [`Writeback`] starts.
pub(crate) const WRITEBACK_STEP: u64 = 8 << 20;

/// Background syncs running at once, over all files: each holds a blocking-pool thread while
/// the disk works, and the pool also serves every read.
const MAX_WRITEBACKS: usize = 4;

static WRITEBACKS: AtomicUsize = AtomicUsize::new(0);

/// Starts writing a file's data to disk while more of it is still arriving, so that the
/// `fdatasync` that publishes it waits for the last few MiB instead of the whole file. The
/// kernel would otherwise start only when a tenth of memory is dirty (gigabytes here), leaving
/// the disk idle while a large blob arrives and busy for the whole blob once it is complete.
/// A background `fdatasync` of what is written so far starts every [`WRITEBACK_STEP`] bytes,
/// one at a time per file and [`MAX_WRITEBACKS`] at a time in all (when none is free the
/// start is skipped); nobody waits for it, and durability still rests on the final sync.
#[derive(Default)]
pub(crate) struct Writeback {
    unsynced: u64,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Writeback {
    /// Counts `written` more bytes; whether a background sync should start now (once `step`
    /// bytes are unsynced and this file has none running).
    pub(crate) fn due(&mut self, written: u64, step: u64) -> bool {
        self.unsynced += written;
        self.unsynced >= step && self.running.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Runs `sync` (an `fdatasync` of the file) in the background if a slot is free.
    pub(crate) fn start(&mut self, sync: impl FnOnce() + Send + 'static) {
        self.start_in(&WRITEBACKS, sync);
    }

    /// [`Writeback::start`] with the running syncs counted in `slots`.
    fn start_in(&mut self, slots: &'static AtomicUsize, sync: impl FnOnce() + Send + 'static) {
        let taken = slots.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_WRITEBACKS).then_some(n + 1)
        });
        if taken.is_err() {
            return;
        }
        self.unsynced = 0;
        self.running = Some(tokio::task::spawn_blocking(move || {
            sync();
            slots.fetch_sub(1, Ordering::AcqRel);
        }));
    }
}

/// Gathers a writer's data into writes of about [`CHUNK`] bytes: few syscalls and hand-offs to
/// the blocking pool for a body that arrives in small pieces, at most one chunk held.
#[derive(Default)]
pub(crate) struct Gather {
    buf: BytesMut,
    size: u64,
}

impl Gather {
    /// Takes `data`; returns what is ready to be written out, if anything.
    pub(crate) fn add(&mut self, data: Bytes) -> Option<Bytes> {
        self.size += data.len() as u64;
        if self.buf.is_empty() && data.len() >= CHUNK {
            // A big piece goes out as it is, without a copy into the buffer.
            return Some(data);
        }
        self.buf.extend_from_slice(&data);
        (self.buf.len() >= CHUNK).then(|| self.buf.split().freeze())
    }

    /// What is left to write out (empty when nothing is).
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Bytes taken so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Gather, Writeback, CHUNK, MAX_WRITEBACKS};

    #[test]
    fn small_pieces_are_gathered_and_big_ones_go_as_they_are() {
        let mut gather = Gather::default();
        assert!(gather.add(Bytes::from(vec![1; CHUNK / 2])).is_none());
        let ready = gather
            .add(Bytes::from(vec![2; CHUNK / 2]))
            .expect("a chunk");
        assert_eq!(ready.len(), CHUNK);
        let big = Bytes::from(vec![3; 2 * CHUNK]);
        let ready = gather.add(big.clone()).expect("as it is");
        assert_eq!(ready.as_ptr(), big.as_ptr(), "not copied");
        assert!(gather.add(Bytes::from_static(b"tail")).is_none());
        assert_eq!(&gather.rest()[..], b"tail");
        assert_eq!(gather.size(), 3 * CHUNK as u64 + 4);
    }

    /// One background sync per file at a time, a few in all, and every slot comes back.
    #[tokio::test]
    async fn writebacks_are_bounded_and_give_their_slots_back() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        // Slots of this test's own: other tests' writers count in the shared ones.
        static SLOTS: AtomicUsize = AtomicUsize::new(0);
        let mut files: Vec<Writeback> = (0..8).map(|_| Writeback::default()).collect();
        for file in &mut files {
            assert!(file.due(8 << 20, 8 << 20));
            let wait = wait.clone();
            file.start_in(&SLOTS, move || {
                let _ = wait.lock().expect("lock").recv();
            });
        }
        assert_eq!(SLOTS.load(Ordering::Acquire), MAX_WRITEBACKS);
        let started = files.iter().filter(|f| f.running.is_some()).count();
        assert_eq!(started, MAX_WRITEBACKS, "the others were skipped");
        assert!(!files[0].due(8 << 20, 1), "one at a time per file");
        for _ in 0..started {
            release.send(()).expect("release");
        }
        for _ in 0..200 {
            if SLOTS.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(SLOTS.load(Ordering::Acquire), 0);
        assert!(files[0].due(0, 1), "free to start again");
    }
}
