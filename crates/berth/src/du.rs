//! `berth du`: storage use per repository, like `du` for a registry. It reads the storage
//! directly (safe while the registry serves: it only reads) and prints a table, or the JSON
//! that `GET /v2/_berth/usage` serves.

use berth_config::Loaded;
use berth_registry::usage::UsageReport;

use crate::setup;

/// Runs the report and prints it.
pub async fn run(loaded: Loaded, json: bool) -> anyhow::Result<()> {
    let registry = setup::registry(&loaded.config).await?;
    let report = registry.usage().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The human-readable table, largest repository first.
fn table(report: &UsageReport) -> String {
    let width = report
        .repositories
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("REPOSITORY".len());
    let mut out = format!(
        "{:<width$}  {:>9}  {:>5}  {:>6}  {:>10}  {:>10}\n",
        "REPOSITORY", "MANIFESTS", "TAGS", "BLOBS", "UNIQUE", "SHARED"
    );
    for r in &report.repositories {
        out += &format!(
            "{:<width$}  {:>9}  {:>5}  {:>6}  {:>10}  {:>10}\n",
            r.name,
            r.manifests,
            r.tags,
            r.blobs,
            human(r.unique_bytes),
            human(r.shared_bytes)
        );
    }
    out += &format!(
        "total: {} in {} blobs; {} in {} blobs no manifest uses (garbage collection frees them)\n",
        human(report.bytes),
        report.blobs,
        human(report.unreferenced_bytes),
        report.unreferenced_blobs
    );
    out
}

/// Bytes for people (`1.5 MiB`): the one helper `berth copy` uses too.
pub(crate) use berth_copy::progress::human;

#[cfg(test)]
mod tests {
    use berth_registry::usage::{RepoUsage, UsageReport};

    use super::{human, table};

    #[test]
    fn sizes_read_like_du() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }

    #[test]
    fn table_lists_every_repository_and_the_garbage() {
        let report = UsageReport {
            repositories: vec![RepoUsage {
                name: "team/app".into(),
                manifests: 3,
                tags: 2,
                blobs: 7,
                unique_bytes: 3 << 20,
                last_pushed: None,
                shared_bytes: 1024,
            }],
            blobs: 9,
            bytes: (3 << 20) + 4096,
            unreferenced_blobs: 2,
            unreferenced_bytes: 3072,
        };
        let text = table(&report);
        assert!(text
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("team/app")
                && l.contains("3.0 MiB")
                && l.contains("1.0 KiB")));
        assert!(
            text.contains("3.0 KiB in 2 blobs no manifest uses"),
            "{text}"
        );
    }
}
