//! Export and import on the in-memory driver: a multi-arch index with two platform images and
//! a chain of referrers goes out and comes back byte for byte; damaged layouts are refused
//! with nothing tagged; damaged storage is never exported.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use berth_oci::{Digest, Reference, Tag};
use berth_storage::{paths, InMemoryDriver};
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::Value;

use super::{ImportOptions, LayoutError, Selection, REF_NAME};
use crate::gc_tests::{blob, descriptor, manifest, repo, IMAGE, INDEX};
use crate::{Registry, RegistryError, RegistryOptions};

struct Fixture {
    reg: Arc<Registry>,
    index: Digest,
    children: Vec<Digest>,
    /// A signature of the index, and a signature of that signature.
    sig: Digest,
    sig2: Digest,
    /// Another tagged image, not reachable from the index.
    other: Digest,
    /// Configs and layers the index and its referrers use.
    blobs: BTreeSet<Digest>,
    other_layer: Digest,
}

fn new_registry() -> Arc<Registry> {
    Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default())
}

/// A pushed blob and its descriptor.
async fn pushed(reg: &Registry, media_type: &str, content: &str) -> (Digest, String) {
    let digest = blob(reg, "app", content).await;
    let desc = descriptor(media_type, &digest, content.len());
    (digest, desc)
}

/// An image with its own config and layer; returns the manifest digest, its descriptor, and
/// the blobs it uses.
async fn image(reg: &Registry, seed: &str, tag: Option<&str>) -> (Digest, String, [Digest; 2]) {
    let config = format!(r#"{{"architecture":"{seed}","os":"linux"}}"#);
    let (c, cdesc) = pushed(reg, "application/vnd.oci.image.config.v1+json", &config).await;
    let (l, ldesc) = pushed(reg, "application/vnd.oci.image.layer.v1.tar", seed).await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{IMAGE}","config":{cdesc},"layers":[{ldesc}]}}"#
    );
    let desc = descriptor(IMAGE, &Digest::sha256_of(body.as_bytes()), body.len());
    let digest = manifest(reg, "app", tag, body).await;
    (digest, desc, [c, l])
}

/// An artifact referring to `subject`.
async fn artifact(reg: &Registry, subject: &str, content: &str) -> (Digest, String, [Digest; 2]) {
    let (c, cdesc) = pushed(reg, "application/vnd.oci.empty.v1+json", "{}").await;
    let (l, ldesc) = pushed(reg, "application/octet-stream", content).await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{IMAGE}","artifactType":"application/example.sig","config":{cdesc},"layers":[{ldesc}],"subject":{subject}}}"#
    );
    let desc = descriptor(IMAGE, &Digest::sha256_of(body.as_bytes()), body.len());
    let digest = manifest(reg, "app", None, body).await;
    (digest, desc, [c, l])
}

async fn fixture() -> Fixture {
    let reg = new_registry();
    let (amd, amd_desc, amd_blobs) = image(&reg, "amd64", None).await;
    let (arm, arm_desc, arm_blobs) = image(&reg, "arm64", None).await;
    let index_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{amd_desc},{arm_desc}]}}"#
    );
    let index_desc = descriptor(
        INDEX,
        &Digest::sha256_of(index_body.as_bytes()),
        index_body.len(),
    );
    let index = manifest(&reg, "app", Some("v1"), index_body).await;
    let (sig, sig_desc, sig_blobs) = artifact(&reg, &index_desc, "signature of the index").await;
    let (sig2, _, sig2_blobs) = artifact(&reg, &sig_desc, "signature of the signature").await;
    let (other, _, [_, other_layer]) = image(&reg, "other", Some("other")).await;
    let blobs = [amd_blobs, arm_blobs, sig_blobs, sig2_blobs]
        .into_iter()
        .flatten()
        .collect();
    Fixture {
        reg,
        index,
        children: vec![amd, arm],
        sig,
        sig2,
        other,
        blobs,
        other_layer,
    }
}

fn tag(name: &str) -> Tag {
    name.parse().expect("tag")
}

async fn read_all(reg: &Registry, digest: &Digest) -> Vec<u8> {
    let stream = reg.read_blob(digest, 0, None).await.expect("read blob");
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("blob content");
    chunks.concat()
}

