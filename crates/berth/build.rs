//! Links the `berth` binary with packed relative relocations (`DT_RELR`) where the C library
//! supports them.
//!
//! A position-independent Rust binary carries one 24-byte `RELA` record per pointer in its
//! read-only data (vtables, panic locations, string tables): about 37,000 records, 870 KiB,
//! which the dynamic loader reads at every start and which then stay mapped in the server for
//! its whole life, with the read-only data around them. `DT_RELR` encodes the same relocations
//! as a bitmap of 12 KiB (glibc 2.36+, binutils 2.38+, lld 15+); the binary keeps its address
//! randomisation. The server starts with about 1 MiB less resident (docs/performance.md,
//! "Code size and resident memory").
//!
//! A binary linked this way needs glibc 2.36 or later where it runs: the linker records that
//! as a version dependency (`GLIBC_ABI_DT_RELR`), so an older glibc refuses to start it with a
//! clear message instead of misbehaving. It is therefore only done for a native glibc build on
//! a glibc that has it, that is a binary built where it runs or for a system as new. The
//! static musl build (the container image, the NAS binaries) is not affected.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if native && gnu_linux && host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C library this build script runs on is glibc `major.minor` or later.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: gnu_get_libc_version takes no arguments and returns a pointer to a static,
    // NUL-terminated string owned by glibc.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(have_major), Some(have_minor)) => (have_major, have_minor) >= (major, minor),
        _ => false,
    }
}

/// A build script that does not run on glibc cannot tell: no packed relocations.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn host_glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}
