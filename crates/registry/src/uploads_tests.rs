//! Upload sessions: chunks on different processes, wrong chunks and digests, the closing PUT
//! with the whole body, and sessions whose scratch parts outlived a reboot.

use std::sync::Arc;
use std::time::Duration;

use berth_storage::{InMemoryDriver, StorageDriver};

use crate::test_driver::Recording;
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

/// Two registries on one storage are two nodes behind a load balancer: each chunk lands
/// on another one, and none reads back what the others stored.
#[tokio::test]
async fn chunks_on_different_processes_complete_without_rereading() {
    let driver = Arc::new(Recording::on(InMemoryDriver::new(), None));
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
    assert_eq!(driver.readers(), 0, "no chunk was read back");
    let digest = berth_oci::Digest::sha256_of(b"first second third");
    let size = nodes[1]
        .finish_upload(&repo, &id, &digest, Some(18), None)
        .await
        .expect("put");
    assert_eq!(size, 18);
    assert_eq!(driver.readers(), 3, "the compose read each part once");
    let stored = driver
        .inner
        .get_content(&berth_storage::paths::blob_data(&digest))
        .await
        .expect("blob");
    assert_eq!(stored, "first second third");
    // The session is gone with its parts.
    assert!(nodes[0].upload_status(&repo, &id).await.is_err());
}

/// Parts are scratch data (not fsynced on a filesystem). After a reboot (another scratch
/// epoch) a session whose parts lost content is answered as unknown and removed, never
/// published as a wrong blob; one whose parts survived is checked and completes.
#[tokio::test]
async fn sessions_from_before_a_reboot_are_checked_before_use() {
    use berth_storage::paths;
    let store = InMemoryDriver::new();
    let node = |epoch| {
        let driver = Arc::new(Recording::on(store.clone(), Some(epoch)));
        (
            Registry::new(driver.clone(), RegistryOptions::default()),
            driver,
        )
    };
    let (before, before_driver) = node("boot-1");
    let repo = "a/b".parse().expect("name");
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let id = before.start_upload(&repo).await.expect("start");
        before
            .append_upload(&repo, &id, Some(0), Some(3), body(b"abc"))
            .await
            .expect("patch");
        before
            .append_upload(&repo, &id, Some(3), Some(3), body(b"def"))
            .await
            .expect("patch");
        sessions.push(id);
    }
    let read = |d: &Recording| d.readers();
    assert_eq!(read(&before_driver), 0, "same epoch: nothing read back");
    // The power cut: one part of the second session comes back zeroed.
    let parts_dir = paths::upload_parts_dir(&repo, &sessions[1]);
    let names = store.list(&parts_dir).await.expect("parts");
    let part = format!("{parts_dir}/{}", names.iter().max().expect("a part"));
    store
        .put_content(&part, bytes::Bytes::from_static(b"\0\0\0"))
        .await
        .expect("zero a part");

    let (after, after_driver) = node("boot-2");
    let digest = berth_oci::Digest::sha256_of(b"abcdef");
    let lost = after
        .finish_upload(&repo, &sessions[1], &digest, None, None)
        .await;
    assert!(
        matches!(lost, Err(RegistryError::UploadUnknown(_))),
        "{lost:?}"
    );
    assert!(after.upload_status(&repo, &sessions[1]).await.is_err());
    let blob = paths::blob_data(&digest);
    assert!(store.stat(&blob).await.is_err(), "no blob from lost parts");

    let size = after
        .finish_upload(&repo, &sessions[0], &digest, None, None)
        .await
        .expect("intact session completes");
    assert_eq!(size, 6);
    assert_eq!(store.get_content(&blob).await.expect("blob"), "abcdef");
    assert!(read(&after_driver) >= 2, "the parts were hashed again");
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
    assert_eq!(crate::uploads::parse_upload_id(&id), Some(id.clone()));
    assert_eq!(crate::uploads::parse_upload_id(&id.to_uppercase()), None);
    assert_eq!(crate::uploads::parse_upload_id("../../etc"), None);
    assert_eq!(crate::uploads::parse_upload_id(""), None);
}
