//! `berth scan REF...`: runs the configured scanner on each image with Trivy's command line
//! (`COMMAND image --format FORMAT --output FILE HOST/REPO@DIGEST`, the image pinned by digest
//! so the report is about exactly the manifest it is attached to), a few at a time, each
//! within the timeout (killed after it), and stores the report as an OCI referrer of the image:
//! an artifact manifest whose `artifactType` and single layer say the format, whose `subject`
//! is the image. Registries with the referrers API list it there; others (registry:2) through
//! the tag schema, as `berth copy` writes referrers.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use berth_config::ScanFormat;
use berth_oci::media_types::{OCI_EMPTY, OCI_MANIFEST};
use berth_oci::{Descriptor, Digest};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::Side;
use crate::endpoint::{client, EndOptions, ManifestBlob, Source, Target};
use crate::registry::{RegistrySource, RegistryTarget};
use crate::transport::RegistryRef;
use crate::verify::{verified, BlobStream};
use crate::Failure;

/// Largest report accepted from a scanner (an SBOM of a large image is a few MiB).
const MAX_REPORT: u64 = 64 * 1024 * 1024;
/// How much of the scanner's standard error is quoted when it fails.
const ERROR_TAIL: u64 = 2048;

/// The artifact type (and layer media type) of a report in `format`.
pub fn artifact_type(format: ScanFormat) -> &'static str {
    match format {
        ScanFormat::Sarif => "application/sarif+json",
        ScanFormat::Cyclonedx => "application/vnd.cyclonedx+json",
        // The scanner's own JSON has no registered type; this one says who attached it.
        ScanFormat::Json => "application/vnd.berth.scan.report.v1+json",
    }
}

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// The scanner program.
    pub command: String,
    /// The report format asked for.
    pub format: ScanFormat,
    /// A scan running longer is killed.
    pub timeout: Duration,
    /// Scans at the same time.
    pub concurrency: usize,
    /// TLS and credentials for the registry (to read the image and write the report).
    pub registry: EndOptions,
}

/// A report attached.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The image scanned.
    pub subject: Digest,
    /// The referrer manifest holding the report.
    pub referrer: Digest,
    /// The report's size.
    pub bytes: u64,
}

/// Scans every image of `images`, `options.concurrency` at a time; one result per image.
pub async fn scan_all(
    images: &[RegistryRef],
    options: &ScanOptions,
) -> Vec<(String, crate::Result<Attached>)> {
    futures_util::stream::iter(images)
        .map(|image| async move { (image.to_string(), scan_one(image, options).await) })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await
}

/// Scans one image and attaches the report.
pub async fn scan_one(image: &RegistryRef, options: &ScanOptions) -> crate::Result<Attached> {
    // Reading the image fails as a source does (exit 3), storing the report as a target.
    let reader = client(&image.host, Side::Source, &options.registry)?;
    let registry = client(&image.host, Side::Target, &options.registry)?;
    let source = RegistrySource::new(reader, image.clone());
    let root = source.root().await?;
    let pinned = format!("{}/{}@{}", image.host, image.repo, root.digest);
    let target = RegistryTarget::new(registry, image.clone());
    run_and_attach(&pinned, &root, &target, options).await
}

/// Runs the scanner on `pinned` (`HOST/REPO@DIGEST` of `subject`) and stores its report at
/// `target` as a referrer of `subject` (`berth scan`, and the scan hook of `berth serve`).
pub async fn run_and_attach(
    pinned: &str,
    subject: &ManifestBlob,
    target: &dyn Target,
    options: &ScanOptions,
) -> crate::Result<Attached> {
    let work = tempfile::tempdir()
        .map_err(|e| Failure::Scanner(format!("cannot make a temporary directory: {e}")))?;
    let report = run_scanner(pinned, options, work.path()).await?;
    let referrer = attach(target, subject, report.clone(), options).await?;
    Ok(Attached {
        subject: subject.digest.clone(),
        referrer,
        bytes: report.len() as u64,
    })
}

