//! `berth scan REF...`: the scanner of the `scan:` config section (or the flags) run on each
//! image, the report attached as an OCI referrer (docs/copy-sync.md, "Scanning").

use std::path::PathBuf;

use berth_config::ScanFormat;
use berth_copy::endpoint::EndOptions;
use berth_copy::scan::{scan_all, ScanOptions};
use berth_copy::{Failure, RegistryRef};
use clap::{ArgAction, Args};

/// Options of `berth scan`; unset ones come from the `scan:` section.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Images to scan: HOST/REPO:TAG or HOST/REPO@DIGEST (docker:// optional).
    #[arg(required = true, value_name = "REF")]
    images: Vec<String>,
    /// The scanner program (default: scan.command, else trivy).
    #[arg(long)]
    command: Option<String>,
    /// Report format: sarif, cyclonedx or json (default: scan.format, else sarif).
    #[arg(long, value_parser = ["sarif", "cyclonedx", "json"])]
    format: Option<String>,
    /// Kill a scan running longer than this, such as 90s or 10m (default: scan.timeout, 5m).
    #[arg(long, value_parser = berth_config::parse_go_duration)]
    timeout: Option<std::time::Duration>,
    /// Scans at the same time (default: scan.concurrency, 2).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: Option<u16>,
    /// Registry credentials USER:PASSWORD (else the docker config file).
    #[arg(long, value_name = "USER:PASS")]
    creds: Option<String>,
    /// docker's config file with `docker login` credentials.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Verify the registry's TLS certificate; false also allows plain http.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    tls_verify: bool,
    /// Print one JSON object per image on standard output.
    #[arg(long)]
    json: bool,
    /// A registry:2-compatible config.yml whose `scan:` section gives the defaults.
    #[arg(short = 'c', long = "config", value_name = "CONFIG")]
    config: Option<PathBuf>,
}

/// `berth scan`.
pub async fn scan(args: ScanArgs) -> anyhow::Result<()> {
    let loaded = crate::setup::load_config(args.config.as_deref())?;
    let defaults = &loaded.config.scan;
    let format = match args.format.as_deref() {
        Some(f) => ScanFormat::parse(f).unwrap_or(defaults.format),
        None => defaults.format,
    };
    let options = ScanOptions {
        command: args.command.unwrap_or_else(|| defaults.command.clone()),
        format,
        timeout: args.timeout.unwrap_or(defaults.timeout),
        concurrency: args
            .concurrency
            .map_or(defaults.concurrency as usize, usize::from),
        registry: EndOptions {
            tls_verify: args.tls_verify,
            cert_dir: None,
            credentials: args
                .creds
                .as_deref()
                .map(berth_copy::creds::parse_creds)
                .transpose()?,
            authfile: args.authfile,
        },
    };
    let images = args
        .images
        .iter()
        .map(|s| s.trim_start_matches("docker://").parse::<RegistryRef>())
        .collect::<Result<Vec<_>, Failure>>()?;
    let results = scan_all(&images, &options).await;
    let mut first_failure = None;
    for (image, result) in results {
        match result {
            Ok(a) if args.json => println!(
                "{}",
                serde_json::json!({"image": image, "subject": a.subject.to_string(),
                    "referrer": a.referrer.to_string(), "bytes": a.bytes,
                    "artifactType": berth_copy::scan::artifact_type(format)})
            ),
            Ok(a) => eprintln!(
                "{image}: {} report ({} bytes) attached as {} to {}",
                format.as_str(),
                a.bytes,
                a.referrer,
                a.subject
            ),
            Err(e) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"image": image, "error": e.to_string(),
                            "exit_code": e.exit_code()})
                    );
                }
                eprintln!("{image}: FAILED: {e}");
                first_failure.get_or_insert(e);
            }
        }
    }
    match first_failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