fn index_json(dir: &Path) -> Value {
    let body = std::fs::read(dir.join("index.json")).expect("index.json");
    serde_json::from_slice(&body).expect("index.json is JSON")
}

/// `(ref name, digest)` of every `index.json` entry.
fn entries(dir: &Path) -> Vec<(Option<String>, String)> {
    let index = index_json(dir);
    let list = index["manifests"].as_array().expect("manifests").clone();
    list.iter()
        .map(|e| {
            let name = e["annotations"][REF_NAME].as_str().map(str::to_owned);
            (name, e["digest"].as_str().expect("digest").to_owned())
        })
        .collect()
}

fn blob_file(dir: &Path, digest: &Digest) -> std::path::PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

#[tokio::test]
async fn round_trip_keeps_every_platform_and_referrer() {
    let f = fixture().await;
    let out = tempfile::tempdir().expect("tempdir");
    let report = f
        .reg
        .export_layout(&repo("app"), &Selection::Tag(tag("v1")), out.path())
        .await
        .expect("export");
    assert_eq!(report.exported, vec![(Some(tag("v1")), f.index.clone())]);
    assert_eq!(report.referrers, {
        let mut r = vec![f.sig.clone(), f.sig2.clone()];
        r.sort();
        r
    });
    assert_eq!(report.manifests, 5, "index, two platforms, two referrers");
    assert_eq!(report.blobs, f.blobs.len());

    let layout = std::fs::read_to_string(out.path().join("oci-layout")).expect("oci-layout");
    assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
    let listed = entries(out.path());
    assert_eq!(listed[0], (Some("v1".to_owned()), f.index.to_string()));
    let untagged: BTreeSet<String> = listed[1..]
        .iter()
        .map(|(name, d)| {
            assert!(name.is_none(), "referrers have no ref name");
            d.clone()
        })
        .collect();
    assert_eq!(untagged, [f.sig.to_string(), f.sig2.to_string()].into());
    // Every file is named by what it hashes to; the other image stayed out.
    let mut names = BTreeSet::new();
    for file in std::fs::read_dir(out.path().join("blobs/sha256")).expect("blobs") {
        let file = file.expect("entry");
        let content = std::fs::read(file.path()).expect("blob");
        let name = file.file_name().to_string_lossy().into_owned();
        assert_eq!(Digest::sha256_of(&content).hex(), name);
        names.insert(name);
    }
    assert_eq!(names.len(), 5 + f.blobs.len());
    assert!(!names.contains(f.other_layer.hex()) && !names.contains(f.other.hex()));
    assert!(
        std::fs::read_dir(out.path()).expect("dir").all(|e| !e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with(".berth")),
        "no temporary file is left"
    );

    let b = new_registry();
    let copy = repo("mirror/app");
    let imported = b
        .import_layout(out.path(), &copy, &ImportOptions::default())
        .await
        .expect("import");
    assert_eq!(imported.tagged, vec![(tag("v1"), f.index.clone())]);
    assert_eq!(imported.manifests.len(), 5);
    assert_eq!(imported.blobs, f.blobs.len());
    let pos = |d: &Digest| {
        imported
            .manifests
            .iter()
            .position(|m| m == d)
            .expect("stored")
    };
    assert!(
        f.children.iter().all(|c| pos(c) < pos(&f.index)),
        "children first"
    );
    assert!(
        pos(&f.index) < pos(&f.sig) && pos(&f.sig) < pos(&f.sig2),
        "subjects first"
    );

    assert_eq!(
        b.all_tags(&copy).await.expect("tags"),
        vec!["v1".to_owned()]
    );
    for digest in [&f.index, &f.sig, &f.sig2].into_iter().chain(&f.children) {
        let reference = Reference::Digest(digest.clone());
        let theirs = f
            .reg
            .get_manifest(&repo("app"), &reference)
            .await
            .expect("source");
        let ours = b.get_manifest(&copy, &reference).await.expect("imported");
        assert_eq!(ours.body, theirs.body);
        assert_eq!(ours.media_type, theirs.media_type);
    }
    for digest in &f.blobs {
        assert_eq!(read_all(&b, digest).await, read_all(&f.reg, digest).await);
        b.stat_blob(&copy, digest)
            .await
            .expect("linked in the repository");
    }
    let refs = b.referrers(&copy, &f.index, None).await.expect("referrers");
    assert_eq!(
        refs.iter().map(|r| &r.digest).collect::<Vec<_>>(),
        vec![&f.sig]
    );
    let refs = b.referrers(&copy, &f.sig, None).await.expect("referrers");
    assert_eq!(
        refs.iter().map(|r| &r.digest).collect::<Vec<_>>(),
        vec![&f.sig2]
    );
}

