//! Upload sessions on a filesystem, whose chunks go into one upload file at their offsets:
//! several processes on one directory, chunks refused after they were written, racing
//! chunks, sessions in parts from before upload files, and content lost since it was counted.

use std::sync::Arc;
use std::time::Duration;

use berth_oci::Digest;
use berth_storage::{paths, FilesystemDriver};
use bytes::Bytes;

use crate::upload_state::{Part, UploadState};
use crate::{BodyStream, Registry, RegistryError, RegistryOptions};

fn body(data: &'static [u8]) -> BodyStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(data))]))
}

/// `data` in `pieces` pieces with a pause before each: a request that takes a while.
fn slow_body(data: &'static [u8], pieces: usize) -> BodyStream {
    let size = data.len().div_ceil(pieces);
    Box::pin(futures_util::stream::unfold(0, move |at| async move {
        if at >= data.len() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let end = (at + size).min(data.len());
        Some((Ok(Bytes::from_static(&data[at..end])), end))
    }))
}

/// `n` registries on one data directory: processes sharing it (or nodes on one NFS export).
fn nodes(n: usize) -> (tempfile::TempDir, Vec<Arc<Registry>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = (0..n)
        .map(|_| {
            let driver = FilesystemDriver::new(dir.path()).expect("driver");
            Registry::new(Arc::new(driver), RegistryOptions::default())
        })
        .collect();
    (dir, nodes)
}

async fn exists(reg: &Registry, path: &str) -> bool {
    match reg.driver().stat(path).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("stat {path}: {e}"),
    }
}

async fn blob(reg: &Registry, digest: &Digest) -> Option<Bytes> {
    match reg.driver().get_content(&paths::blob_data(digest)).await {
        Ok(content) => Some(content),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("read blob: {e}"),
    }
}

#[tokio::test]
async fn chunks_go_into_one_file_whichever_process_takes_them() {
    let (_dir, nodes) = nodes(3);
    let repo = "a/b".parse().expect("name");
    let id = nodes[0].start_upload(&repo).await.expect("start");
    let mut offset = 0;
    for (i, chunk) in [&b"first "[..], b"second ", b"third"].iter().enumerate() {
        let body: BodyStream = Box::pin(futures_util::stream::iter([Ok(Bytes::copy_from_slice(
            chunk,
        ))]));
        let len = chunk.len() as u64;
        offset = nodes[i]
            .append_upload(&repo, &id, Some(offset), Some(len), body)
            .await
            .expect("patch");
    }
    assert_eq!(offset, 18);
    assert!(exists(&nodes[0], &paths::upload_file(&repo, &id)).await);
    assert!(!exists(&nodes[0], &paths::upload_parts_dir(&repo, &id)).await);
    let digest = Digest::sha256_of(b"first second third");
    let size = nodes[1]
        .finish_upload(&repo, &id, &digest, Some(18), None)
        .await
        .expect("put");
    assert_eq!(size, 18);
    assert_eq!(
        blob(&nodes[2], &digest).await.expect("blob"),
        "first second third"
    );
    assert!(!exists(&nodes[0], &paths::upload_dir(&repo, &id)).await);
}

/// Chunks refused for their length are written before they are refused: their bytes stay in
/// the file past what the session counts, are overwritten by the next chunk, and are cut
/// off when the file becomes the blob.
#[tokio::test]
async fn refused_chunks_leave_no_trace_in_the_blob() {
    let (_dir, nodes) = nodes(1);
    let reg = &nodes[0];
    let repo = "a/b".parse().expect("name");
    let id = reg.start_upload(&repo).await.expect("start");
    reg.append_upload(&repo, &id, Some(0), Some(3), body(b"abc"))
        .await
        .expect("patch");
    let short = reg
        .append_upload(&repo, &id, Some(3), Some(20), body(b"XXXXXXXXXXXXXXXXX"))
        .await;
    assert!(
        matches!(short, Err(RegistryError::ChunkLengthMismatch { .. })),
        "{short:?}"
    );
    assert_eq!(reg.upload_status(&repo, &id).await.expect("status"), 3);
    reg.append_upload(&repo, &id, Some(3), Some(3), body(b"def"))
        .await
        .expect("patch");
    // The closing PUT may carry the last chunk too.
    let digest = Digest::sha256_of(b"abcdefg");
    let size = reg
        .finish_upload(&repo, &id, &digest, Some(6), Some(body(b"g")))
        .await
        .expect("put");
    assert_eq!(size, 7);
    assert_eq!(blob(reg, &digest).await.expect("blob"), "abcdefg");
}

