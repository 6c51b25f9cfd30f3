//! Blob uploads: sessions under `_uploads/<uuid>/` whose content is hashed while it arrives
//! and published under `blobs/` only once its digest is verified.
//!
//! The hash state of an open session is kept in memory between requests. When it is missing
//! (after a restart, or when another node served the previous chunk) it is rebuilt by hashing
//! the stored data again, so uploads always survive a restart and can be resumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester, RepoName};
use berth_storage::{paths, FileWriter};
use futures_util::{StreamExt, TryStreamExt};

use crate::{links, BodyStream, Registry, RegistryError};

/// Hash state of the bytes stored so far in one upload session.
struct HashState {
    offset: u64,
    digester: Digester,
}

type SessionLock = Arc<tokio::sync::Mutex<Option<HashState>>>;

/// Per-session locks and hash states. The lock serialises requests on one session, so two
/// concurrent PATCHes can never interleave their bytes.
#[derive(Default)]
pub(crate) struct UploadStates {
    sessions: Mutex<HashMap<String, SessionLock>>,
}

/// Hash states kept at most. Past this, states of sessions no request is using are dropped:
/// they are a cache, rebuilt from storage when their session goes on.
const MAX_SESSIONS: usize = 10_000;

impl UploadStates {
    /// The lock of a session. Callers make sure the session exists (or [`forget`] it when it
    /// turns out not to), so requests for made-up ids leave nothing behind.
    ///
    /// [`forget`]: UploadStates::forget
    fn session(&self, uuid: &str) -> SessionLock {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS && !map.contains_key(uuid) {
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        map.entry(uuid.to_owned()).or_default().clone()
    }

    /// How many sessions have state in memory.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub(crate) fn forget(&self, uuid: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uuid);
    }
}

/// Parses an upload id from a URL; only canonical UUIDs are accepted, so the id is always a
/// safe path component.
pub fn parse_upload_id(s: &str) -> Option<String> {
    let id = uuid::Uuid::try_parse(s).ok()?.hyphenated().to_string();
    (id == s).then_some(id)
}

