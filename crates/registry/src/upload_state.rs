//! The persisted state of an upload session: how many bytes it has received, the SHA-256
//! state after them, and the immutable part objects that hold them.
//!
//! Object stores cannot append, and a node behind a load balancer may get the next chunk of
//! an upload another node started, so an upload is not one growing file: each chunk is its own
//! object (`berthparts/<offset>-<nonce>`), written whole, and this state object is replaced
//! after it. The state is the commit point: a part it does not list does not count (a crash
//! between the two leaves an orphan part, purged with the session), and because every part
//! has a fresh name and the state names its parts, the bytes hashed are exactly the bytes
//! published, even if two processes race on one session.
//!
//! Parts and state are scratch data ([`StorageDriver::scratch_writer`]): on a filesystem they
//! are not fsynced, only the published blob is. The state records the storage's scratch epoch
//! (the boot id) its parts were written under; a session read under another epoch has its
//! parts hashed again before they count (see `Registry::open_session`), so a power cut costs
//! a restarted upload, never a wrong blob.

use berth_oci::{RepoName, ResumableSha256};
use berth_storage::{paths, StorageDriver};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// Chunks one session may have. Each PATCH rewrites the state, which lists every part, so
/// this bounds both the state's size (~0.3 MB) and the work per chunk. 10,000 matches S3's
/// part limit: 5 GiB blobs in 512 KiB chunks, 50 GiB in 5 MiB ones.
pub(crate) const MAX_PARTS: usize = 10_000;

/// One stored chunk: the nonce in its name, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part {
    /// Random part of the object's name.
    pub nonce: u64,
    /// Bytes in it (never 0: empty chunks are not stored).
    pub size: u64,
}

/// What an upload session has received so far.
#[derive(Debug, Clone)]
pub(crate) struct UploadState {
    pub hash: ResumableSha256,
    pub parts: Vec<Part>,
    /// The [`StorageDriver::scratch_epoch`] the parts were written under, when they may not
    /// be durable; `None` when they are (object stores) or were checked since.
    pub epoch: Option<String>,
}

/// The stored form; `hash` is [`ResumableSha256::save`] in hex.
#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    offset: u64,
    hash: String,
    parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
}

impl UploadState {
    /// A session that has received nothing.
    pub fn new() -> Self {
        UploadState {
            hash: ResumableSha256::new(),
            parts: Vec::new(),
            epoch: None,
        }
    }

    /// Bytes received.
    pub fn offset(&self) -> u64 {
        self.hash.len()
    }

    /// The storage paths of the parts, in order.
    pub fn part_paths(&self, repo: &RepoName, uuid: &str) -> Vec<String> {
        let mut offset = 0;
        self.parts
            .iter()
            .map(|part| {
                let path = paths::upload_part(repo, uuid, offset, part.nonce);
                offset += part.size;
                path
            })
            .collect()
    }

    /// Reads a session's state; `UploadUnknown` when there is none, or when it cannot be read
    /// (a state torn by a power cut: it is scratch data): the client starts again.
    pub async fn load(
        driver: &dyn StorageDriver,
        repo: &RepoName,
        uuid: &str,
    ) -> Result<Self, RegistryError> {
        let raw = match driver.get_content(&paths::upload_state(repo, uuid)).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Err(RegistryError::UploadUnknown(uuid.into())),
            Err(e) => return Err(e.into()),
        };
        Self::decode(&raw).ok_or_else(|| {
            tracing::warn!(
                upload = uuid,
                "unreadable upload session state; answered as unknown"
            );
            RegistryError::UploadUnknown(uuid.into())
        })
    }

    fn decode(raw: &[u8]) -> Option<Self> {
        let stored: Stored = serde_json::from_slice(raw).ok()?;
        let hash = ResumableSha256::restore(&hex::decode(stored.hash).ok()?)?;
        let total = stored
            .parts
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(p.size))?;
        let sound = stored.version == 1
            && stored.offset == hash.len()
            && total == hash.len()
            && stored.parts.len() <= MAX_PARTS
            && stored.parts.iter().all(|p| p.size > 0);
        sound.then_some(UploadState {
            hash,
            parts: stored.parts,
            epoch: stored.epoch,
        })
    }

    /// Replaces the session's stored state with this one, as scratch data.
    pub async fn save(
        &self,
        driver: &dyn StorageDriver,
        repo: &RepoName,
        uuid: &str,
    ) -> Result<(), RegistryError> {
        let stored = Stored {
            version: 1,
            offset: self.offset(),
            hash: hex::encode(self.hash.save()),
            parts: self.parts.clone(),
            epoch: self.epoch.clone(),
        };
        let body = serde_json::to_vec(&stored).map_err(|e| {
            RegistryError::Corrupt(format!("upload {uuid}: cannot encode session state: {e}"))
        })?;
        driver
            .put_scratch_content(&paths::upload_state(repo, uuid), Bytes::from(body))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Part, UploadState};

    #[test]
    fn stored_state_round_trips_and_is_checked() {
        let mut state = UploadState::new();
        state.hash.update(b"hello");
        state.parts.push(Part { nonce: 7, size: 5 });
        let stored = super::Stored {
            version: 1,
            offset: 5,
            hash: hex::encode(state.hash.save()),
            parts: state.parts.clone(),
            epoch: Some("boot-1".into()),
        };
        let raw = serde_json::to_vec(&stored).expect("encode");
        let back = UploadState::decode(&raw).expect("decode");
        assert_eq!((back.offset(), back.parts), (5, state.parts));
        assert_eq!(back.epoch.as_deref(), Some("boot-1"));
        // Parts that do not add up to the hashed length are refused.
        let bad = super::Stored {
            parts: vec![Part { nonce: 7, size: 4 }],
            ..stored
        };
        let raw = serde_json::to_vec(&bad).expect("encode");
        assert!(UploadState::decode(&raw).is_none());
        assert!(UploadState::decode(b"{not json").is_none());
    }
}
