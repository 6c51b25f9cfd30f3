//! The copy of one image, bottom-up: blobs (several at a time), then child manifests by
//! digest, then referrers, then the tagged manifest, then the target's commit. What the
//! target has is skipped: a manifest by digest (with everything under it, since nothing is
//! stored before what it references), a blob by `HEAD`. So an interrupted copy re-run moves
//! only the rest, and an unchanged image costs a few `HEAD`s and no upload. A dry run walks
//! the same graph and counts what would move.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use berth_oci::{Descriptor, Digest, Manifest, ManifestKind};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};

use crate::endpoint::{ManifestBlob, Source, Target};
use crate::known::{Arrival, KnownBlobs};
use crate::platform::{self, Platform};
use crate::progress::{human, Action, Progress};
use crate::verify::verified;
use crate::Failure;

/// Referrers of referrers are followed this deep (a signature of an SBOM of an image).
const MAX_REFERRER_DEPTH: usize = 3;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy only this platform of an index (the child becomes the copied image).
    pub platform: Option<Platform>,
    /// Copy referrers (signatures, SBOMs) of the image and of its children.
    pub referrers: bool,
    /// Count what would move; write nothing.
    pub dry_run: bool,
    /// Blobs transferred at the same time.
    pub jobs: usize,
    /// Blobs sent to destination registries by other copies of the same run (a sync), so a
    /// shared layer is uploaded once and mounted elsewhere.
    pub known: Option<Arc<KnownBlobs>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            referrers: false,
            dry_run: false,
            jobs: 4,
            known: None,
        }
    }
}

/// What a copy did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The digest of the copied image.
    pub digest: String,
    /// The target's tag already pointed at this image.
    pub unchanged: bool,
    /// Blobs transferred (or that would be).
    pub blobs_copied: u64,
    /// Their bytes.
    pub bytes_copied: u64,
    /// Blobs the target had.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Manifests written (or that would be).
    pub manifests_written: u64,
    /// Referrers copied (or that would be).
    pub referrers: u64,
    /// Nothing was written.
    pub dry_run: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would copy" } else { "copied" };
        if self.unchanged {
            write!(f, "unchanged ({}); ", self.digest)?;
        }
        write!(
            f,
            "{verb} {} blobs ({}) and {} manifests, {} referrers; {} blobs already there, {} mounted; {}",
            self.blobs_copied,
            human(self.bytes_copied),
            self.manifests_written,
            self.referrers,
            self.blobs_skipped,
            self.blobs_mounted,
            self.digest
        )
    }
}

fn content(e: impl fmt::Display) -> Failure {
    Failure::Content(e.to_string())
}

/// One copy in progress.
struct Run<'a> {
    src: &'a dyn Source,
    dst: &'a dyn Target,
    options: &'a CopyOptions,
    progress: &'a Progress,
    name: &'a str,
    summary: Mutex<Summary>,
    seen: Mutex<HashSet<Digest>>,
}

/// Copies the image `src` names to `dst`; `name` labels progress lines.
pub async fn copy_image(
    src: &dyn Source,
    dst: &dyn Target,
    options: &CopyOptions,
    progress: &Progress,
    name: &str,
) -> crate::Result<Summary> {
    let run = Run {
        src,
        dst,
        options,
        progress,
        name,
        summary: Mutex::new(Summary {
            dry_run: options.dry_run,
            ..Summary::default()
        }),
        seen: Mutex::new(HashSet::new()),
    };
    let mut root = src.root().await?;
    let platform = options
        .platform
        .clone()
        .or_else(|| dst.single_image().then(Platform::host));
    if let Some(p) = platform {
        if parse(&root)?.kind == ManifestKind::Index {
            let child = platform::select(&root.body, &p)
                .ok_or_else(|| Failure::Source(format!("the image has no {p} platform")))?;
            root = src.manifest(&child).await?;
        }
    }
    let unchanged = dst.tagged().await?.as_ref() == Some(&root.digest);
    if unchanged {
        progress.manifest(name, &root.digest.to_string(), "image", Action::Skipped);
    } else if dst.has_manifest(&root.digest).await? {
        // Stored by an interrupted run (or under another tag): only the tag is missing.
        progress.manifest(name, &root.digest.to_string(), "content", Action::Skipped);
    } else {
        run.deps(&root).await?;
    }
    if options.referrers {
        run.referrers_of(&root).await?;
    }
    if !unchanged {
        if !options.dry_run {
            dst.put_manifest(&root, true).await?;
        }
        run.count(|s| s.manifests_written += 1);
        progress.manifest(name, &root.digest.to_string(), "image", run.wrote());
    }
    if !options.dry_run {
        dst.commit().await?;
    }
    let mut summary = run.summary.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.digest = root.digest.to_string();
    summary.unchanged = unchanged;
    Ok(summary)
}

fn parse(m: &ManifestBlob) -> crate::Result<Manifest> {
    Manifest::parse(&m.body, Some(&m.media_type)).map_err(content)
}

