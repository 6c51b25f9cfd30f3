//! Command-line interface: one `Opts` parsed by clap, one function per subcommand.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{logging, maintenance, server, setup};

/// Berth: a self-hosted OCI registry and pull-through cache, drop-in for registry:2.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, long_about = None)]
pub struct Opts {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry. CONFIG is a registry:2 config.yml; without it an embedded default is
    /// used (filesystem storage in a per-user data directory, port 5000, delete enabled).
    /// REGISTRY_* environment variables override the file, as in registry:2.
    Serve {
        /// Path to a registry:2-compatible config.yml.
        config: Option<PathBuf>,
    },
    /// Remove blobs no manifest references, and with --delete-untagged the manifests no tag
    /// reaches (keeping multi-arch children and the referrers of kept manifests). Offline, like
    /// registry:2's `registry garbage-collect`: stop the registry or put it in read-only mode.
    GarbageCollect {
        /// Print what would be removed and the bytes it would free; change nothing.
        #[arg(short = 'd', long)]
        dry_run: bool,
        /// Also remove manifests that no tag reaches.
        #[arg(short = 'm', long)]
        delete_untagged: bool,
        /// Print only the summary line.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Path to a registry:2-compatible config.yml.
        config: Option<PathBuf>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration and print the effective result (secrets masked).
    Check {
        /// Path to a registry:2-compatible config.yml.
        config: Option<PathBuf>,
    },
}

/// Runs the chosen subcommand.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    match opts.command {
        Command::Serve { config } => {
            let loaded = setup::load_config(config.as_deref())?;
            logging::init(&loaded.config.log)?;
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            runtime()?.block_on(server::serve(loaded, config))
        }
        Command::GarbageCollect {
            dry_run,
            delete_untagged,
            quiet,
            config,
        } => {
            let loaded = setup::load_config(config.as_deref())?;
            logging::init(&loaded.config.log)?;
            let options = berth_registry::gc::GcOptions {
                delete_untagged,
                dry_run,
            };
            runtime()?.block_on(maintenance::garbage_collect(loaded, options, quiet))
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let loaded = setup::load_config(config.as_deref())?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            setup::check_supported(&loaded.config)?;
            for note in setup::not_yet_implemented(&loaded.config) {
                eprintln!("warning: {note}");
            }
            println!("# effective configuration from {}", loaded.source);
            print!("{}", loaded.config.to_masked_yaml());
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