/// Runs the scanner on `pinned` and returns its report, checked to be JSON.
async fn run_scanner(pinned: &str, options: &ScanOptions, work: &Path) -> crate::Result<Bytes> {
    let output = work.join(format!("report.{}", options.format.as_str()));
    let errors = work.join("stderr");
    let stderr = std::fs::File::create(&errors)
        .map_err(|e| Failure::Scanner(format!("{}: {e}", errors.display())))?;
    let mut child = tokio::process::Command::new(&options.command)
        .arg("image")
        .args(["--format", options.format.as_str()])
        .arg("--output")
        .arg(&output)
        .arg(pinned)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        // A scan past its timeout is dropped, and with it the process.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Scanner(format!("cannot run {:?}: {e}", options.command)))?;
    let status = match tokio::time::timeout(options.timeout, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            return Err(Failure::Scanner(format!(
                "{} on {pinned} ran longer than {}; killed",
                options.command,
                humantime::format_duration(options.timeout)
            )));
        }
        Ok(Err(e)) => return Err(Failure::Scanner(format!("{}: {e}", options.command))),
        Ok(Ok(status)) => status,
    };
    if !status.success() {
        let tail = tail(&errors).await;
        return Err(Failure::Scanner(format!(
            "{} on {pinned} failed ({status}): {tail}",
            options.command
        )));
    }
    let size = tokio::fs::metadata(&output)
        .await
        .map_err(|e| Failure::Scanner(format!("{} wrote no report: {e}", options.command)))?
        .len();
    if size > MAX_REPORT {
        return Err(Failure::Scanner(format!(
            "the report is {size} bytes, over the {MAX_REPORT} byte limit"
        )));
    }
    let report = tokio::fs::read(&output)
        .await
        .map_err(|e| Failure::Scanner(format!("{}: {e}", output.display())))?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&report).map_err(|e| {
        Failure::Scanner(format!(
            "the {} report of {} is not JSON: {e}",
            options.format.as_str(),
            options.command
        ))
    })?;
    Ok(Bytes::from(report))
}

/// The last bytes of the scanner's standard error, for the failure message.
async fn tail(path: &Path) -> String {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let _ = file
        .seek(std::io::SeekFrom::Start(len.saturating_sub(ERROR_TAIL)))
        .await;
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).await.is_ok() {
        text = String::from_utf8_lossy(&bytes).trim().to_owned();
    }
    text
}

fn descriptor(media_type: &str, content: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: Digest::sha256_of(content),
        size: content.len() as u64,
        urls: Vec::new(),
        annotations: None,
        artifact_type: None,
    }
}

fn once(content: Bytes) -> BlobStream {
    Box::pin(futures_util::stream::iter([Ok(content)]))
}

/// Stores `report` as a referrer of `subject` at `target`; returns the referrer's digest.
async fn attach(
    target: &dyn Target,
    subject: &ManifestBlob,
    report: Bytes,
    options: &ScanOptions,
) -> crate::Result<Digest> {
    let kind = artifact_type(options.format);
    let config = Bytes::from_static(b"{}");
    let config_descriptor = descriptor(OCI_EMPTY, &config);
    let mut layer = descriptor(kind, &report);
    layer.annotations = Some(
        [(
            "org.opencontainers.image.title".to_owned(),
            format!("report.{}", options.format.as_str()),
        )]
        .into(),
    );
    for (d, content) in [(&config_descriptor, config), (&layer, report)] {
        if !target.has_blob(d).await? {
            target.put_blob(d, verified(once(content), d)).await?;
        }
    }
    let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": kind,
        "config": config_descriptor,
        "layers": [layer],
        "subject": subject.descriptor(),
        "annotations": {
            "org.opencontainers.image.created": created,
            "dev.berth.scan.command": options.command,
            "dev.berth.scan.format": options.format.as_str(),
        },
    });
    let body =
        Bytes::from(serde_json::to_vec(&manifest).map_err(|e| Failure::Scanner(e.to_string()))?);
    let blob = ManifestBlob {
        digest: Digest::sha256_of(&body),
        body,
        media_type: OCI_MANIFEST.to_owned(),
    };
    target.put_referrer(&blob, &subject.digest).await?;
    Ok(blob.digest)
}
