//! `berth`: a self-hosted OCI registry and pull-through cache, drop-in for registry:2.
//!
//! The CLI is parsed by clap into [`cli::Opts`]; each subcommand turns the registry:2-style
//! config file plus `REGISTRY_*` environment into one `Config` and runs.

mod cli;
mod cluster;
mod cluster_cli;
mod copy_cli;
mod debug_server;
mod du;
mod health;
mod job_log;
mod layout;
mod logging;
mod maintenance;
mod memory;
mod online_gc;
mod proxy_cache;
mod retention;
mod s3;
mod scan_cli;
mod scan_hook;
mod server;
mod setup;
mod sync_job;
mod tls;
#[cfg(feature = "ui")]
mod ui_admin;
mod watermark;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    memory::tune_allocator();
    let opts = cli::Opts::parse();
    match cli::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            // copy and sync say by their exit code what failed (docs/copy-sync.md).
            ExitCode::from(copy_cli::exit_code(&e))
        }
    }
}
