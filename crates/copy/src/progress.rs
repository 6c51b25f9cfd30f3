//! What a copy reports as it goes: progress bars on a terminal (one per blob in flight with
//! bytes/s and ETA, and a total), one plain line per event on standard error when not on a
//! terminal, or one JSON object per line on standard output with `--json`, for scripts.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::verify::BlobStream;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Progress bars on standard error (a terminal), event lines above them.
    Bars,
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
    bars: Option<Bars>,
}

/// The bars on the terminal: one per blob in flight, and the total of every blob started.
#[derive(Debug, Clone)]
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
}

const BLOB_BAR: &str =
    "{prefix:>14} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta}";
const TOTAL_BAR: &str =
    "{prefix:>14} {bar:30.cyan} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta} {msg}";

impl Progress {
    /// A reporter in `mode`.
    pub fn new(mode: ProgressMode) -> Progress {
        let bars = (mode == ProgressMode::Bars).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            let total = multi.add(ProgressBar::new(0));
            total.set_style(style(TOTAL_BAR));
            total.set_prefix("total");
            total.enable_steady_tick(Duration::from_millis(250));
            Bars { multi, total }
        });
        Progress { mode, bars }
    }

    /// A meter for one blob transfer: its bytes advance its bar and the total.
    pub fn meter(&self, digest: &str, size: u64) -> Meter {
        let Some(bars) = &self.bars else {
            return Meter { bar: None };
        };
        bars.total.inc_length(size);
        let bar = bars
            .multi
            .insert_before(&bars.total, ProgressBar::new(size));
        bar.set_style(style(BLOB_BAR));
        let short = digest.split(':').nth(1).unwrap_or(digest);
        bar.set_prefix(short.chars().take(12).collect::<String>());
        Meter {
            bar: Some((bar, bars.total.clone())),
        }
    }

    /// Clears the bars (before the summary line).
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.total.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }

    /// A line above the bars, or on standard error.
    fn line(&self, text: String) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// A blob event.
    pub fn blob(&self, image: &str, digest: &str, size: u64, action: Action) {
        match self.mode {
            ProgressMode::Plain | ProgressMode::Bars => self.line(format!(
                "{image}: {} blob {digest} ({})",
                action.as_str(),
                human(size)
            )),
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
            ProgressMode::Plain | ProgressMode::Bars => {
                self.line(format!("{image}: {} {what} {digest}", action.as_str()))
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
            ProgressMode::Plain | ProgressMode::Bars => self.line(format!("{image}: {summary}")),
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
            _ => self.line(format!("{image}: FAILED: {error}")),
        }
    }

    fn json(&self, value: serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Advances the bars of one blob transfer (nothing without bars).
pub struct Meter {
    bar: Option<(ProgressBar, ProgressBar)>,
}

impl Meter {
    /// `stream`, counted into this meter as it passes.
    pub fn count(self, stream: BlobStream) -> BlobStream {
        if self.bar.is_none() {
            return stream;
        }
        Box::pin(Counted {
            inner: stream,
            meter: self,
        })
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some((bar, _)) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

struct Counted {
    inner: BlobStream,
    meter: Meter,
}

impl Stream for Counted {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let (Poll::Ready(Some(Ok(chunk))), Some((bar, total))) = (&polled, &self.meter.bar) {
            bar.inc(chunk.len() as u64);
            total.inc(chunk.len() as u64);
        }
        polled
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
