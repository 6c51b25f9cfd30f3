//! The garbage-collection correctness matrix: what is kept and what goes, with and without
//! `delete_untagged`, on one registry holding every kind of content. Its builders (`blob`,
//! `image`, `manifest`, ...) are shared with the retention tests.

use std::sync::Arc;

use berth_oci::{Digest, Reference, RepoName};
use berth_storage::InMemoryDriver;
use bytes::Bytes;

use crate::gc::GcOptions;
use crate::{Registry, RegistryOptions};

pub(crate) const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Fixture {
    reg: Arc<Registry>,
    tagged: Digest,
    untagged: Digest,
    index: Digest,
    children: [Digest; 2],
    live_artifact: Digest,
    dead_artifact: Digest,
    kept_blobs: Vec<Digest>,
    dead_blobs: Vec<Digest>,
}

pub(crate) fn repo(name: &str) -> RepoName {
    name.parse().expect("repo name")
}

fn tag(name: &str) -> Reference {
    name.parse().expect("tag")
}

pub(crate) async fn blob(reg: &Registry, name: &str, content: &str) -> Digest {
    let bytes = Bytes::from(content.to_owned());
    let digest = Digest::sha256_of(&bytes);
    let stream = Box::pin(futures_util::stream::iter([Ok(bytes)]));
    reg.put_blob(&repo(name), &digest, stream)
        .await
        .expect("put blob");
    digest
}

pub(crate) fn descriptor(media_type: &str, digest: &Digest, size: usize) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
}

/// An image manifest with one config and one layer (`extra` adds top-level fields).
pub(crate) fn image(config: &Digest, layer: &Digest, extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{IMAGE}","config":{},"layers":[{}]{extra}}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", config, 2),
        descriptor("application/vnd.oci.image.layer.v1.tar", layer, 1),
    )
}

pub(crate) async fn manifest(
    reg: &Registry,
    name: &str,
    reference: Option<&str>,
    body: String,
) -> Digest {
    let bytes = Bytes::from(body);
    let digest = Digest::sha256_of(&bytes);
    let reference = match reference {
        Some(t) => tag(t),
        None => Reference::Digest(digest.clone()),
    };
    reg.put_manifest(&repo(name), &reference, None, bytes)
        .await
        .expect("put manifest");
    digest
}

async fn fixture() -> Fixture {
    let reg = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let config = blob(&reg, "app", "{}").await;
    let shared = blob(&reg, "app", "shared layer").await;
    let tagged = manifest(&reg, "app", Some("v1"), image(&config, &shared, "")).await;

    // Untagged: pushed by digest only. Its own layer dies with it; the config is shared.
    let lonely = blob(&reg, "app", "only the untagged image uses this").await;
    let untagged = manifest(&reg, "app", None, image(&config, &lonely, "")).await;

    // A tag that moved: the old manifest becomes untagged.
    let old_layer = blob(&reg, "app", "old layer").await;
    let moved = manifest(&reg, "app", Some("moving"), image(&config, &old_layer, "")).await;
    manifest(&reg, "app", Some("moving"), image(&config, &shared, "")).await;

    // Artifacts: one refers to the tagged image (kept), one to the untagged one (removed).
    let subject = |d: &Digest| {
        format!(
            r#","artifactType":"application/example.sbom","subject":{}"#,
            descriptor(IMAGE, d, 1)
        )
    };
    let sbom = blob(&reg, "app", "sbom of v1").await;
    let live_artifact = manifest(&reg, "app", None, image(&config, &sbom, &subject(&tagged))).await;
    let dead_sbom = blob(&reg, "app", "sbom of the untagged image").await;
    let dead_artifact = manifest(
        &reg,
        "app",
        None,
        image(&config, &dead_sbom, &subject(&untagged)),
    )
    .await;

    // Multi-arch: only the index is tagged; its children must survive (registry:2 bug).
    let mut children = Vec::new();
    let mut child_layers = Vec::new();
    for arch in ["amd64", "arm64"] {
        let cfg = blob(&reg, "multi", "{}").await;
        let layer = blob(&reg, "multi", &format!("layer for {arch}")).await;
        child_layers.push(layer.clone());
        children.push(manifest(&reg, "multi", None, image(&cfg, &layer, "")).await);
    }
    let index_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{},{}]}}"#,
        descriptor(IMAGE, &children[0], 1),
        descriptor(IMAGE, &children[1], 1)
    );
    let index = manifest(&reg, "multi", Some("latest"), index_body).await;

    // The shared layer is also used by a tagged image in another repository.
    blob(&reg, "other", "{}").await;
    blob(&reg, "other", "shared layer").await;
    manifest(&reg, "other", Some("v1"), image(&config, &shared, "")).await;

    // An orphan: uploaded, never referenced.
    let orphan = blob(&reg, "app", "uploaded and abandoned").await;

    let mut kept_blobs = vec![config, shared, sbom, tagged.clone(), index.clone()];
    kept_blobs.extend(child_layers);
    kept_blobs.extend(children.iter().cloned());
    kept_blobs.push(live_artifact.clone());
    let dead_blobs = vec![
        lonely,
        old_layer,
        dead_sbom,
        orphan,
        untagged.clone(),
        moved,
        dead_artifact.clone(),
    ];
    Fixture {
        reg,
        tagged,
        untagged,
        index,
        children: [children[0].clone(), children[1].clone()],
        live_artifact,
        dead_artifact,
        kept_blobs,
        dead_blobs,
    }
}

