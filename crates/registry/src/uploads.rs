//! Blob uploads: sessions under `_uploads/<uuid>/` whose content is hashed while it arrives
//! and published under `blobs/` only once its digest is verified.
//!
//! Every chunk (PATCH) is stored as its own immutable part object and the session's state
//! (bytes received, the SHA-256 state after them, the part list) is saved after it (see
//! [`crate::upload_state`]). Nothing is ever appended, so the same code runs on a filesystem
//! and on an object store, and any process continues any session without reading back what
//! it received: a restart, or the next chunk landing on another node behind a load balancer,
//! costs one small read. At the end a single part is moved into place (a rename on a
//! filesystem) and several are composed; an upload whose digest is known up front (`POST
//! ?digest=`) streams straight to its final path and is published only once verified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester, RepoName};
use berth_storage::{paths, FileWriter, StorageError};
use futures_util::{StreamExt, TryStreamExt};

use crate::upload_state::{Part, UploadState, MAX_PARTS};
use crate::{links, BodyStream, Registry, RegistryError};

type SessionLock = Arc<tokio::sync::Mutex<()>>;

/// Per-session locks. The lock serialises requests on one session within this process, so
/// two concurrent PATCHes can never both extend the same state.
#[derive(Default)]
pub(crate) struct UploadStates {
    sessions: Mutex<HashMap<String, SessionLock>>,
}

/// Session locks kept at most. Past this, locks no request holds are dropped.
const MAX_SESSIONS: usize = 10_000;

impl UploadStates {
    /// The lock of a session. Callers [`forget`] it when the session turns out not to exist,
    /// so requests for made-up ids leave nothing behind.
    ///
    /// [`forget`]: UploadStates::forget
    fn session(&self, uuid: &str) -> SessionLock {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS && !map.contains_key(uuid) {
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        map.entry(uuid.to_owned()).or_default().clone()
    }

    /// How many sessions have a lock in memory.
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

/// How a chunk's body ended.
enum Received {
    /// All of it arrived (and matched the announced length, if any).
    Whole,
    /// Its length was not the one announced: nothing of it is kept.
    WrongLength { expected: u64, got: u64 },
    /// The connection broke: what arrived is kept, so the client can resume from the status.
    Cut(std::io::Error),
}

impl Registry {
    /// Starts an upload session and returns its id. One small object (the state) is written;
    /// losing it in a power cut only makes the client start a new session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<String, RegistryError> {
        self.check_writable()?;
        self.check_space()?;
        let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
        UploadState::new().save(self.driver(), repo, &uuid).await?;
        Ok(uuid)
    }

    /// Bytes received so far by a session.
    pub async fn upload_status(&self, repo: &RepoName, uuid: &str) -> Result<u64, RegistryError> {
        Ok(UploadState::load(self.driver(), repo, uuid).await?.offset())
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
        let _guard = session.lock().await;
        let mut state = self.open_session(repo, uuid, start).await?;
        match self.receive_part(repo, uuid, &mut state, body, len).await? {
            Received::Whole => Ok(state.offset()),
            // A chunk that is not the length its Content-Range announced (a chunked body
            // may be longer or shorter) is taken back whole: the 416 the client gets must
            // mean that nothing of it was stored.
            Received::WrongLength { expected, got } => {
                Err(RegistryError::ChunkLengthMismatch { expected, got })
            }
            Received::Cut(e) => Err(RegistryError::Body(e)),
        }
    }

    /// Finishes a session (PUT): stores the final chunk if any, verifies the digest, publishes
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
        let guard = session.lock().await;
        let mut state = self.open_session(repo, uuid, start).await?;
        let result = match body {
            // The whole blob in the closing request (POST, then PUT with the body: registry
            // clients' "monolithic" upload): nothing to resume, so it streams straight to the
            // blob's final path like `POST ?digest=`, with no part to move or compose.
            Some(body) if state.parts.is_empty() => {
                let stored = self.stream_to_blob(repo, digest, body).await;
                if stored.is_ok() || matches!(stored, Err(RegistryError::DigestMismatch { .. })) {
                    self.discard_session(repo, uuid, &state).await?;
                }
                stored
            }
            Some(body) => {
                if let Received::Cut(e) = self
                    .receive_part(repo, uuid, &mut state, body, None)
                    .await?
                {
                    return Err(RegistryError::Body(e));
                }
                self.publish_parts(repo, uuid, digest, state).await
            }
            None => self.publish_parts(repo, uuid, digest, state).await,
        };
        drop(guard);
        self.uploads.forget(uuid);
        result
    }

