//! Manifest deletes racing tag writes in the same repository, on the filesystem driver: the
//! online GC soak test failed with `delete ...: storage I/O error on .../_manifests/tags/m2/index:
//! Directory not empty` (a 500) when a DELETE by digest removed a tag's directory while a PUT
//! wrote a new index link into it. Whatever the interleaving, no operation may fail, and every
//! tag listed afterwards must resolve (none may point at a revision the delete removed).

use std::sync::Arc;

use berth_oci::{Digest, Reference};
use berth_storage::FilesystemDriver;
use bytes::Bytes;

use crate::gc_tests::{blob, image, manifest, repo};
use crate::{Registry, RegistryOptions};

/// Rounds of one delete against two concurrent tag writes; each round races once.
const ROUNDS: usize = 150;

fn tag(name: &str) -> Reference {
    name.parse().expect("tag")
}

/// Every listed tag resolves to a manifest that is still stored in the repository.
async fn assert_tags_resolve(reg: &Registry, round: usize) {
    let tags = reg.all_tags(&repo("race")).await.expect("tags");
    for t in tags {
        if let Err(e) = reg.get_manifest(&repo("race"), &tag(&t)).await {
            panic!("round {round}: tag {t} is listed but does not resolve: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_deletes_racing_tag_writes_never_fail_or_dangle() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Without fsync writes are fast, so the delete and the writes overlap more often.
    let driver = FilesystemDriver::new(dir.path())
        .expect("driver")
        .with_sync(false);
    let options = RegistryOptions {
        delete_enabled: true,
        read_only: false,
    };
    let reg = Registry::new(Arc::new(driver), options);
    let config = blob(&reg, "race", "{}").await;
    let layer = blob(&reg, "race", "layer").await;
    let body = |round: usize, which: &str| {
        image(
            &config,
            &layer,
            &format!(r#","annotations":{{"round":"{round}","which":"{which}"}}"#),
        )
    };
    for round in 0..ROUNDS {
        let victim_body = body(round, "victim");
        let victim = manifest(&reg, "race", Some("t"), victim_body.clone()).await;
        manifest(&reg, "race", Some("u"), victim_body.clone()).await;
        let other = Bytes::from(body(round, "other"));
        let (name, by_digest, t, u) = (
            repo("race"),
            Reference::Digest(victim.clone()),
            tag("t"),
            tag("u"),
        );
        let delete = reg.delete_manifest(&name, &by_digest);
        // Tag t moves to another manifest while its directory is deleted; tag u is written
        // again with the very manifest being deleted.
        let retag = reg.put_manifest(&name, &t, None, other.clone());
        let again = reg.put_manifest(&name, &u, None, Bytes::from(victim_body));
        let (deleted, retagged, put_again) = tokio::join!(delete, retag, again);
        if let Err(e) = deleted {
            panic!("round {round}: delete {victim}: {e}");
        }
        assert_eq!(
            retagged
                .unwrap_or_else(|e| panic!("round {round}: put t: {e}"))
                .digest,
            Digest::sha256_of(&other)
        );
        put_again.unwrap_or_else(|e| panic!("round {round}: put u again: {e}"));
        assert_tags_resolve(&reg, round).await;
    }
}