impl Registry {
    /// Starts an upload session and returns its id.
    ///
    /// Only `_uploads/<uuid>/data` is created: registry:2's `startedat` file would be one more
    /// file to create and delete per blob, which costs real time on ext4 under push load, and
    /// the data file's modification time serves upload purging just as well. Nothing is
    /// fsynced: losing a session in a power cut only makes the client start a new one.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<String, RegistryError> {
        self.check_writable()?;
        self.check_space()?;
        let (uuid, writer) = self.new_upload(repo).await?;
        writer.close().await?;
        let session = self.uploads.session(&uuid);
        *session.lock().await = Some(HashState {
            offset: 0,
            digester: Digester::new(Algorithm::Sha256),
        });
        Ok(uuid)
    }

    /// Bytes received so far by a session.
    pub async fn upload_status(&self, repo: &RepoName, uuid: &str) -> Result<u64, RegistryError> {
        match self.driver().stat(&paths::upload_data(repo, uuid)).await {
            Ok(info) => Ok(info.size),
            Err(e) if e.is_not_found() => Err(RegistryError::UploadUnknown(uuid.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends a chunk (PATCH). `start` is the Content-Range start, which must equal the bytes
    /// received so far; `len` is the length the client announced. Returns the new size.
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        uuid: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: BodyStream,
    ) -> Result<u64, RegistryError> {
        self.check_writable()?;
        self.check_space()?;
        let session = self.uploads.session(uuid);
        let mut state = session.lock().await;
        let (writer, digester) = self.open_session(repo, uuid, start, &mut state).await?;
        let before = HashState {
            offset: writer.size(),
            digester: digester.clone(),
        };
        let (writer, digester, received) = receive(writer, digester, body, len).await?;
        match len {
            // A chunk that is not the length its Content-Range announced (a chunked body
            // may be longer or shorter) is taken back whole: the 416 the client gets must
            // mean that nothing of it was stored.
            Some(expected) if expected != received => {
                writer.rollback().await?;
                *state = Some(before);
                Err(RegistryError::ChunkLengthMismatch {
                    expected,
                    got: received,
                })
            }
            _ => {
                let offset = writer.size();
                writer.close().await?;
                *state = Some(HashState { offset, digester });
                Ok(offset)
            }
        }
    }

    /// Finishes a session (PUT): appends the final chunk if any, verifies the digest, publishes
    /// the blob and links it into `repo`. Returns the blob size.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        uuid: &str,
        digest: &Digest,
        start: Option<u64>,
        body: Option<BodyStream>,
    ) -> Result<u64, RegistryError> {
        self.check_writable()?;
        let session = self.uploads.session(uuid);
        let mut state = session.lock().await;
        let (mut writer, mut digester) = self.open_session(repo, uuid, start, &mut state).await?;
        if let Some(body) = body {
            (writer, digester, _) = receive(writer, digester, body, None).await?;
        }
        let size = writer.size();
        writer.commit().await?;
        *state = None;
        let result = self.publish(repo, uuid, digest, digester, size).await;
        drop(state);
        self.uploads.forget(uuid);
        result
    }

    /// A monolithic upload (`POST ?digest=` with the whole blob as body).
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: BodyStream,
    ) -> Result<u64, RegistryError> {
        self.check_writable()?;
        self.check_space()?;
        let (uuid, writer) = self.new_upload(repo).await?;
        let result = async {
            let (writer, digester, _) =
                receive(writer, Digester::new(digest.algorithm()), body, None).await?;
            let size = writer.size();
            writer.commit().await?;
            self.publish(repo, &uuid, digest, digester, size).await
        }
        .await;
        if result.is_err() {
            // Nobody can resume a monolithic upload: free its space now (it matters most when
            // the error was a full disk).
            let _ = links::remove(self.driver(), &paths::upload_dir(repo, &uuid)).await;
        }
        result
    }

    /// Creates `_uploads/<uuid>/data` for a new upload and opens it for writing.
    async fn new_upload(
        &self,
        repo: &RepoName,
    ) -> Result<(String, Box<dyn FileWriter>), RegistryError> {
        let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
        let writer = self
            .driver()
            .writer(&paths::upload_data(repo, &uuid), false)
            .await?;
        Ok((uuid, writer))
    }

    /// Cancels a session and deletes what it received.
    pub async fn cancel_upload(&self, repo: &RepoName, uuid: &str) -> Result<(), RegistryError> {
        self.check_writable()?;
        let session = self.uploads.session(uuid);
        let _guard = session.lock().await;
        if let Err(e) = self.upload_status(repo, uuid).await {
            self.uploads.forget(uuid);
            return Err(e);
        }
        links::remove(self.driver(), &paths::upload_dir(repo, uuid)).await?;
        self.uploads.forget(uuid);
        Ok(())
    }

    /// Opens the session's data for appending after checking `start`, with a hash state that
    /// matches the stored bytes (rebuilt from storage when not cached). A session that does
    /// not exist leaves no in-memory state behind: a flood of requests to made-up ids must not
    /// grow memory.
    async fn open_session(
        &self,
        repo: &RepoName,
        uuid: &str,
        start: Option<u64>,
        state: &mut Option<HashState>,
    ) -> Result<(Box<dyn FileWriter>, Digester), RegistryError> {
        let size = match self.upload_status(repo, uuid).await {
            Ok(size) => size,
            Err(e) => {
                if let RegistryError::UploadUnknown(_) = e {
                    self.uploads.forget(uuid);
                }
                return Err(e);
            }
        };
        if let Some(start) = start {
            if start != size {
                return Err(RegistryError::RangeInvalid {
                    expected: size,
                    got: start,
                });
            }
        }
        let path = paths::upload_data(repo, uuid);
        let digester = match state.take() {
            Some(s) if s.offset == size => s.digester,
            _ => self.hash_stored(&path, Algorithm::Sha256).await?,
        };
        let writer = self.driver().writer(&path, true).await?;
        Ok((writer, digester))
    }

    /// Hashes stored content from the start (resume after restart, or a sha512 digest).
    async fn hash_stored(
        &self,
        path: &str,
        algorithm: Algorithm,
    ) -> Result<Digester, RegistryError> {
        let mut digester = Digester::new(algorithm);
        let mut stream = self.driver().reader(path, 0, None).await?;
        while let Some(chunk) = stream.try_next().await? {
            digester.update(&chunk);
        }
        Ok(digester)
    }

    /// Verifies the digest of a committed upload, then moves it under `blobs/` and links it.
    /// On a mismatch the upload is discarded, as registry:2 does.
    async fn publish(
        &self,
        repo: &RepoName,
        uuid: &str,
        digest: &Digest,
        digester: Digester,
        size: u64,
    ) -> Result<u64, RegistryError> {
        let data = paths::upload_data(repo, uuid);
        let digester = if std::mem::discriminant(&digester)
            == std::mem::discriminant(&Digester::new(digest.algorithm()))
        {
            digester
        } else {
            self.hash_stored(&data, digest.algorithm()).await?
        };
        let actual = digester.finish();
        let dir = paths::upload_dir(repo, uuid);
        if &actual != digest {
            links::remove(self.driver(), &dir).await?;
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Touch first, then check: if the online collector trashes an existing copy after this
        // check, it sees the touch and puts the copy back. A copy that is only in the trash is
        // simply replaced by ours.
        self.touch_blob(digest).await?;
        if self.blob_size(digest).await?.is_none() {
            self.driver()
                .move_file(&data, &paths::blob_data(digest))
                .await?;
        }
        self.link_blob(repo, digest).await?;
        links::remove(self.driver(), &dir).await?;
        Ok(size)
    }
}

/// Streams a body into a writer while hashing it. Returns the bytes received. With `limit`,
/// reading stops at the first chunk that would pass it (the count returned is then over the
/// limit, and the caller rolls the writer back): an announced length bounds the read.
async fn receive(
    mut writer: Box<dyn FileWriter>,
    mut digester: Digester,
    mut body: BodyStream,
    limit: Option<u64>,
) -> Result<(Box<dyn FileWriter>, Digester, u64), RegistryError> {
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // Keep what arrived intact on disk, so the client can resume from the status.
                let _ = writer.close().await;
                return Err(RegistryError::Body(e));
            }
        };
        received = received.saturating_add(chunk.len() as u64);
        if limit.is_some_and(|limit| received > limit) {
            break;
        }
        digester.update(&chunk);
        writer.write(chunk).await?;
    }
    Ok((writer, digester, received))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use berth_storage::InMemoryDriver;

    use crate::{Registry, RegistryError, RegistryOptions};

    fn body(data: &'static [u8]) -> crate::BodyStream {
        Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
            data,
        ))]))
    }

    #[tokio::test]
    async fn unknown_sessions_leave_no_state() {
        let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        let repo = "a/b".parse().expect("name");
        for _ in 0..100 {
            let id = uuid::Uuid::new_v4().hyphenated().to_string();
            let patched = reg.append_upload(&repo, &id, None, None, body(b"x")).await;
            assert!(matches!(patched, Err(RegistryError::UploadUnknown(_))));
            let digest = berth_oci::Digest::sha256_of(b"x");
            let finished = reg.finish_upload(&repo, &id, &digest, None, None).await;
            assert!(matches!(finished, Err(RegistryError::UploadUnknown(_))));
            assert!(reg.cancel_upload(&repo, &id).await.is_err());
        }
        assert_eq!(reg.uploads.len(), 0);
    }

    #[tokio::test]
    async fn purged_sessions_drop_their_state() {
        let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        let repo = "a/b".parse().expect("name");
        let id = reg.start_upload(&repo).await.expect("start");
        reg.append_upload(&repo, &id, None, None, body(b"abc"))
            .await
            .expect("patch");
        assert_eq!(reg.uploads.len(), 1);
        reg.purge_uploads(Duration::ZERO, false)
            .await
            .expect("purge");
        assert_eq!(reg.uploads.len(), 0);
    }

    #[test]
    fn upload_ids_are_canonical_uuids() {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        assert_eq!(super::parse_upload_id(&id), Some(id.clone()));
        assert_eq!(super::parse_upload_id(&id.to_uppercase()), None);
        assert_eq!(super::parse_upload_id("../../etc"), None);
        assert_eq!(super::parse_upload_id(""), None);
    }
}