impl Run<'_> {
    fn count(&self, f: impl FnOnce(&mut Summary)) {
        f(&mut self.summary.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn wrote(&self) -> Action {
        if self.options.dry_run {
            Action::WouldCopy
        } else {
            Action::Copied
        }
    }

    /// Everything `m` references, stored at the target before `m` is.
    fn deps<'b>(&'b self, m: &'b ManifestBlob) -> BoxFuture<'b, crate::Result<()>> {
        Box::pin(async move {
            let parsed = parse(m)?;
            match parsed.kind {
                ManifestKind::Index => {
                    for child in &parsed.manifests {
                        self.child(child).await?;
                    }
                    Ok(())
                }
                ManifestKind::Image => {
                    let blobs: Vec<Descriptor> = parsed
                        .config
                        .iter()
                        .chain(&parsed.layers)
                        .filter(|d| !d.is_foreign())
                        .cloned()
                        .collect();
                    futures_util::stream::iter(blobs)
                        .map(|d| async move { self.blob(&d).await })
                        .buffer_unordered(self.options.jobs.max(1))
                        .try_collect::<Vec<()>>()
                        .await
                        .map(drop)
                }
                ManifestKind::Schema1 => Err(Failure::Content(format!(
                    "{} is a Docker schema 1 manifest, which is not copied (its digest cannot be kept)",
                    m.digest
                ))),
            }
        })
    }

    /// A child manifest of an index, stored by digest after its own content.
    async fn child(&self, descriptor: &Descriptor) -> crate::Result<()> {
        let digest = descriptor.digest.to_string();
        if self.dst.has_manifest(&descriptor.digest).await? {
            self.progress
                .manifest(self.name, &digest, "manifest", Action::Skipped);
            return Ok(());
        }
        let m = self.src.manifest(descriptor).await?;
        self.deps(&m).await?;
        if !self.options.dry_run {
            self.dst.put_manifest(&m, false).await?;
        }
        self.count(|s| s.manifests_written += 1);
        self.progress
            .manifest(self.name, &digest, "manifest", self.wrote());
        Ok(())
    }

    async fn blob(&self, d: &Descriptor) -> crate::Result<()> {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.digest.clone());
        if !first {
            return Ok(());
        }
        let digest = d.digest.to_string();
        if self.dst.has_blob(d).await? {
            self.count(|s| s.blobs_skipped += 1);
            self.progress
                .blob(self.name, &digest, d.size, Action::Skipped);
            return Ok(());
        }
        if self.options.dry_run {
            self.count(|s| {
                s.blobs_copied += 1;
                s.bytes_copied += d.size;
            });
            self.progress
                .blob(self.name, &digest, d.size, Action::WouldCopy);
            return Ok(());
        }
        if let (Some((src_host, src_repo)), Some((dst_host, dst_repo))) =
            (self.src.registry(), self.dst.registry())
        {
            if src_host == dst_host && src_repo != dst_repo && self.dst.mount(d, src_repo).await? {
                self.count(|s| s.blobs_mounted += 1);
                self.progress
                    .blob(self.name, &digest, d.size, Action::Mounted);
                return Ok(());
            }
        }
        if let (Some(known), Some((host, repo))) = (&self.options.known, self.dst.registry()) {
            let arrival = known
                .once(host, repo, &d.digest, || self.transfer(d))
                .await?;
            match arrival {
                Arrival::Sent => {}
                // Sent to another repository by another image of this run: mount it from
                // there, or send it after all if the registry will not mount.
                Arrival::ElsewhereIn(from) if from != repo && self.dst.mount(d, &from).await? => {
                    self.count(|s| s.blobs_mounted += 1);
                    self.progress
                        .blob(self.name, &digest, d.size, Action::Mounted);
                    return Ok(());
                }
                Arrival::ElsewhereIn(_) => self.transfer(d).await?,
            }
        } else {
            self.transfer(d).await?;
        }
        self.count(|s| {
            s.blobs_copied += 1;
            s.bytes_copied += d.size;
        });
        self.progress
            .blob(self.name, &digest, d.size, Action::Copied);
        Ok(())
    }

    /// Streams a blob from the source to the target, verified on the way.
    async fn transfer(&self, d: &Descriptor) -> crate::Result<()> {
        let stream = self.src.blob(d).await?;
        let meter = self.progress.meter(&d.digest.to_string(), d.size);
        self.dst.put_blob(d, meter.count(verified(stream, d))).await
    }

    /// Referrers of the image and of each of its children.
    async fn referrers_of(&self, root: &ManifestBlob) -> crate::Result<()> {
        let mut subjects = vec![root.digest.clone()];
        let parsed = parse(root)?;
        subjects.extend(parsed.manifests.iter().map(|d| d.digest.clone()));
        for subject in subjects {
            self.referrers(subject, 0).await?;
        }
        Ok(())
    }

    fn referrers(&self, subject: Digest, depth: usize) -> BoxFuture<'_, crate::Result<()>> {
        Box::pin(async move {
            if depth > MAX_REFERRER_DEPTH {
                return Ok(());
            }
            for r in self.src.referrers(&subject).await? {
                let digest = r.digest.to_string();
                if self.dst.has_manifest(&r.digest).await? {
                    self.progress
                        .manifest(self.name, &digest, "referrer", Action::Skipped);
                } else {
                    let m = self.src.manifest(&r).await?;
                    self.deps(&m).await?;
                    if !self.options.dry_run {
                        self.dst.put_referrer(&m, &subject).await?;
                    }
                    self.count(|s| s.referrers += 1);
                    self.progress
                        .manifest(self.name, &digest, "referrer", self.wrote());
                }
                self.referrers(r.digest.clone(), depth + 1).await?;
            }
            Ok(())
        })
    }
}