#[tokio::test]
async fn every_tag_by_default_and_a_digest_with_a_new_tag() {
    let f = fixture().await;
    let all = tempfile::tempdir().expect("tempdir");
    let report = f
        .reg
        .export_layout(&repo("app"), &Selection::AllTags, all.path())
        .await
        .expect("export all tags");
    assert_eq!(
        report.exported,
        vec![
            (Some(tag("other")), f.other.clone()),
            (Some(tag("v1")), f.index.clone())
        ]
    );
    let b = new_registry();
    b.import_layout(all.path(), &repo("app"), &ImportOptions::default())
        .await
        .expect("import");
    assert_eq!(
        b.all_tags(&repo("app")).await.expect("tags"),
        vec!["other", "v1"]
    );

    // One platform by digest: no ref name in the layout, tagged on import.
    let one = tempfile::tempdir().expect("tempdir");
    let child = f.children[1].clone();
    f.reg
        .export_layout(&repo("app"), &Selection::Digest(child.clone()), one.path())
        .await
        .expect("export by digest");
    assert_eq!(entries(one.path()), vec![(None, child.to_string())]);
    let c = new_registry();
    let options = ImportOptions {
        ref_name: None,
        tag: Some(tag("arm")),
    };
    let imported = c
        .import_layout(one.path(), &repo("app"), &options)
        .await
        .expect("import with a tag");
    assert_eq!(imported.tagged, vec![(tag("arm"), child.clone())]);
    let got = c
        .resolve_manifest(&repo("app"), &Reference::Tag(tag("arm")))
        .await
        .expect("tagged");
    assert_eq!(got, child);
}

#[tokio::test]
async fn a_ref_name_selects_one_image_and_its_referrers() {
    let f = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    f.reg
        .export_layout(&repo("app"), &Selection::AllTags, dir.path())
        .await
        .expect("export");
    let b = new_registry();
    let options = ImportOptions {
        ref_name: Some("v1".into()),
        tag: Some(tag("stable")),
    };
    let imported = b
        .import_layout(dir.path(), &repo("app"), &options)
        .await
        .expect("import v1 as stable");
    assert_eq!(imported.tagged, vec![(tag("stable"), f.index.clone())]);
    assert_eq!(imported.manifests.len(), 5, "the referrers came along");
    assert!(!imported.manifests.contains(&f.other));

    let unknown = ImportOptions {
        ref_name: Some("nope".into()),
        tag: None,
    };
    let err = b.import_layout(dir.path(), &repo("x"), &unknown).await;
    assert!(
        matches!(&err, Err(LayoutError::Selection(m)) if m.contains("other, v1")),
        "{err:?}"
    );
    // Two images and one tag: ambiguous, refused before anything is written.
    let ambiguous = ImportOptions {
        ref_name: None,
        tag: Some(tag("t")),
    };
    let err = b.import_layout(dir.path(), &repo("y"), &ambiguous).await;
    assert!(matches!(err, Err(LayoutError::Selection(_))), "{err:?}");
    assert!(matches!(
        b.all_tags(&repo("y")).await,
        Err(RegistryError::NameUnknown(_))
    ));
}

/// Exports v1 into a fresh directory.
async fn exported(f: &Fixture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    f.reg
        .export_layout(&repo("app"), &Selection::Tag(tag("v1")), dir.path())
        .await
        .expect("export");
    dir
}