async fn blob_exists(reg: &Registry, digest: &Digest) -> bool {
    reg.blob_size(digest).await.expect("stat").is_some()
}

#[tokio::test]
async fn delete_untagged_keeps_what_tags_reach_and_removes_the_rest() {
    let f = fixture().await;
    let options = GcOptions {
        delete_untagged: true,
        dry_run: true,
    };
    let dry = f.reg.garbage_collect(options).await.expect("dry run");
    let mut removed: Vec<Digest> = dry.blobs_removed.iter().map(|(d, _)| d.clone()).collect();
    removed.sort();
    let mut expected = f.dead_blobs.clone();
    expected.sort();
    assert_eq!(removed, expected, "dry run names exactly the dead blobs");
    assert_eq!(
        dry.manifests_removed.len(),
        3,
        "{:?}",
        dry.manifests_removed
    );
    for d in &f.dead_blobs {
        assert!(blob_exists(&f.reg, d).await, "dry run removed {d}");
    }

    let report = f
        .reg
        .garbage_collect(GcOptions {
            dry_run: false,
            ..options
        })
        .await
        .expect("gc");
    assert_eq!(report.blobs_removed.len(), f.dead_blobs.len());
    assert_eq!(report.bytes_freed(), dry.bytes_freed());
    assert!(report.bytes_freed() > 0);
    for d in &f.kept_blobs {
        assert!(blob_exists(&f.reg, d).await, "live blob {d} was removed");
    }
    for d in &f.dead_blobs {
        assert!(!blob_exists(&f.reg, d).await, "dead blob {d} survived");
    }

    let app = repo("app");
    for (name, reference) in [
        ("app", "v1"),
        ("app", "moving"),
        ("multi", "latest"),
        ("other", "v1"),
    ] {
        f.reg
            .get_manifest(&repo(name), &tag(reference))
            .await
            .unwrap_or_else(|e| panic!("{name}:{reference} no longer pulls: {e}"));
    }
    let multi = repo("multi");
    for d in f.children.iter().chain([&f.index]) {
        f.reg
            .get_manifest(&multi, &Reference::Digest(d.clone()))
            .await
            .expect("multi-arch child survives");
    }
    for d in [&f.untagged, &f.dead_artifact] {
        assert!(f
            .reg
            .get_manifest(&app, &Reference::Digest(d.clone()))
            .await
            .is_err());
    }
    let referrers = f
        .reg
        .referrers(&app, &f.tagged, None)
        .await
        .expect("referrers");
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].digest, f.live_artifact);
    let gone = f
        .reg
        .referrers(&app, &f.untagged, None)
        .await
        .expect("referrers");
    assert!(gone.is_empty(), "referrers index still lists {gone:?}");

    let again = f
        .reg
        .garbage_collect(GcOptions {
            dry_run: false,
            ..options
        })
        .await
        .expect("second gc");
    assert!(again.blobs_removed.is_empty() && again.manifests_removed.is_empty());
}

#[tokio::test]
async fn without_delete_untagged_only_unreferenced_blobs_go() {
    let f = fixture().await;
    let report = f
        .reg
        .garbage_collect(GcOptions::default())
        .await
        .expect("gc");
    assert!(report.manifests_removed.is_empty());
    let removed: Vec<&Digest> = report.blobs_removed.iter().map(|(d, _)| d).collect();
    assert_eq!(
        removed,
        [f.dead_blobs.get(3).expect("orphan")],
        "only the orphan"
    );
    let app = repo("app");
    f.reg
        .get_manifest(&app, &Reference::Digest(f.untagged.clone()))
        .await
        .expect("untagged manifests stay without --delete-untagged");
}

#[tokio::test]
async fn read_only_mode_allows_only_a_dry_run() {
    let f = fixture().await;
    f.reg.set_read_only(true);
    let dry = GcOptions {
        delete_untagged: true,
        dry_run: true,
    };
    assert!(f.reg.garbage_collect(dry).await.is_ok());
    let real = GcOptions {
        dry_run: false,
        ..dry
    };
    assert!(f.reg.garbage_collect(real).await.is_err());
}
