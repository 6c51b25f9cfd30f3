//! Blob uploads: sessions under `_uploads/<uuid>/` whose content is hashed while it arrives
//! and published under `blobs/` only once its digest is verified.
//!
//! On an object store every chunk (PATCH) is stored as its own immutable part object; on a
//! filesystem it is written at its offset into the session's one upload file, under a lock
//! (composing parts there would copy every byte again). Either way the session's state (bytes
//! received, the SHA-256 state after them, where they are) is saved after the chunk (see
//! [`crate::upload_state`]), and any process continues any session without reading back what
//! it received: a restart, or the next chunk landing on another node behind a load balancer,
//! costs one small read. At the end the upload file or a single part is moved into place (a
//! rename on a filesystem) and several parts are composed; an upload whose digest is known up
//! front (`POST ?digest=`, or the whole blob in the closing PUT) streams straight to its final
//! path and is published only once verified.
//!
//! Chunks and state are scratch data: on a filesystem nothing is fsynced until the blob is
//! published (synced once, by the move or the compose). After a power cut the session's
//! content is hashed again before it counts (see [`crate::upload_state`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester, RepoName};
use berth_storage::{paths, FileWriter, StorageError, UploadFile};
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
        let file = self.lock_upload_file(repo, uuid).await?;
        let mut state = self
            .open_session(repo, uuid, start, file.as_deref())
            .await?;
        match self
            .receive_part(repo, uuid, &mut state, file.as_deref(), body, len)
            .await?
        {
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
        let result = self.finish_session(repo, uuid, digest, start, body).await;
        drop(guard);
        self.uploads.forget(uuid);
        result
    }

    /// [`Registry::finish_upload`] under the session's in-process lock.
    async fn finish_session(
        &self,
        repo: &RepoName,
        uuid: &str,
        digest: &Digest,
        start: Option<u64>,
        body: Option<BodyStream>,
    ) -> Result<u64, RegistryError> {
        let seen = self.load_session(repo, uuid, start).await?;
        let body = match body {
            // The whole blob in the closing request (POST, then PUT with the body: registry
            // clients' "monolithic" upload): nothing to resume, so it streams straight to the
            // blob's final path like `POST ?digest=`, with nothing to move or compose, and
            // without the upload file's lock (the blob is verified whatever else happens to
            // the session meanwhile).
            Some(body) if seen.is_fresh() => {
                let stored = self.stream_to_blob(repo, digest, body).await;
                if stored.is_ok() || matches!(stored, Err(RegistryError::DigestMismatch { .. })) {
                    self.discard_finished_session(repo, uuid).await;
                }
                return stored;
            }
            other => other,
        };
        let file = self.lock_upload_file(repo, uuid).await?;
        let seen = match file {
            // Read again under the lock: another process may have added a chunk meanwhile.
            Some(_) => self.load_session(repo, uuid, start).await?,
            None => seen,
        };
        let mut state = self.open_content(repo, uuid, seen, file.as_deref()).await?;
        if let Some(body) = body {
            if let Received::Cut(e) = self
                .receive_part(repo, uuid, &mut state, file.as_deref(), body, None)
                .await?
            {
                return Err(RegistryError::Body(e));
            }
        }
        self.publish_parts(repo, uuid, digest, state, file).await
    }

    /// The session's upload file, locked, where the storage has them (a filesystem); `None`
    /// elsewhere, and when the session's directory does not exist (loading its state then
    /// answers it as unknown).
    async fn lock_upload_file(
        &self,
        repo: &RepoName,
        uuid: &str,
    ) -> Result<Option<Box<dyn UploadFile>>, RegistryError> {
        match self
            .driver()
            .lock_upload_file(&paths::upload_file(repo, uuid))
            .await
        {
            Ok(file) => Ok(file),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
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

    /// Deletes a finished or failed session: its whole directory in one call (on an object
    /// store a listing and one batch delete, three requests whatever the number of parts; on a
    /// filesystem one hand-off to the blocking pool, where deleting each part and the state
    /// by name cost one per file and directory).
    async fn discard_session(&self, repo: &RepoName, uuid: &str) -> Result<(), RegistryError> {
        links::remove(self.driver(), &paths::upload_dir(repo, uuid)).await?;
        Ok(())
    }

    /// Removes the session of an upload that is over (its blob published and linked, or its
    /// digest refused). A failure is logged, not answered: the client's blob is stored, and
    /// what is left of the session is removed by upload purging (`storage.maintenance
    /// .uploadpurging`) like any abandoned session. Seen on Garage under load: its batch
    /// delete answered "database is locked" for the parts, and the push failed with a 503
    /// although the blob was in place.
    async fn discard_finished_session(&self, repo: &RepoName, uuid: &str) {
        if let Err(e) = self.discard_session(repo, uuid).await {
            tracing::warn!(
                repository = %repo,
                upload = uuid,
                error = %e,
                "could not remove a finished upload session; upload purging removes it later"
            );
        }
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

    /// Loads the session's state and checks `start` against it, then
    /// [`Registry::open_content`]. `file` is the session's locked upload file, if any.
    async fn open_session(
        &self,
        repo: &RepoName,
        uuid: &str,
        start: Option<u64>,
        file: Option<&dyn UploadFile>,
    ) -> Result<UploadState, RegistryError> {
        let state = self.load_session(repo, uuid, start).await?;
        self.open_content(repo, uuid, state, file).await
    }

    /// Loads the session's state after checking `start`. A session that does not exist leaves
    /// no in-memory state behind: a flood of requests to made-up ids must not grow memory.
    async fn load_session(
        &self,
        repo: &RepoName,
        uuid: &str,
        start: Option<u64>,
    ) -> Result<UploadState, RegistryError> {
        let state = UploadState::load(self.driver(), repo, uuid)
            .await
            .inspect_err(|e| self.forget_unknown(uuid, e))?;
        match start {
            Some(start) if start != state.offset() => Err(RegistryError::RangeInvalid {
                expected: state.offset(),
                got: start,
            }),
            _ => Ok(state),
        }
    }

    /// Drops the in-memory lock of a session found not to exist (or no longer to).
    fn forget_unknown(&self, uuid: &str, error: &RegistryError) {
        if let RegistryError::UploadUnknown(_) = error {
            self.uploads.forget(uuid);
        }
    }

    /// Settles where the session's content is before a chunk or the publishing: a session
    /// that has received nothing uses its upload file when there is one (`file`, locked by
    /// the caller); one in parts (started before upload files existed) stays in parts. A
    /// session whose file holds fewer bytes than it counted has lost them (the file was
    /// published, or removed with the session, by a request on another process that then
    /// failed to remove the state) and is answered as unknown. Then
    /// [`Registry::check_scratch_parts`].
    async fn open_content(
        &self,
        repo: &RepoName,
        uuid: &str,
        mut state: UploadState,
        file: Option<&dyn UploadFile>,
    ) -> Result<UploadState, RegistryError> {
        if state.is_fresh() && file.is_some() {
            state.file = true;
        }
        if state.file && file.is_none_or(|f| f.size() < state.offset()) {
            tracing::warn!(
                %repo,
                upload = uuid,
                "upload session's file is missing what it received; discarded"
            );
            self.discard_session(repo, uuid).await?;
            self.uploads.forget(uuid);
            return Err(RegistryError::UploadUnknown(uuid.into()));
        }
        self.check_scratch_parts(repo, uuid, state)
            .await
            .inspect_err(|e| self.forget_unknown(uuid, e))
    }

    /// Parts written as scratch data under another scratch epoch (before a reboot or a power
    /// cut) may have lost content: they are hashed again, and a session whose parts no longer
    /// hash to its saved state is discarded and answered as unknown, so the client starts
    /// again instead of publishing a wrong blob. Parts that pass are as durable as any file
    /// (they outlived their epoch).
    async fn check_scratch_parts(
        &self,
        repo: &RepoName,
        uuid: &str,
        state: UploadState,
    ) -> Result<UploadState, RegistryError> {
        let Some(epoch) = state.epoch.as_deref() else {
            return Ok(state);
        };
        if state.offset() == 0 || Some(epoch) == self.driver().scratch_epoch() {
            return Ok(state);
        }
        let content = state.content(repo, uuid);
        let intact = match self.hash_content(&content, Algorithm::Sha256).await {
            Ok(actual) => actual == state.hash.clone().finish(),
            Err(RegistryError::Storage(e)) if e.is_not_found() => false,
            Err(e) => return Err(e),
        };
        if !intact {
            tracing::warn!(
                %repo,
                upload = uuid,
                "upload session lost data since it was written (a reboot?); discarded"
            );
            self.discard_session(repo, uuid).await?;
            return Err(RegistryError::UploadUnknown(uuid.into()));
        }
        Ok(UploadState {
            epoch: None,
            ..state
        })
    }

    /// Stores one chunk (at its offset in the upload file, or as a new part) and saves the
    /// state that counts it. A chunk of the wrong length is not counted; one cut short is
    /// counted as far as it arrived.
    async fn receive_part(
        &self,
        repo: &RepoName,
        uuid: &str,
        state: &mut UploadState,
        file: Option<&dyn UploadFile>,
        body: BodyStream,
        len: Option<u64>,
    ) -> Result<Received, RegistryError> {
        let (writer, nonce) = match file {
            _ if state.file => (unlocked(file, uuid)?.writer_at(state.offset()), None),
            _ => {
                if state.parts.len() >= MAX_PARTS {
                    return Err(RegistryError::UploadInvalid(format!(
                        "an upload takes at most {MAX_PARTS} chunks; finish it with the rest \
                         of the content in one request"
                    )));
                }
                let nonce = rand::random::<u64>();
                let path = paths::upload_part(repo, uuid, state.offset(), nonce);
                (self.driver().scratch_writer(&path).await?, Some(nonce))
            }
        };
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
        if let Some(nonce) = nonce {
            state.parts.push(Part { nonce, size });
        }
        // All content is now written in this epoch (older content was checked on opening).
        state.epoch = self.driver().scratch_epoch().map(str::to_owned);
        state.save(self.driver(), repo, uuid).await?;
        Ok(outcome)
    }

    /// Verifies a session's digest from its saved hash state, then publishes its content
    /// under `blobs/` and links the blob. On a mismatch the upload is discarded, as registry:2
    /// does. `file` is the session's locked upload file, if any.
    async fn publish_parts(
        &self,
        repo: &RepoName,
        uuid: &str,
        digest: &Digest,
        state: UploadState,
        file: Option<Box<dyn UploadFile>>,
    ) -> Result<u64, RegistryError> {
        let size = state.offset();
        let content = state.content(repo, uuid);
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => state.hash.clone().finish(),
            // Only SHA-256 is kept while receiving; other algorithms read the content back.
            other => self.hash_content(&content, other).await?,
        };
        if &actual != digest {
            self.discard_finished_session(repo, uuid).await;
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
            let parts: Vec<String> = content.into_iter().map(|(path, _)| path).collect();
            match parts.as_slice() {
                // `open_content` made sure the file holds at least `size` bytes.
                _ if state.file => unlocked(file, uuid)?.publish(size, &blob).await?,
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
        self.discard_finished_session(repo, uuid).await;
        Ok(size)
    }

    /// Hashes a session's stored content from the start (a digest in another algorithm than
    /// SHA-256, or content written before a reboot): each path's bytes that count.
    async fn hash_content(
        &self,
        content: &[(String, u64)],
        algorithm: Algorithm,
    ) -> Result<Digest, RegistryError> {
        let mut digester = Digester::new(algorithm);
        for (path, len) in content {
            let mut stream = self.driver().reader(path, 0, Some(*len)).await?;
            while let Some(chunk) = stream.try_next().await? {
                digester.update(&chunk);
            }
        }
        Ok(digester.finish())
    }
}

/// The upload file of a session whose content is in it. `open_content` refuses such a
/// session without its file, so this only fails if a caller forgot to lock it.
fn unlocked<F>(file: Option<F>, uuid: &str) -> Result<F, RegistryError> {
    file.ok_or_else(|| RegistryError::Corrupt(format!("upload {uuid}: its file is not locked")))
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
