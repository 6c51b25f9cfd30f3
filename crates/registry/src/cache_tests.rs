//! The cache's storage side: images grouped with their children and tags, bytes counted only
//! for stored blobs, pull records, and eviction that removes links only, keeps what other
//! images share, and backs off when the image was pulled meanwhile.

use std::collections::HashSet;
use std::sync::Arc;

use berth_oci::{Digest, Reference};
use berth_storage::paths;
use berth_storage::InMemoryDriver;

use crate::cache::CachedImage;
use crate::gc_tests::{blob, descriptor, image, manifest, repo, IMAGE, INDEX};
use crate::{Registry, RegistryError, RegistryOptions};

fn index(children: &[&Digest]) -> String {
    let list: Vec<String> = children.iter().map(|d| descriptor(IMAGE, d, 10)).collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{}]}}"#,
        list.join(",")
    )
}

/// A registry with deletes disabled (eviction must not need them) holding, in `cached`:
/// a tagged single image `v1`, and an index `multi` with two platform images, one of which
/// is also tagged `amd64`. Returns the registry and (v1, index, [children]).
async fn fixture() -> (Arc<Registry>, Digest, Digest, [Digest; 2]) {
    let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let config = blob(&reg, "cached", "{}").await;
    let layers = [
        blob(&reg, "cached", "layer one").await,
        blob(&reg, "cached", "layer two").await,
        blob(&reg, "cached", "layer three").await,
    ];
    let v1 = manifest(&reg, "cached", Some("v1"), image(&config, &layers[0], "")).await;
    let a = manifest(
        &reg,
        "cached",
        Some("amd64"),
        image(&config, &layers[1], ""),
    )
    .await;
    let b = manifest(&reg, "cached", None, image(&config, &layers[2], "")).await;
    let idx = manifest(&reg, "cached", Some("multi"), index(&[&a, &b])).await;
    (reg, v1, idx, [a, b])
}

fn find<'a>(images: &'a [CachedImage], root: &Digest) -> &'a CachedImage {
    images.iter().find(|i| &i.root == root).expect("image")
}

#[tokio::test]
async fn images_group_children_tags_and_stored_bytes() {
    let (reg, v1, idx, [a, b]) = fixture().await;
    reg.record_pull(&repo("cached"), &a, 500)
        .await
        .expect("record");
    reg.record_pull(&repo("cached"), &idx, 200)
        .await
        .expect("record");
    let inv = reg
        .cached_images(&[repo("cached")])
        .await
        .expect("inventory");
    assert_eq!(inv.images.len(), 2, "{:#?}", inv.images);
    let single = find(&inv.images, &v1);
    assert_eq!(single.members, vec![v1.clone()]);
    assert_eq!(single.tags.len(), 1);
    assert_eq!(single.blobs.len(), 3, "manifest, config, layer");
    assert_eq!(single.last_pull, None);
    let multi = find(&inv.images, &idx);
    assert_eq!(multi.members.len(), 3);
    assert!(multi.members.contains(&a) && multi.members.contains(&b));
    let tags: Vec<&str> = multi.tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["amd64", "multi"]);
    assert_eq!(
        multi.last_pull,
        Some(500),
        "the newest record of any member"
    );
    // index, two manifests, the shared config, two layers
    assert_eq!(multi.blobs.len(), 6);
    assert_eq!(inv.sizes[&Digest::sha256_of(b"layer two")], 9);
}

#[tokio::test]
async fn blobs_not_stored_take_no_space() {
    let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let config = Digest::sha256_of(b"never fetched config");
    let layer = Digest::sha256_of(b"never fetched layer");
    let body = image(&config, &layer, "");
    reg.cache_manifest(
        &repo("up/x"),
        &"1".parse().expect("tag"),
        None,
        body.clone().into(),
    )
    .await
    .expect("cache manifest");
    let inv = reg.cached_images(&[repo("up/x")]).await.expect("inventory");
    assert_eq!(inv.images[0].blobs.len(), 1, "only the manifest is stored");
    assert_eq!(inv.sizes.values().sum::<u64>(), body.len() as u64);
}

