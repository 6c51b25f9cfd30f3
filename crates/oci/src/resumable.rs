//! A SHA-256 whose state can be saved and restored: resumable uploads persist it after every
//! chunk, so any process (another node behind a load balancer, or this one after a restart)
//! continues an upload without reading back what was already received.
//!
//! `sha2` 0.10 cannot serialise its hasher, so this drives its block function
//! ([`sha2::compress256`], the same code, SHA-NI included) with its own buffer and padding.

use sha2::digest::generic_array::GenericArray;

use crate::{Algorithm, Digest};

const BLOCK: usize = 64;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Bytes in a saved state: 8 state words, the byte count, then up to one block of tail.
const SAVED_HEADER: usize = 32 + 8;

/// A SHA-256 in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// Bytes hashed so far, the buffered tail included.
    len: u64,
    /// The tail that does not fill a block yet (`len % 64` bytes).
    tail: Vec<u8>,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        ResumableSha256 {
            state: INITIAL,
            len: 0,
            tail: Vec::with_capacity(BLOCK),
        }
    }
}

impl ResumableSha256 {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds more bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < BLOCK {
                return;
            }
            let block = std::mem::take(&mut self.tail);
            self.compress(&block);
            self.tail = block;
            self.tail.clear();
        }
        let whole = data.len() - data.len() % BLOCK;
        self.compress(&data[..whole]);
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// Runs the block function over whole blocks.
    fn compress(&mut self, blocks: &[u8]) {
        // Batches of blocks per call, so SHA-NI sees long runs.
        const BATCH: usize = 64;
        let mut batch = [GenericArray::default(); BATCH];
        for run in blocks.chunks(BATCH * BLOCK) {
            let n = run.len() / BLOCK;
            for (slot, block) in batch.iter_mut().zip(run.chunks_exact(BLOCK)) {
                slot.copy_from_slice(block);
            }
            sha2::compress256(&mut self.state, &batch[..n]);
        }
    }

    /// The digest of everything fed.
    pub fn finish(mut self) -> Digest {
        let bits = self.len.wrapping_mul(8);
        let mut pad = std::mem::take(&mut self.tail);
        pad.push(0x80);
        while pad.len() % BLOCK != BLOCK - 8 {
            pad.push(0);
        }
        pad.extend_from_slice(&bits.to_be_bytes());
        self.compress(&pad);
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        Digest::new(Algorithm::Sha256, &hex::encode(out))
            .unwrap_or_else(|_| unreachable!("64 lowercase hex digits are a valid sha256 digest"))
    }

    /// The state as bytes, for [`ResumableSha256::restore`].
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SAVED_HEADER + self.tail.len());
        for word in self.state {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.tail);
        out
    }

    /// A state saved by [`ResumableSha256::save`]; `None` for anything that is not one (a
    /// stored state is checked like any other input).
    pub fn restore(saved: &[u8]) -> Option<Self> {
        let (header, tail) = saved.split_at_checked(SAVED_HEADER)?;
        let mut state = [0u32; 8];
        for (word, bytes) in state.iter_mut().zip(header.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().ok()?);
        }
        let len = u64::from_be_bytes(header[32..].try_into().ok()?);
        if tail.len() as u64 != len % BLOCK as u64 {
            return None;
        }
        let mut buffered = Vec::with_capacity(BLOCK);
        buffered.extend_from_slice(tail);
        Some(ResumableSha256 {
            state,
            len,
            tail: buffered,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::ResumableSha256;
    use crate::Digest;

    #[test]
    fn known_answers() {
        assert_eq!(ResumableSha256::new().finish(), Digest::sha256_of(b""));
        let mut h = ResumableSha256::new();
        h.update(b"abc");
        assert_eq!(h.finish(), Digest::sha256_of(b"abc"));
        let million = vec![b'a'; 1_000_000];
        let mut h = ResumableSha256::new();
        h.update(&million);
        assert_eq!(
            h.finish().to_string(),
            "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn rejects_saved_states_that_do_not_add_up() {
        assert!(ResumableSha256::restore(b"short").is_none());
        let mut h = ResumableSha256::new();
        h.update(b"12345");
        let mut saved = h.save();
        saved.push(b'x');
        assert!(ResumableSha256::restore(&saved).is_none());
    }

    proptest! {
        /// Any split of any input, saved and restored between the pieces, hashes like sha2.
        #[test]
        fn saved_and_restored_between_chunks(data in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(0usize..600, 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut h = ResumableSha256::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                h.update(&data[at..cut]);
                at = cut;
                h = ResumableSha256::restore(&h.save()).expect("restore");
            }
            prop_assert_eq!(h.len(), data.len() as u64);
            prop_assert_eq!(h.finish(), Digest::sha256_of(&data));
        }
    }
}