    /// A monolithic upload (`POST ?digest=` with the whole blob as body): streamed straight to
    /// the blob's final path, published only once it hashes to `digest`.
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: BodyStream,
    ) -> Result<u64, RegistryError> {
        self.check_writable()?;
        self.check_space()?;
        self.stream_to_blob(repo, digest, body).await
    }

    /// Streams `body` to `digest`'s final path through a writer that is committed only once
    /// the content hashes to `digest` (nothing is visible before), then links it into `repo`.
    async fn stream_to_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: BodyStream,
    ) -> Result<u64, RegistryError> {
        let writer = self.driver().writer(&paths::blob_data(digest)).await?;
        let mut digester = Digester::new(digest.algorithm());
        let (writer, received) = receive(writer, body, None, |chunk| digester.update(chunk)).await;
        let size = writer.size();
        match received {
            Ok((Received::Whole, _)) => {}
            Ok((Received::Cut(e), _)) => {
                let _ = writer.cancel().await;
                return Err(RegistryError::Body(e));
            }
            Ok((Received::WrongLength { expected, got }, _)) => {
                let _ = writer.cancel().await;
                return Err(RegistryError::ChunkLengthMismatch { expected, got });
            }
            Err(e) => {
                let _ = writer.cancel().await;
                return Err(e);
            }
        }
        let actual = digester.finish();
        if &actual != digest {
            writer.cancel().await?;
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Touch first, then publish: an online collector that trashes an older copy after
        // this sees the touch and puts it back (the same content).
        self.touch_blob(digest).await?;
        if let Err(e) = writer.commit().await {
            self.published_meanwhile(digest, e).await?;
        }
        self.link_blob(repo, digest).await?;
        Ok(size)
    }

    /// Accepts a failed write of `digest`'s content when the blob was published meanwhile by
    /// another writer (the same content: it hashes to its name); otherwise returns the error.
    /// On Garage the newer of two overlapping writes of one key aborts the older multipart
    /// upload, whose completion then fails as not found: a concurrent push of the same blob,
    /// or the online collector restoring it from the trash.
    async fn published_meanwhile(
        &self,
        digest: &Digest,
        error: StorageError,
    ) -> Result<(), RegistryError> {
        if error.is_not_found() && self.blob_size(digest).await?.is_some() {
            return Ok(());
        }
        Err(error.into())
    }

    /// Deletes a finished or failed session. On an object store the session's whole prefix
    /// goes at once (a listing and one batch delete: three requests whatever the number of
    /// parts, where deleting each part by name cost three per part); elsewhere its parts and
    /// state by name, then the directories.
    async fn discard_session(
        &self,
        repo: &RepoName,
        uuid: &str,
        state: &UploadState,
    ) -> Result<(), RegistryError> {
        let d = self.driver();
        if d.walk_is_flat() {
            links::remove(d, &paths::upload_dir(repo, uuid)).await?;
            return Ok(());
        }
        for part in state.part_paths(repo, uuid) {
            links::remove(d, &part).await?;
        }
        links::remove(d, &paths::upload_state(repo, uuid)).await?;
        d.remove_empty_dir(&paths::upload_parts_dir(repo, uuid))
            .await?;
        d.remove_empty_dir(&paths::upload_dir(repo, uuid)).await?;
        Ok(())
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

    /// Loads the session's state after checking `start`. A session that does not exist leaves
    /// no in-memory state behind: a flood of requests to made-up ids must not grow memory.
    async fn open_session(
        &self,
        repo: &RepoName,
        uuid: &str,
        start: Option<u64>,
    ) -> Result<UploadState, RegistryError> {
        let state = match UploadState::load(self.driver(), repo, uuid).await {
            Ok(state) => state,
            Err(e) => {
                if let RegistryError::UploadUnknown(_) = e {
                    self.uploads.forget(uuid);
                }
                return Err(e);
            }
        };
        match start {
            Some(start) if start != state.offset() => Err(RegistryError::RangeInvalid {
                expected: state.offset(),
                got: start,
            }),
            _ => Ok(state),
        }
    }

    /// Stores one chunk as a new part and saves the state that counts it. A chunk of the
    /// wrong length is not stored; one cut short is stored as far as it arrived.
    async fn receive_part(
        &self,
        repo: &RepoName,
        uuid: &str,
        state: &mut UploadState,
        body: BodyStream,
        len: Option<u64>,
    ) -> Result<Received, RegistryError> {
        if state.parts.len() >= MAX_PARTS {
            return Err(RegistryError::UploadInvalid(format!(
                "an upload takes at most {MAX_PARTS} chunks; finish it with the rest of the \
                 content in one request"
            )));
        }
        let nonce = rand::random::<u64>();
        let path = paths::upload_part(repo, uuid, state.offset(), nonce);
        let writer = self.driver().writer(&path).await?;
        let mut hash = state.hash.clone();
        let (writer, received) = receive(writer, body, len, |chunk| hash.update(chunk)).await;
        let outcome = match received {
            Ok((outcome, _)) => outcome,
            Err(e) => {
                let _ = writer.cancel().await;
                return Err(e);
            }
        };
        let size = writer.size();
        if matches!(outcome, Received::WrongLength { .. }) || size == 0 {
            writer.cancel().await?;
            return Ok(outcome);
        }
        writer.commit().await?;
        state.hash = hash;
        state.parts.push(Part { nonce, size });
        state.save(self.driver(), repo, uuid).await?;
        Ok(outcome)
    }

    /// Verifies a session's digest from its saved hash state, then publishes its parts under
    /// `blobs/` and links the blob. On a mismatch the upload is discarded, as registry:2 does.
    async fn publish_parts(
        &self,
        repo: &RepoName,
        uuid: &str,
        digest: &Digest,
        state: UploadState,
    ) -> Result<u64, RegistryError> {
        let size = state.offset();
        let parts = state.part_paths(repo, uuid);
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => state.hash.clone().finish(),
            // Only SHA-256 is kept while receiving; other algorithms read the parts back.
            other => self.hash_parts(&parts, other).await?,
        };
        if &actual != digest {
            self.discard_session(repo, uuid, &state).await?;
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
            let blob = paths::blob_data(digest);
            match parts.as_slice() {
                [] => {
                    self.driver()
                        .put_content(&blob, bytes::Bytes::new())
                        .await?
                }
                [one] => self.driver().move_file(one, &blob).await?,
                many => {
                    if let Err(e) = self.driver().compose(many, &blob).await {
                        self.published_meanwhile(digest, e).await?;
                    }
                }
            }
        }
        self.link_blob(repo, digest).await?;
        self.discard_session(repo, uuid, &state).await?;
        Ok(size)
    }

    /// Hashes stored parts from the start (a digest in another algorithm than SHA-256).
    async fn hash_parts(
        &self,
        parts: &[String],
        algorithm: Algorithm,
    ) -> Result<Digest, RegistryError> {
        let mut digester = Digester::new(algorithm);
        for part in parts {
            let mut stream = self.driver().reader(part, 0, None).await?;
            while let Some(chunk) = stream.try_next().await? {
                digester.update(&chunk);
            }
        }
        Ok(digester.finish())
    }
}