/// Two processes send a chunk at the same offset of one session at once: the lock lets one
/// in, the other then finds the offset taken, and the blob is exactly the chunk that won.
#[tokio::test]
async fn racing_chunks_on_two_processes_never_mix() {
    let (_dir, nodes) = nodes(2);
    let repo: berth_oci::RepoName = "a/b".parse().expect("name");
    let id = nodes[0].start_upload(&repo).await.expect("start");
    const A: &[u8] = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &[u8] = b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let send = |node: Arc<Registry>, data: &'static [u8]| {
        let (repo, id) = (repo.clone(), id.clone());
        tokio::spawn(async move {
            node.append_upload(&repo, &id, Some(0), Some(40), slow_body(data, 8))
                .await
        })
    };
    let a = send(nodes[0].clone(), A);
    let b = send(nodes[1].clone(), B);
    let (a, b) = (a.await.expect("task"), b.await.expect("task"));
    let winner = match (&a, &b) {
        (Ok(40), Err(RegistryError::RangeInvalid { .. })) => A,
        (Err(RegistryError::RangeInvalid { .. }), Ok(40)) => B,
        other => panic!("one chunk must win: {other:?}"),
    };
    let digest = Digest::sha256_of(winner);
    nodes[1]
        .finish_upload(&repo, &id, &digest, Some(40), None)
        .await
        .expect("put");
    assert_eq!(blob(&nodes[0], &digest).await.expect("blob"), winner);
}

/// A session received in parts (before upload files, or on a backend without them) goes on
/// in parts after an upgrade.
#[tokio::test]
async fn sessions_in_parts_stay_in_parts() {
    let (_dir, nodes) = nodes(1);
    let reg = &nodes[0];
    let repo = "a/b".parse().expect("name");
    let id = reg.start_upload(&repo).await.expect("start");
    let mut old = UploadState::new();
    old.hash.update(b"abc");
    old.parts.push(Part { nonce: 1, size: 3 });
    reg.driver()
        .put_content(
            &paths::upload_part(&repo, &id, 0, 1),
            Bytes::from_static(b"abc"),
        )
        .await
        .expect("part");
    old.save(reg.driver(), &repo, &id).await.expect("state");
    reg.append_upload(&repo, &id, Some(3), Some(3), body(b"def"))
        .await
        .expect("patch");
    let parts = reg
        .driver()
        .list(&paths::upload_parts_dir(&repo, &id))
        .await
        .expect("parts");
    assert_eq!(parts.len(), 2, "{parts:?}");
    let digest = Digest::sha256_of(b"abcdef");
    reg.finish_upload(&repo, &id, &digest, None, None)
        .await
        .expect("put");
    assert_eq!(blob(reg, &digest).await.expect("blob"), "abcdef");
}

/// Content counted under another scratch epoch (before a reboot) is hashed again: a file
/// that lost data is never published; a file shorter than the count is lost as well.
#[tokio::test]
async fn content_from_before_a_reboot_or_lost_since_is_never_published() {
    let (dir, nodes) = nodes(1);
    let reg = &nodes[0];
    let repo = "a/b".parse().expect("name");
    let digest = Digest::sha256_of(b"abcdef");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let id = reg.start_upload(&repo).await.expect("start");
        for (at, chunk) in [(0, &b"abc"[..]), (3, b"def")] {
            let body: BodyStream = Box::pin(futures_util::stream::iter([Ok(
                Bytes::copy_from_slice(chunk),
            )]));
            reg.append_upload(&repo, &id, Some(at), Some(3), body)
                .await
                .expect("patch");
        }
        let mut state = UploadState::load(reg.driver(), &repo, &id)
            .await
            .expect("state");
        state.epoch = Some("boot-before".into());
        state.save(reg.driver(), &repo, &id).await.expect("state");
        sessions.push(id);
    }
    let file = |id: &str| {
        dir.path()
            .join(paths::upload_file(&repo, id).trim_start_matches('/'))
    };
    // The power cut: one file comes back zeroed, one short.
    std::fs::write(file(&sessions[1]), b"\0\0\0\0\0\0").expect("zero");
    std::fs::write(file(&sessions[2]), b"abc").expect("cut");
    for id in &sessions[1..] {
        let lost = reg.finish_upload(&repo, id, &digest, None, None).await;
        assert!(
            matches!(lost, Err(RegistryError::UploadUnknown(_))),
            "{lost:?}"
        );
        assert!(reg.upload_status(&repo, id).await.is_err(), "discarded");
        assert!(
            blob(reg, &digest).await.is_none(),
            "no blob from lost content"
        );
    }
    reg.finish_upload(&repo, &sessions[0], &digest, None, None)
        .await
        .expect("the intact session completes");
    assert_eq!(blob(reg, &digest).await.expect("blob"), "abcdef");
}
