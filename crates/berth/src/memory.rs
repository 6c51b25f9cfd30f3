//! Allocator tuning. glibc gives each thread that allocates under contention its own arena
//! and keeps freed memory in each; with the blocking-I/O thread pool that added ~25 MiB of RSS
//! under load (measured with `pmap` after the regbench push/pull scenarios). Two arenas and a
//! low trim/mmap threshold keep the server's memory flat whatever the load, at a small cost in
//! allocation speed (see docs/performance.md).

/// Bytes above which allocations are mmapped (and returned to the OS on free), and above which
/// free memory at the top of an arena is trimmed.
#[cfg(target_env = "gnu")]
const THRESHOLD: libc::c_int = 256 * 1024;

/// Applies the tuning; called first thing in `main`, before any thread exists. Environment
/// variables (`MALLOC_ARENA_MAX`, ...) still win, for operators who measure otherwise.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
pub fn tune_allocator() {
    let set = |param: libc::c_int, env: &str, value: libc::c_int| {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only changes allocator parameters; it is called before any other
            // thread exists, and every value is one glibc documents as valid for the parameter.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    };
    set(libc::M_ARENA_MAX, "MALLOC_ARENA_MAX", 2);
    set(libc::M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", THRESHOLD);
    set(libc::M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", THRESHOLD);
}

/// Other C libraries (musl) have no per-thread arenas to tune.
#[cfg(not(target_env = "gnu"))]
pub fn tune_allocator() {}
