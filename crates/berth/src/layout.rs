//! `berth export` and `berth import`: OCI image layouts in and out of the storage, for
//! backups, air-gapped transfer and seeding a registry. Both work on the storage directly, like
//! `berth du`; both are safe while the registry serves (export only reads; import publishes
//! every blob through the same verified, atomic path as a push).

use std::path::Path;

use anyhow::{bail, Context};
use berth_config::Loaded;
use berth_oci::{Digest, RepoName, Tag};
use berth_registry::layout::{ImportOptions, LayoutError, Selection};
use berth_registry::RegistryError;

use crate::du::human;
use crate::setup;

/// `berth export`: writes `image` (NAME, NAME:TAG or NAME@DIGEST) into the layout `dir`.
pub async fn export(loaded: Loaded, image: &str, dir: &Path) -> anyhow::Result<()> {
    let (repo, selection) = parse_image(image)?;
    let registry = setup::registry(&loaded.config).await?;
    let report = registry
        .export_layout(&repo, &selection, dir)
        .await
        .with_context(|| format!("cannot export {image} to {}", dir.display()))?;
    for (tag, digest) in &report.exported {
        match tag {
            Some(tag) => println!("exported {repo}:{tag} ({digest})"),
            None => println!("exported {repo}@{digest}"),
        }
    }
    for digest in &report.referrers {
        println!("exported referrer {digest}");
    }
    println!(
        "{}: {} manifests and {} blobs, {} written",
        dir.display(),
        report.manifests,
        report.blobs,
        human(report.bytes_written)
    );
    Ok(())
}

/// `berth import`: stores the layout `dir` in `name` (NAME, or NAME:TAG to tag the one image).
pub async fn import(
    loaded: Loaded,
    dir: &Path,
    name: &str,
    ref_name: Option<String>,
) -> anyhow::Result<()> {
    let (repo, selection) = parse_image(name)?;
    let tag = match selection {
        Selection::AllTags => None,
        Selection::Tag(tag) => Some(tag),
        Selection::Digest(_) => bail!("{name}: import into NAME or NAME:TAG, not a digest"),
    };
    let registry = setup::registry(&loaded.config).await?;
    let options = ImportOptions { ref_name, tag };
    let report = match registry.import_layout(dir, &repo, &options).await {
        Err(LayoutError::Registry(RegistryError::ReadOnly)) => bail!(
            "cannot import into {repo}: storage.maintenance.readonly is enabled in this configuration, and import writes"
        ),
        other => other.with_context(|| format!("cannot import {} into {repo}", dir.display()))?,
    };
    for (tag, digest) in &report.tagged {
        println!("tagged {repo}:{tag} ({digest})");
    }
    println!(
        "{repo}: {} manifests and {} blobs ({}) stored from {}",
        report.manifests.len(),
        report.blobs,
        human(report.blob_bytes),
        dir.display()
    );
    Ok(())
}

/// `NAME`, `NAME:TAG` or `NAME@DIGEST`; a name with a registry host is refused with a hint.
fn parse_image(s: &str) -> anyhow::Result<(RepoName, Selection)> {
    let (name, selection) = if let Some((name, digest)) = s.split_once('@') {
        let digest: Digest = digest
            .parse()
            .with_context(|| format!("{s}: invalid digest"))?;
        (name, Selection::Digest(digest))
    } else {
        match s.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => {
                let tag: Tag = tag.parse().with_context(|| format!("{s}: invalid tag"))?;
                (name, Selection::Tag(tag))
            }
            _ => (s, Selection::AllTags),
        }
    };
    let repo: RepoName = name.parse().with_context(|| {
        format!("{s}: invalid repository name (give it as the registry stores it, without a host: library/alpine, not docker.io/library/alpine)")
    })?;
    Ok((repo, selection))
}

#[cfg(test)]
mod tests {
    use berth_registry::layout::Selection;

    use super::parse_image;

    #[test]
    fn image_references() {
        let (repo, sel) = parse_image("team/app").expect("name");
        assert_eq!((repo.as_str(), sel), ("team/app", Selection::AllTags));
        let (repo, sel) = parse_image("team/app:v1.2").expect("tag");
        assert_eq!(repo.as_str(), "team/app");
        assert_eq!(sel, Selection::Tag("v1.2".parse().expect("tag")));
        let digest = format!("sha256:{}", "a".repeat(64));
        let (_, sel) = parse_image(&format!("app@{digest}")).expect("digest");
        assert_eq!(sel, Selection::Digest(digest.parse().expect("digest")));
        for bad in [
            "localhost:5000/app",
            "localhost:5000/app:v1",
            "App",
            "app:-x",
            "app@sha256:zz",
            "",
        ] {
            assert!(parse_image(bad).is_err(), "{bad:?} accepted");
        }
    }
}