/// Streams a body into a writer, passing every chunk to `hash` first. With `limit`, reading
/// stops at the first chunk that would pass it: an announced length bounds the read. The
/// writer is handed back in every case, for the caller to commit or cancel.
async fn receive(
    mut writer: Box<dyn FileWriter>,
    mut body: BodyStream,
    limit: Option<u64>,
    mut hash: impl FnMut(&[u8]),
) -> (Box<dyn FileWriter>, Result<(Received, u64), RegistryError>) {
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return (writer, Ok((Received::Cut(e), received))),
        };
        received = received.saturating_add(chunk.len() as u64);
        if limit.is_some_and(|limit| received > limit) {
            break;
        }
        hash(&chunk);
        if let Err(e) = writer.write(chunk).await {
            return (writer, Err(e.into()));
        }
    }
    let outcome = match limit {
        Some(expected) if expected != received => Received::WrongLength {
            expected,
            got: received,
        },
        _ => Received::Whole,
    };
    (writer, Ok((outcome, received)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use berth_storage::{InMemoryDriver, StorageDriver};

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

    /// Reads of stored content (not small files) through a driver, to prove a process that
    /// continues an upload does not read back what was received.
    struct CountingReads {
        inner: InMemoryDriver,
        reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl berth_storage::StorageDriver for CountingReads {
        fn name(&self) -> &'static str {
            "counting"
        }
        async fn get_content(&self, p: &str) -> Result<bytes::Bytes, berth_storage::StorageError> {
            self.inner.get_content(p).await
        }
        async fn put_content(
            &self,
            p: &str,
            c: bytes::Bytes,
        ) -> Result<(), berth_storage::StorageError> {
            self.inner.put_content(p, c).await
        }
        async fn put_content_if_absent(
            &self,
            p: &str,
            c: bytes::Bytes,
        ) -> Result<bool, berth_storage::StorageError> {
            self.inner.put_content_if_absent(p, c).await
        }
        async fn reader(
            &self,
            p: &str,
            offset: u64,
            len: Option<u64>,
        ) -> Result<berth_storage::ByteStream, berth_storage::StorageError> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.reader(p, offset, len).await
        }
        async fn writer(
            &self,
            p: &str,
        ) -> Result<Box<dyn berth_storage::FileWriter>, berth_storage::StorageError> {
            self.inner.writer(p).await
        }
        async fn stat(
            &self,
            p: &str,
        ) -> Result<berth_storage::FileInfo, berth_storage::StorageError> {
            self.inner.stat(p).await
        }
        async fn list(&self, p: &str) -> Result<Vec<String>, berth_storage::StorageError> {
            self.inner.list(p).await
        }
        async fn move_file(&self, a: &str, b: &str) -> Result<(), berth_storage::StorageError> {
            self.inner.move_file(a, b).await
        }
        async fn delete(&self, p: &str) -> Result<(), berth_storage::StorageError> {
            self.inner.delete(p).await
        }
    }

    /// Two registries on one storage are two nodes behind a load balancer: each chunk lands
    /// on another one, and none reads back what the others stored.
    #[tokio::test]
    async fn chunks_on_different_processes_complete_without_rereading() {
        let driver = Arc::new(CountingReads {
            inner: InMemoryDriver::new(),
            reads: Default::default(),
        });
        let nodes: Vec<Arc<Registry>> = (0..3)
            .map(|_| Registry::new(driver.clone(), RegistryOptions::default()))
            .collect();
        let repo = "a/b".parse().expect("name");
        let id = nodes[0].start_upload(&repo).await.expect("start");
        let mut offset = 0;
        for (i, chunk) in [&b"first "[..], b"second ", b"third"].iter().enumerate() {
            let body: crate::BodyStream = Box::pin(futures_util::stream::iter([Ok(
                bytes::Bytes::copy_from_slice(chunk),
            )]));
            let len = chunk.len() as u64;
            offset = nodes[i]
                .append_upload(&repo, &id, Some(offset), Some(len), body)
                .await
                .expect("patch");
        }
        assert_eq!(
            nodes[2].upload_status(&repo, &id).await.expect("status"),
            18
        );
        assert_eq!(
            driver.reads.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "no chunk was read back"
        );
        let digest = berth_oci::Digest::sha256_of(b"first second third");
        let size = nodes[1]
            .finish_upload(&repo, &id, &digest, Some(18), None)
            .await
            .expect("put");
        assert_eq!(size, 18);
        assert_eq!(
            driver.reads.load(std::sync::atomic::Ordering::Relaxed),
            3,
            "the compose read each part once"
        );
        let stored = driver
            .inner
            .get_content(&berth_storage::paths::blob_data(&digest))
            .await
            .expect("blob");
        assert_eq!(stored, "first second third");
        // The session is gone with its parts.
        assert!(nodes[0].upload_status(&repo, &id).await.is_err());
    }

    /// A chunk whose length is not the announced one leaves the session as it was; a wrong
    /// digest discards it.
    #[tokio::test]
    async fn wrong_chunks_and_digests_leave_nothing() {
        let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        let repo = "a/b".parse().expect("name");
        let id = reg.start_upload(&repo).await.expect("start");
        reg.append_upload(&repo, &id, Some(0), Some(3), body(b"abc"))
            .await
            .expect("patch");
        let short = reg
            .append_upload(&repo, &id, Some(3), Some(10), body(b"def"))
            .await;
        assert!(matches!(
            short,
            Err(RegistryError::ChunkLengthMismatch { .. })
        ));
        assert_eq!(reg.upload_status(&repo, &id).await.expect("status"), 3);
        let wrong = berth_oci::Digest::sha256_of(b"other");
        let put = reg.finish_upload(&repo, &id, &wrong, None, None).await;
        assert!(matches!(put, Err(RegistryError::DigestMismatch { .. })));
        assert!(reg.upload_status(&repo, &id).await.is_err());
        assert!(reg
            .driver()
            .stat(&berth_storage::paths::blob_data(&wrong))
            .await
            .is_err());
    }

    /// POST then PUT with the whole body streams to the blob's path and leaves no session
    /// object behind; a wrong digest stores nothing and ends the session too.
    #[tokio::test]
    async fn closing_put_with_the_whole_body_streams_straight_to_the_blob() {
        use futures_util::TryStreamExt;
        let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
        let repo = "a/b".parse().expect("name");
        let id = reg.start_upload(&repo).await.expect("start");
        let digest = berth_oci::Digest::sha256_of(b"whole");
        let size = reg
            .finish_upload(&repo, &id, &digest, None, Some(body(b"whole")))
            .await
            .expect("put");
        assert_eq!(size, 5);
        let blob = berth_storage::paths::blob_data(&digest);
        assert_eq!(
            reg.driver().get_content(&blob).await.expect("blob"),
            "whole"
        );
        let dir = berth_storage::paths::upload_dir(&repo, &id);
        let left: Vec<_> = reg.driver().walk(&dir).try_collect().await.expect("walk");
        assert!(left.is_empty(), "session objects left: {left:?}");
        let id = reg.start_upload(&repo).await.expect("start");
        let wrong = berth_oci::Digest::sha256_of(b"other");
        let put = reg
            .finish_upload(&repo, &id, &wrong, None, Some(body(b"whole")))
            .await;
        assert!(matches!(put, Err(RegistryError::DigestMismatch { .. })));
        assert!(reg.upload_status(&repo, &id).await.is_err());
        let blob = berth_storage::paths::blob_data(&wrong);
        assert!(reg.driver().stat(&blob).await.is_err());
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
