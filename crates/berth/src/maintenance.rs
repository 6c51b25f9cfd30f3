//! Offline maintenance commands that work on the storage directly, like registry:2's
//! `registry garbage-collect`: run them with the registry stopped or in read-only mode. The
//! offline collector also empties the online collector's trash (referenced entries go back,
//! the rest is deleted), which is only safe because nothing is being pushed meanwhile.

use anyhow::Context;
use berth_config::Loaded;
use berth_registry::gc::GcOptions;

use crate::setup;

/// `berth garbage-collect`: mark and sweep, printing what is (or would be) removed.
pub async fn garbage_collect(
    loaded: Loaded,
    options: GcOptions,
    quiet: bool,
) -> anyhow::Result<()> {
    let registry = setup::registry(&loaded.config).await?;
    // The documented way to collect is to put the serving registry in read-only mode and run
    // this with the same configuration, so the read-only flag must not stop the collector.
    registry.set_read_only(false);
    let report = registry
        .garbage_collect(options)
        .await
        .context("garbage collection stopped; nothing more was removed")?;
    let verb = if options.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if !quiet {
        for (repo, digest) in &report.manifests_marked {
            println!("{repo}: marking manifest {digest}");
        }
        for (repo, digest) in &report.manifests_removed {
            println!("{repo}: {verb} manifest {digest}");
        }
        for (digest, size) in &report.blobs_removed {
            println!("{verb} blob {digest} ({size} bytes)");
        }
        // The online collector's trash (Berth only; empty on data registry:2 wrote).
        for (digest, size) in &report.trash_purged {
            println!("{verb} trashed blob {digest} ({size} bytes)");
        }
        for digest in &report.trash_restored {
            let verb = if options.dry_run {
                "would restore"
            } else {
                "restored"
            };
            println!("{verb} referenced blob {digest} from the trash");
        }
    }
    println!(
        "{} blobs marked, {} blobs and {} manifests {}, {} bytes {}",
        report.blobs_kept,
        report.blobs_removed.len(),
        report.manifests_removed.len(),
        if options.dry_run {
            "eligible for deletion"
        } else {
            "deleted"
        },
        report.bytes_freed(),
        if options.dry_run {
            "would be freed"
        } else {
            "freed"
        },
    );
    Ok(())
}

/// `berth catalog-index`: rebuilds the repository index from a full walk of the storage.
pub async fn rebuild_catalog_index(loaded: Loaded) -> anyhow::Result<()> {
    let registry = setup::registry(&loaded.config).await?;
    let n = registry
        .rebuild_catalog_index()
        .await
        .context("could not rebuild the repository index")?;
    println!("repository index rebuilt: {n} repositories");
    Ok(())
}
