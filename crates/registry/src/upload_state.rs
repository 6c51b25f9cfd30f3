//! The persisted state of an upload session: how many bytes it has received, the SHA-256
//! state after them, and where they are: immutable part objects, or one upload file.
//!
//! Object stores cannot append, and a node behind a load balancer may get the next chunk of
//! an upload another node started, so an upload is not one growing file: each chunk is its own
//! object (`berthparts/<offset>-<nonce>`), written whole, and this state object is replaced
//! after it. The state is the commit point: a part it does not list does not count (a crash
//! between the two leaves an orphan part, purged with the session), and because every part
//! has a fresh name and the state names its parts, the bytes hashed are exactly the bytes
//! published, even if two processes race on one session.
//!
//! On a filesystem the compose of parts would copy every byte again, so there a session's
//! content is one file written at offsets (`berthdata`, [`StorageDriver::lock_upload_file`]),
//! and what keeps racing and crashed requests harmless is a lock held from before this state
//! is read until after it is saved: the state still says how many bytes count, and bytes past
//! that are overwritten by the next chunk and cut off when the file becomes the blob.
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
    /// The parts, in order, when the content is in parts (empty when it is in the file).
    pub parts: Vec<Part>,
    /// Whether the content is in the session's upload file rather than in parts.
    pub file: bool,
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
    /// Absent in states written before upload files (or by Berth versions without them, which
    /// then refuse this state as unsound: the parts do not add up, so they never publish it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    file: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
}

impl UploadState {
    /// A session that has received nothing.
    pub fn new() -> Self {
        UploadState {
            hash: ResumableSha256::new(),
            parts: Vec::new(),
            file: false,
            epoch: None,
        }
    }

    /// Whether nothing was received yet, in either form.
    pub fn is_fresh(&self) -> bool {
        self.offset() == 0 && self.parts.is_empty() && !self.file
    }

    /// Bytes received.
    pub fn offset(&self) -> u64 {
        self.hash.len()
    }

    /// Where the content is, in order: each path with how many of its bytes count.
    pub fn content(&self, repo: &RepoName, uuid: &str) -> Vec<(String, u64)> {
        if self.file {
            return vec![(paths::upload_file(repo, uuid), self.offset())];
        }
        let mut offset = 0;
        self.parts
            .iter()
            .map(|part| {
                let path = paths::upload_part(repo, uuid, offset, part.nonce);
                offset += part.size;
                (path, part.size)
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
        let counted = if stored.file { hash.len() } else { total };
        let sound = stored.version == 1
            && stored.offset == hash.len()
            && counted == hash.len()
            && (!stored.file || stored.parts.is_empty())
            && stored.parts.len() <= MAX_PARTS
            && stored.parts.iter().all(|p| p.size > 0);
        sound.then_some(UploadState {
            hash,
            parts: stored.parts,
            file: stored.file,
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
            file: self.file,
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
            file: false,
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
        // Content in the upload file: no parts, the hashed length counts.
        let in_file = super::Stored {
            parts: vec![],
            file: true,
            ..bad
        };
        let raw = serde_json::to_vec(&in_file).expect("encode");
        let back = UploadState::decode(&raw).expect("decode");
        assert!(back.file && back.parts.is_empty() && back.offset() == 5);
        let both = super::Stored {
            parts: vec![Part { nonce: 7, size: 5 }],
            ..in_file
        };
        let raw = serde_json::to_vec(&both).expect("encode");
        assert!(UploadState::decode(&raw).is_none(), "parts and a file");
    }
}
