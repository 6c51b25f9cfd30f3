//! Command-line interface: one `Opts` parsed by clap, one function per subcommand.
//!
//! Every command that reads the configuration takes it the same two ways: as its last
//! argument (registry:2's `registry garbage-collect config.yml`) or with `-c/--config`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::{logging, maintenance, retention, server, setup};

/// Berth: a self-hosted OCI registry and pull-through cache, drop-in for registry:2.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, long_about = None)]
pub struct Opts {
    #[command(subcommand)]
    command: Command,
}

/// CONFIG, as the last argument or with `-c/--config`; both at once is refused, since the
/// two could name different files.
#[derive(Args, Debug)]
struct ConfigArg {
    /// Path to a registry:2-compatible config.yml (or -c CONFIG). Without it the embedded
    /// default is used (filesystem storage in a per-user data directory), as by serve.
    #[arg(value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Path to a registry:2-compatible config.yml (or CONFIG as the last argument).
    #[arg(short = 'c', long = "config", value_name = "CONFIG")]
    config_flag: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration file given, if any.
    fn path(self) -> anyhow::Result<Option<PathBuf>> {
        match (self.config, self.config_flag) {
            (Some(positional), Some(flag)) => bail!(
                "the configuration is given twice ({} as CONFIG and {} with -c/--config): give it once, either way",
                positional.display(),
                flag.display()
            ),
            (positional, flag) => Ok(positional.or(flag)),
        }
    }

