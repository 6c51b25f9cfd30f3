//! What a copy reports as it goes: one plain line per event on standard error when not on a
//! terminal (or always, without `--json`), or one JSON object per line on standard output
//! with `--json`, for scripts.

use std::io::Write;

use serde_json::json;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Human-readable lines on standard error.
    Plain,
    /// JSON lines on standard output.
    Json,
    /// Nothing but errors.
    Quiet,
}

/// What happened to a blob or manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transferred.
    Copied,
    /// The target had it.
    Skipped,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Would be transferred (dry run).
    WouldCopy,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Copied => "copied",
            Action::Skipped => "skipped",
            Action::Mounted => "mounted",
            Action::WouldCopy => "would copy",
        }
    }
}

/// The reporter shared by the tasks of a copy or sync.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: ProgressMode,
}

impl Progress {
    /// A reporter in `mode`.
    pub fn new(mode: ProgressMode) -> Progress {
        Progress { mode }
    }

    /// A blob event.
    pub fn blob(&self, image: &str, digest: &str, size: u64, action: Action) {
        match self.mode {
            ProgressMode::Plain => eprintln!(
                "{image}: {} blob {digest} ({})",
                action.as_str(),
                human(size)
            ),
            ProgressMode::Json => self.json(json!({
                "event": "blob", "image": image, "digest": digest, "size": size,
                "action": action.as_str(),
            })),
            ProgressMode::Quiet => {}
        }
    }

    /// A manifest event.
    pub fn manifest(&self, image: &str, digest: &str, what: &str, action: Action) {
        match self.mode {
            ProgressMode::Plain => {
                eprintln!("{image}: {} {what} {digest}", action.as_str())
            }
            ProgressMode::Json => self.json(json!({
                "event": "manifest", "image": image, "digest": digest, "kind": what,
                "action": action.as_str(),
            })),
            ProgressMode::Quiet => {}
        }
    }

    /// The end of one image.
    pub fn done(&self, image: &str, summary: &crate::Summary) {
        match self.mode {
            ProgressMode::Plain => eprintln!("{image}: {summary}"),
            ProgressMode::Json => self.json(json!({
                "event": "done", "image": image, "digest": summary.digest,
                "unchanged": summary.unchanged,
                "blobs_copied": summary.blobs_copied, "bytes_copied": summary.bytes_copied,
                "blobs_skipped": summary.blobs_skipped, "blobs_mounted": summary.blobs_mounted,
                "manifests_written": summary.manifests_written,
                "referrers": summary.referrers, "dry_run": summary.dry_run,
            })),
            ProgressMode::Quiet => {}
        }
    }

    /// A failed image (sync goes on with the next).
    pub fn failed(&self, image: &str, error: &crate::Failure) {
        match self.mode {
            ProgressMode::Json => self.json(json!({
                "event": "error", "image": image, "error": error.to_string(),
                "exit_code": error.exit_code(),
            })),
            _ => eprintln!("{image}: FAILED: {error}"),
        }
    }

    fn json(&self, value: serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }
}

/// Bytes for people: `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