#[tokio::test]
async fn eviction_removes_links_only_and_keeps_shared_children() {
    let (reg, v1, idx, [a, b]) = fixture().await;
    let cached = repo("cached");
    for d in [&v1, &idx, &a, &b] {
        reg.record_pull(&cached, d, 100).await.expect("record");
    }
    let inv = reg
        .cached_images(std::slice::from_ref(&cached))
        .await
        .expect("inventory");
    let multi = find(&inv.images, &idx).clone();
    // `a` is needed by another image: it stays, with its tag.
    let shared: HashSet<Digest> = [a.clone()].into();
    assert!(reg.evict_image(&multi, &shared).await.expect("evict"));
    let tags = reg.all_tags(&cached).await.expect("tags");
    assert_eq!(tags, ["amd64", "v1"]);
    for d in [&idx, &b] {
        let r = reg
            .get_manifest(&cached, &Reference::Digest(d.clone()))
            .await;
        assert!(
            matches!(r, Err(RegistryError::ManifestUnknown(_))),
            "{d} evicted"
        );
    }
    for d in [&a, &v1] {
        let r = reg
            .get_manifest(&cached, &Reference::Digest(d.clone()))
            .await;
        assert!(r.is_ok(), "{d} kept");
    }
    assert_eq!(reg.last_pull(&cached, &idx).await.expect("read"), None);
    assert_eq!(reg.last_pull(&cached, &a).await.expect("read"), Some(100));
    // Blobs and layer links stay for garbage collection to judge.
    let layer = Digest::sha256_of(b"layer three");
    assert_eq!(reg.stat_blob(&cached, &layer).await.expect("stat"), 11);
    let inv = reg.cached_images(&[cached]).await.expect("inventory");
    let roots: HashSet<&Digest> = inv.images.iter().map(|i| &i.root).collect();
    assert_eq!(
        roots,
        [&v1, &a].into(),
        "the shared child is an image of its own now"
    );
}

#[tokio::test]
async fn an_image_pulled_since_the_inventory_is_kept() {
    let (reg, v1, _, _) = fixture().await;
    let cached = repo("cached");
    reg.record_pull(&cached, &v1, 100).await.expect("record");
    let inv = reg
        .cached_images(std::slice::from_ref(&cached))
        .await
        .expect("inventory");
    let single = find(&inv.images, &v1).clone();
    reg.record_pull(&cached, &v1, 200)
        .await
        .expect("pulled again");
    assert!(!reg
        .evict_image(&single, &HashSet::new())
        .await
        .expect("evict"));
    assert!(reg
        .get_manifest(&cached, &"v1".parse().expect("tag"))
        .await
        .is_ok());
}

#[tokio::test]
async fn read_only_mode_refuses_eviction_and_records() {
    let (reg, v1, _, _) = fixture().await;
    let cached = repo("cached");
    let inv = reg
        .cached_images(std::slice::from_ref(&cached))
        .await
        .expect("inventory");
    reg.set_read_only(true);
    let single = find(&inv.images, &v1).clone();
    assert!(matches!(
        reg.evict_image(&single, &HashSet::new()).await,
        Err(RegistryError::ReadOnly)
    ));
    assert!(matches!(
        reg.record_pull(&cached, &v1, 1).await,
        Err(RegistryError::ReadOnly)
    ));
}

#[tokio::test]
async fn records_of_deleted_revisions_are_forgotten() {
    let (reg, v1, _, _) = fixture().await;
    let cached = repo("cached");
    let stale = Digest::sha256_of(b"a manifest deleted meanwhile");
    reg.record_pull(&cached, &stale, 1).await.expect("record");
    reg.record_pull(&cached, &v1, 1).await.expect("record");
    reg.cached_images(std::slice::from_ref(&cached))
        .await
        .expect("inventory");
    assert_eq!(reg.last_pull(&cached, &stale).await.expect("read"), None);
    assert_eq!(reg.last_pull(&cached, &v1).await.expect("read"), Some(1));
    assert!(paths::pull_record(&cached, &v1).contains("/_berth/pulled/cached/"));
}