    /// Loads the configuration given (or the embedded default).
    fn load(self) -> anyhow::Result<(berth_config::Loaded, Option<PathBuf>)> {
        let path = self.path()?;
        Ok((setup::load_config(path.as_deref())?, path))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry. CONFIG is a registry:2 config.yml; without it an embedded default is
    /// used (filesystem storage in a per-user data directory, port 5000, delete enabled).
    /// REGISTRY_* environment variables override the file, as in registry:2.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
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
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Rebuild the repository index `_catalog` answers from on S3 storage (Berth keeps it up
    /// to date itself; run this after registry:2 wrote to the same bucket). Safe while serving.
    CatalogIndex {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Storage use per repository: bytes only that repository uses (what deleting it frees)
    /// and bytes it shares, plus what no manifest uses. Reads only; safe while serving.
    Du {
        /// Print JSON (the format of `GET /v2/_berth/usage`) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write an image (NAME: every tag; NAME:TAG; NAME@DIGEST) with all its platforms and
    /// referrers as an OCI image layout in DIR (new, empty, or a layout to add to). Reads
    /// only; safe while serving. Without CONFIG the embedded default config is used, as by
    /// serve.
    Export {
        /// What to export: NAME, NAME:TAG or NAME@DIGEST.
        image: String,
        /// The layout directory.
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Store the OCI image layout DIR (every index.json entry, or those named --ref) in
    /// repository NAME with blobs and referrers, tagged by their ref names, or TAG with
    /// NAME:TAG. Every blob is verified; a bad layout is refused with nothing tagged. Safe
    /// while serving. Without CONFIG the embedded default config is used, as by serve.
    Import {
        /// Import only the entries whose org.opencontainers.image.ref.name is REF.
        #[arg(long = "ref", value_name = "REF")]
        ref_name: Option<String>,
        /// The layout directory.
        dir: PathBuf,
        /// The repository: NAME, or NAME:TAG to tag the one imported image TAG.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy an image between registries, OCI layout directories and docker-archive tarballs,
    /// every platform of a multi-platform image (or --platform), digests preserved, blobs the
    /// destination has skipped. SRC and DST as skopeo's: docker://HOST/REPO:TAG (docker.io
    /// short names expanded as docker does), oci:DIR[:TAG], docker-archive:FILE[:REPO:TAG].
    /// Exit codes: 2 usage, 3 source failed, 4 destination failed, 5 content refused.
    ///
    ///   berth copy --referrers docker://alpine:3.20 docker://127.0.0.1:5000/library/alpine:3.20
    #[command(verbatim_doc_comment)]
    Copy {
        /// What to copy.
        src: String,
        /// Where to.
        dst: String,
        #[command(flatten)]
        source: crate::copy_cli::SourceArgs,
        #[command(flatten)]
        args: crate::copy_cli::CopyArgs,
    },
    /// Copy the images a skopeo sync YAML file lists (by tag list, tag regex or semver range)
    /// to the registry prefix DEST (HOST[/PREFIX]): each to DEST/<last name component>:<tag>,
    /// or DEST/<registry>/<repository>:<tag> with --scoped. Unchanged images move nothing.
    /// Exit codes: as copy, and 6 when some images failed and others were copied.
    Sync {
        /// The sync file (skopeo sync's YAML format).
        file: PathBuf,
        /// The destination registry and prefix: HOST[/PREFIX].
        dest: String,
        /// Keep the source registry and full repository path under DEST.
        #[arg(long)]
        scoped: bool,
        /// Images copied at the same time.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        images_at_once: u16,
        #[command(flatten)]
        args: crate::copy_cli::CopyArgs,
    },
    /// Run a scanner on images and attach each report as an OCI referrer of the image (listed
    /// by the referrers API, or the sha256-<hex> tag on registries without it). The scanner is
    /// called as Trivy is, `COMMAND image --format FORMAT --output FILE HOST/REPO@DIGEST`, so
    /// `--command trivy` just works. Defaults from the `scan:` config section (-c CONFIG).
    /// Exit codes: 3 the image cannot be read, 4 the report cannot be stored, 7 the scanner
    /// failed, timed out or wrote no JSON report.
    Scan {
        #[command(flatten)]
        args: crate::scan_cli::ScanArgs,
    },
    /// Apply the retention policies of storage.maintenance.retention once: delete the tags
    /// they select and, with deleteuntagged, the manifests no remaining tag reaches. Blobs stay
    /// until the next garbage collection. Run with --dry-run first.
    ///
    /// Rules given on the command line (--repository with --keep-last, --older-than,
    /// --delete-tag, --delete-untagged) make one policy that is applied instead of the
    /// configured ones, as a cleanup script would:
    ///
    ///   berth retention --repository 'ci/**' --keep-last 10 --older-than 30d --dry-run config.yml
    #[command(verbatim_doc_comment)]
    Retention {
        /// Print what would be deleted; change nothing.
        #[arg(short = 'd', long)]
        dry_run: bool,
        /// Print only the summary line.
        #[arg(short = 'q', long)]
        quiet: bool,
        // Before the rules: their help heading would otherwise also cover -c and CONFIG.
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        rules: crate::retention::RuleArgs,
    },
    /// Add or update a user's bcrypt entry in an htpasswd file (like `htpasswd -B`), or print
    /// the line without -f (like `htpasswd -nB`). The password is prompted for, twice.
    Htpasswd {
        /// The htpasswd file; created (mode 0600) if missing, other users kept, replaced atomically.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// bcrypt cost (4-31); each step doubles the time a login check takes.
        #[arg(long, default_value_t = berth_auth::htpasswd::DEFAULT_COST, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
        /// The user name.
        user: String,
    },
    /// Exit 0 when URL answers 2xx within 5 s, else 1: a HEALTHCHECK for container images
    /// that have no curl.
    Healthcheck {
        /// What to probe.
        #[arg(default_value = "http://127.0.0.1:5000/readyz")]
        url: String,
        /// Accept any TLS certificate (a self-signed one inside the container).
        #[arg(short = 'k', long)]
        insecure: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Several nodes on one storage (docs/scale-out.md): the cluster-wide read-only switch
    /// and who runs the background jobs.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Switch every node sharing the storage to read-only (`on`) or back (`off`); nodes
    /// follow within `cluster.pollinterval` (2 s by default). For backups and migrations.
    ReadOnly {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Why, shown in every node's log.
        #[arg(long, default_value = "maintenance")]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the cluster-wide read-only flag and which node holds the jobs lease.
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration and print the effective result (secrets masked).
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Runs the chosen subcommand.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    match opts.command {
        Command::Serve { config } => {
            let (loaded, path) = config.load()?;
            logging::init(&loaded.config.log)?;
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            runtime()?.block_on(server::serve(loaded, path))
        }
        Command::GarbageCollect {
            dry_run,
            delete_untagged,
            quiet,
            config,
        } => {
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            let options = berth_registry::gc::GcOptions {
                delete_untagged,
                dry_run,
            };
            runtime()?.block_on(maintenance::garbage_collect(loaded, options, quiet))
        }
        Command::CatalogIndex { config } => {
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            runtime()?.block_on(maintenance::rebuild_catalog_index(loaded))
        }
        Command::Du { json, config } => {
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            runtime()?.block_on(crate::du::run(loaded, json))
        }
        Command::Export { config, image, dir } => {
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            runtime()?.block_on(crate::layout::export(loaded, &image, &dir))
        }
        Command::Import {
            config,
            ref_name,
            dir,
            name,
        } => {
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            runtime()?.block_on(crate::layout::import(loaded, &dir, &name, ref_name))
        }
        Command::Retention {
            dry_run,
            quiet,
            rules,
            config,
        } => {
            // Bad rules are reported before the configuration is even read.
            let policy = rules.policy()?;
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            runtime()?.block_on(retention::run_once(loaded, policy, dry_run, quiet))
        }
        Command::Htpasswd {
            file,
            password_stdin,
            cost,
            user,
        } => {
            let password = read_password(password_stdin)?;
            let line = berth_auth::htpasswd::entry(&user, &password, cost)?;
            match file {
                Some(path) => {
                    berth_auth::htpasswd::upsert(&path, &line)?;
                    eprintln!("berth: set the password of {user} in {}", path.display());
                }
                None => println!("{line}"),
            }
            Ok(())
        }
        Command::Copy {
            src,
            dst,
            source,
            args,
        } => runtime()?.block_on(crate::copy_cli::copy(&src, &dst, args, source)),
        Command::Sync {
            file,
            dest,
            scoped,
            images_at_once,
            args,
        } => runtime()?.block_on(crate::copy_cli::sync(
            &file,
            &dest,
            scoped,
            images_at_once,
            args,
        )),
        Command::Scan { args } => runtime()?.block_on(crate::scan_cli::scan(args)),
        Command::Healthcheck { url, insecure } => runtime()?.block_on(healthcheck(&url, insecure)),
        Command::Cluster {
            command:
                ClusterCommand::ReadOnly {
                    state,
                    reason,
                    config,
                },
        } => {
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            let reason = (state == "on").then_some(reason);
            runtime()?.block_on(crate::cluster_cli::read_only(loaded, reason))
        }
        Command::Cluster {
            command: ClusterCommand::Status { config },
        } => {
            let (loaded, _) = config.load()?;
            logging::init(&loaded.config.log)?;
            runtime()?.block_on(crate::cluster_cli::status(loaded))
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let (loaded, _) = config.load()?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            setup::check_supported(&loaded.config)?;
            crate::sync_job::check(&loaded.config.sync)?;
            // Open what serve would open, so a bad certificate or htpasswd file shows here.
            setup::auth(&loaded.config)?;
            if let Some(tls) = &loaded.config.http.tls {
                crate::tls::acceptor(tls, true)?;
            }
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

/// The new password: one line of stdin, or typed twice at a prompt without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ")
            .context("cannot prompt for a password (no terminal? use --password-stdin)")?;
        let again =
            rpassword::prompt_password("Again: ").context("cannot prompt for a password")?;
        anyhow::ensure!(first == again, "the passwords do not match");
        first
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password)
}

async fn healthcheck(url: &str, insecure: bool) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .danger_accept_invalid_certs(insecure)
        .build()
        .context("cannot build an HTTP client")?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    println!("{url}: {status}");
    Ok(())
}
