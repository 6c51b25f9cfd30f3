//! `berth copy` and `berth sync`: options parsed by clap, turned into `berth_copy`'s options
//! in one place, run, and their failure kind mapped to the exit code (docs/copy-sync.md).

use std::path::PathBuf;

use berth_copy::endpoint::EndOptions;
use berth_copy::platform::Platform;
use berth_copy::sync::SyncOptions;
use berth_copy::{CopyOptions, Failure, Location, Progress, ProgressMode};
use clap::{ArgAction, Args};

/// Exit code of a sync in which some images failed and others were copied.
pub const EXIT_PARTIAL: u8 = 6;

/// Options shared by copy and sync: how to copy, how to report.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Copy only this platform of a multi-platform image: OS/ARCH[/VARIANT] (linux/arm64).
    /// Without it every platform is copied (a docker-archive target takes this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Also copy referrers (signatures, SBOMs, attestations) of the image and its platforms.
    #[arg(long)]
    referrers: bool,
    /// Show what would be copied and how many bytes; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Blobs transferred at the same time, per image.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Print progress as JSON lines on standard output (for scripts).
    #[arg(long)]
    json: bool,
    /// Print only errors and the summary.
    #[arg(short = 'q', long, conflicts_with = "json")]
    quiet: bool,
    /// docker's config file with `docker login` credentials (default: $DOCKER_CONFIG/config.json
    /// or ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Destination credentials USER:PASSWORD (else the docker config file).
    #[arg(long, value_name = "USER:PASS")]
    dest_creds: Option<String>,
    /// Verify the destination's TLS certificate; false also allows plain http.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    dest_tls_verify: bool,
    /// Directory of CA (*.crt) and client (*.cert, *.key) certificates for the destination.
    #[arg(long, value_name = "DIR")]
    dest_cert_dir: Option<PathBuf>,
}

/// Source options of `berth copy` (a sync file carries them per registry).
#[derive(Args, Debug)]
pub struct SourceArgs {
    /// The configuration whose storage `local:REPO[:TAG]` names (offline: no server needed).
    /// Without it the embedded default is used, as by serve.
    #[arg(short = 'c', long = "config", value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Source credentials USER:PASSWORD (else the docker config file).
    #[arg(long, value_name = "USER:PASS")]
    src_creds: Option<String>,
    /// Verify the source's TLS certificate; false also allows plain http.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    src_tls_verify: bool,
    /// Directory of CA (*.crt) and client (*.cert, *.key) certificates for the source.
    #[arg(long, value_name = "DIR")]
    src_cert_dir: Option<PathBuf>,
}

impl CopyArgs {
    fn copy_options(&self) -> Result<CopyOptions, Failure> {
        let platform = self
            .platform
            .as_deref()
            .map(str::parse::<Platform>)
            .transpose()?;
        Ok(CopyOptions {
            platform,
            referrers: self.referrers,
            dry_run: self.dry_run,
            jobs: usize::from(self.jobs),
            known: None,
        })
    }

    fn progress(&self) -> Progress {
        use std::io::IsTerminal;
        Progress::new(if self.json {
            ProgressMode::Json
        } else if self.quiet {
            ProgressMode::Quiet
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Plain
        })
    }

    fn dest(&self) -> Result<EndOptions, Failure> {
        Ok(EndOptions {
            tls_verify: self.dest_tls_verify,
            cert_dir: self.dest_cert_dir.clone(),
            credentials: self
                .dest_creds
                .as_deref()
                .map(berth_copy::creds::parse_creds)
                .transpose()?,
            authfile: self.authfile.clone(),
        })
    }
}

/// `berth copy SRC DST`.
pub async fn copy(src: &str, dst: &str, args: CopyArgs, source: SourceArgs) -> anyhow::Result<()> {
    let options = args.copy_options()?;
    let progress = args.progress();
    let src_location: Location = src.parse()?;
    let dst_location: Location = dst.parse()?;
    let src_options = EndOptions {
        tls_verify: source.src_tls_verify,
        cert_dir: source.src_cert_dir,
        credentials: source
            .src_creds
            .as_deref()
            .map(berth_copy::creds::parse_creds)
            .transpose()?,
        authfile: args.authfile.clone(),
    };
    let storage = match (&src_location, &dst_location) {
        (Location::Local(_), _) | (_, Location::Local(_)) => {
            let loaded = crate::setup::load_config(source.config.as_deref())?;
            Some(crate::setup::registry(&loaded.config).await?)
        }
        _ => None,
    };
    let source = berth_copy::open_source(&src_location, &src_options, storage.as_ref()).await?;
    let target = berth_copy::open_target(&dst_location, &args.dest()?, storage.as_ref()).await?;
    let name = format!("{src_location} -> {dst_location}");
    let result = berth_copy::copy_image(&*source, &*target, &options, &progress, &name).await;
    progress.finish();
    let summary = result?;
    progress.done(&name, &summary);
    if args.quiet {
        eprintln!("{name}: {summary}");
    }
    Ok(())
}

/// `berth sync FILE DEST`.
pub async fn sync(
    file: &std::path::Path,
    dest: &str,
    scoped: bool,
    images_at_once: u16,
    args: CopyArgs,
) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let sections = berth_copy::sync::parse_file(&yaml)?;
    let options = SyncOptions {
        dest: berth_copy::sync::Destination::Registry {
            prefix: dest.trim_start_matches("docker://").to_owned(),
            options: args.dest()?,
        },
        authfile: args.authfile.clone(),
        copy: args.copy_options()?,
        images_at_once: usize::from(images_at_once),
        scoped,
    };
    let progress = args.progress();
    let report = berth_copy::sync::run(&sections, &options, &progress).await;
    progress.finish();
    let report = report?;
    let bytes: u64 = report.images.iter().map(|(_, s)| s.bytes_copied).sum();
    let blobs: u64 = report.images.iter().map(|(_, s)| s.blobs_copied).sum();
    let unchanged = report.images.iter().filter(|(_, s)| s.unchanged).count();
    let verb = if args.dry_run { "would copy" } else { "copied" };
    eprintln!(
        "sync: {} images ({unchanged} unchanged), {verb} {blobs} blobs ({}), {} failed",
        report.images.len(),
        berth_copy::progress::human(bytes),
        report.failures.len()
    );
    match report.failures.into_iter().next() {
        None => Ok(()),
        Some((name, e)) if report.images.is_empty() => {
            Err(anyhow::Error::new(e).context(format!("{name} (and every other image) failed")))
        }
        Some((name, e)) => Err(anyhow::Error::new(PartialSync(format!("{name}: {e}")))),
    }
}

/// Some images of a sync failed, others were copied (exit 6).
#[derive(Debug, thiserror::Error)]
#[error("some images failed, the first: {0}")]
pub struct PartialSync(String);

/// The exit code for an error of copy or sync: the failure kind's, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<PartialSync>().is_some() {
        return EXIT_PARTIAL;
    }
    e.chain()
        .find_map(|c| c.downcast_ref::<Failure>())
        .map_or(1, Failure::exit_code)
}
