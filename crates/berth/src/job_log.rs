//! The last run of each maintenance job in this process, for the web UI's registry page: when
//! it ended, whether it completed, and its one-line summary (the same figures as the log
//! line the job writes).

// Read only by the web UI; a build without it still records.
#![cfg_attr(not(feature = "ui"), allow(dead_code))]

use std::sync::Mutex;
use std::time::SystemTime;

/// A job's last run.
#[derive(Debug, Clone)]
pub struct LastRun {
    /// When it ended.
    pub finished: SystemTime,
    /// Whether it completed.
    pub ok: bool,
    /// What it did, or why it failed.
    pub summary: String,
}

/// Online garbage collection's last run.
pub static GC: Mutex<Option<LastRun>> = Mutex::new(None);
/// Retention's last run.
pub static RETENTION: Mutex<Option<LastRun>> = Mutex::new(None);

/// Records a run of the job behind `slot`.
pub fn record(slot: &Mutex<Option<LastRun>>, ok: bool, summary: String) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastRun {
        finished: SystemTime::now(),
        ok,
        summary,
    });
}

/// The last run of the job behind `slot`.
pub fn last(slot: &Mutex<Option<LastRun>>) -> Option<LastRun> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