#[tokio::test]
async fn a_corrupt_blob_is_refused_and_nothing_is_tagged() {
    let f = fixture().await;
    let dir = exported(&f).await;
    // Same length, other content: only hashing can tell.
    let layer = f.blobs.iter().nth(1).expect("a blob").clone();
    let path = blob_file(dir.path(), &layer);
    let mut content = std::fs::read(&path).expect("blob");
    content[0] ^= 0x20;
    std::fs::write(&path, &content).expect("corrupt it");

    let b = new_registry();
    let err = b
        .import_layout(dir.path(), &repo("app"), &ImportOptions::default())
        .await;
    match &err {
        Err(e @ LayoutError::Corrupt { path: p, actual }) => {
            assert_eq!(p, &path);
            assert_eq!(actual, &Digest::sha256_of(&content));
            assert!(e.to_string().contains("nothing was tagged"), "{e}");
        }
        other => panic!("expected a corrupt-blob error, got {other:?}"),
    }
    assert!(b
        .all_tags(&repo("app"))
        .await
        .unwrap_or_default()
        .is_empty());
    let manifest = b
        .resolve_manifest(&repo("app"), &Reference::Digest(f.index.clone()))
        .await;
    assert!(matches!(manifest, Err(RegistryError::ManifestUnknown(_))));
    assert!(
        b.blob_size(&layer).await.expect("stat").is_none(),
        "not published"
    );

    // A corrupt manifest is found before anything at all is written.
    let dir = exported(&f).await;
    let child = blob_file(dir.path(), &f.children[0]);
    let mut body = std::fs::read(&child).expect("manifest");
    let last = body.len() - 1;
    body[last] = b' ';
    std::fs::write(&child, &body).expect("corrupt it");
    let c = new_registry();
    let err = c
        .import_layout(dir.path(), &repo("app"), &ImportOptions::default())
        .await;
    assert!(matches!(err, Err(LayoutError::Corrupt { .. })), "{err:?}");
    assert!(matches!(
        c.all_tags(&repo("app")).await,
        Err(RegistryError::NameUnknown(_))
    ));
}

#[tokio::test]
async fn a_missing_or_truncated_blob_is_refused_before_anything_is_written() {
    let f = fixture().await;
    for damage in ["remove", "truncate"] {
        let dir = exported(&f).await;
        let layer = f.blobs.iter().next_back().expect("a blob");
        let path = blob_file(dir.path(), layer);
        if damage == "remove" {
            std::fs::remove_file(&path).expect("remove");
        } else {
            let content = std::fs::read(&path).expect("blob");
            std::fs::write(&path, &content[..content.len() - 1]).expect("truncate");
        }
        let b = new_registry();
        let err = b
            .import_layout(dir.path(), &repo("app"), &ImportOptions::default())
            .await;
        let Err(LayoutError::Invalid { path: p, reason }) = &err else {
            panic!("{damage}: expected an invalid layout, got {err:?}");
        };
        assert_eq!(p, &path, "{damage}");
        assert!(reason.contains("nothing was tagged"), "{damage}: {reason}");
        assert!(
            matches!(
                b.all_tags(&repo("app")).await,
                Err(RegistryError::NameUnknown(_))
            ),
            "{damage}: nothing was written"
        );
    }
}

#[tokio::test]
async fn export_refuses_foreign_directories_and_damaged_storage() {
    let f = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
    let err = f
        .reg
        .export_layout(&repo("app"), &Selection::Tag(tag("v1")), dir.path())
        .await;
    assert!(matches!(err, Err(LayoutError::Invalid { .. })), "{err:?}");
    assert!(!dir.path().join("oci-layout").exists());

    // A second export into a layout adds to it.
    let dir = exported(&f).await;
    f.reg
        .export_layout(&repo("app"), &Selection::Tag(tag("other")), dir.path())
        .await
        .expect("export into the layout");
    let names: Vec<Option<String>> = entries(dir.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.iter().flatten().collect::<Vec<_>>(),
        vec!["v1", "other"]
    );

    // A stored blob that no longer matches its digest is not exported, and no index.json
    // names anything.
    let layer = f.blobs.iter().next().expect("a blob").clone();
    let content = read_all(&f.reg, &layer).await;
    let mut damaged = content.clone();
    damaged[0] ^= 1;
    f.reg
        .driver()
        .put_content(&paths::blob_data(&layer), Bytes::from(damaged))
        .await
        .expect("damage storage");
    let out = tempfile::tempdir().expect("tempdir");
    let err = f
        .reg
        .export_layout(&repo("app"), &Selection::Tag(tag("v1")), out.path())
        .await;
    assert!(
        matches!(err, Err(LayoutError::Registry(RegistryError::Corrupt(_)))),
        "{err:?}"
    );
    assert!(!out.path().join("index.json").exists());
    assert!(!blob_file(out.path(), &layer).exists());
}
