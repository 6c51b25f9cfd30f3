//! The typed configuration: what `load` returns after the file, the `REGISTRY_*` overrides and
//! registry:2's defaults have been combined and validated. Field names follow registry:2's keys;
//! nested one-flag sections are flattened (`storage.delete.enabled` is
//! [`StorageConfig::delete_enabled`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::duration::{go_duration, go_duration_opt};
use crate::limits::LimitsConfig;
pub use crate::proxy::{ProxyConfig, UpstreamConfig};
pub use crate::retention::{RetentionConfig, RetentionPolicyConfig};

/// Parsed, validated configuration with defaults applied.
///
/// The serde derives give this struct's own (Rust-shaped) representation; for registry:2's
/// `config.yml` layout use [`Config::to_yaml`] or [`Config::to_masked_yaml`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `version`: always `"0.1"` (the only version registry:2 accepts).
    pub version: String,
    /// `log` (and the deprecated top-level `loglevel`).
    pub log: LogConfig,
    /// `storage`: the driver and the storage-wide settings.
    pub storage: StorageConfig,
    /// `http`: listener and response settings.
    pub http: HttpConfig,
    /// `health`: periodic health checks.
    pub health: HealthConfig,
    /// `auth`: the single access controller, if configured.
    pub auth: Option<AuthConfig>,
    /// `auth.oidc` (Berth extension): signing in to the web UI with an OpenID Connect
    /// provider, beside `auth.token.builtin`.
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// `proxy`: pull-through cache mode, present only when `proxy.remoteurl` or
    /// `proxy.upstreams` is set.
    pub proxy: Option<ProxyConfig>,
    /// `notifications`: webhook endpoints, present when the section is.
    pub notifications: Option<NotificationsConfig>,
    /// `limits` (Berth extension): failed-login limits per client address and per account,
    /// and the cap on references per manifest; the defaults when the section is absent.
    pub limits: LimitsConfig,
    /// `cluster` (Berth extension): this node's name and how the nodes sharing its storage
    /// pick the one that runs background jobs; the defaults when the section is absent.
    pub cluster: crate::cluster::ClusterConfig,
    /// `ui` (Berth extension): the embedded web UI; the defaults when the section is absent.
    pub ui: crate::ui::UiConfig,
    /// `scan` (Berth extension): the scanner `berth scan` runs and its limits; the defaults
    /// when the section is absent.
    pub scan: crate::scan::ScanConfig,
    /// `sync` (Berth extension): a skopeo sync file `berth serve` runs periodically into its
    /// own storage; none when the section is absent.
    pub sync: crate::sync::SyncConfig,
}

/// Logging verbosity (`log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only (registry:2's `error`; `panic` and `fatal` map here too).
    Error,
    /// Warnings and errors (`warn` or `warning`).
    Warn,
    /// The default.
    #[default]
    Info,
    /// Everything (`debug`; `trace` maps here).
    Debug,
}

/// Log line format (`log.formatter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatter {
    /// logrus-style `key=value` text, the default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// registry:2's logstash format; Berth writes it as JSON.
    Logstash,
}

/// The `log` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogConfig {
    /// `log.level` (or the deprecated `loglevel`), default `info`.
    pub level: LogLevel,
    /// `log.formatter`, default `text`.
    pub formatter: LogFormatter,
    /// `log.fields`: static fields added to every log line (e.g. `service: registry`).
    pub fields: BTreeMap<String, Value>,
    /// `log.accesslog.disabled`: no access log lines when true.
    pub accesslog_disabled: bool,
}

/// The `storage` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageConfig {
    /// The one storage driver (the key that is not `delete`, `cache`, `maintenance`,
    /// `redirect` or `tag`).
    pub driver: StorageDriverConfig,
    /// `storage.delete.enabled`: allow DELETE of manifests and blobs (default false).
    pub delete_enabled: bool,
    /// `storage.redirect.disable`: never redirect blob downloads to the backend (default false).
    pub redirect_disabled: bool,
    /// `storage.cache`: the blob descriptor cache settings.
    pub cache: CacheConfig,
    /// `storage.maintenance`: upload purging and read-only mode.
    pub maintenance: MaintenanceConfig,
}

/// A storage driver and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDriverConfig {
    /// `storage.filesystem`: registry:2's on-disk layout under `rootdirectory`.
    Filesystem {
        /// `rootdirectory`, default `/var/lib/registry`.
        rootdirectory: PathBuf,
        /// `maxthreads`: bound on concurrent filesystem operations, default 100, at least 25.
        maxthreads: u32,
        /// `fsync` (Berth extension, default true): fsync every file before it is renamed into
        /// place, so a power loss never loses an acknowledged push. `false` trades that for
        /// throughput, like registry:2 (which never syncs); a process crash stays safe either way.
        fsync: bool,
    },
    /// `storage.inmemory`: volatile, for tests.
    InMemory,
    /// `storage.s3`: parsed so it can be checked and reported; the raw parameters are kept.
    S3 {
        /// Every parameter as written (after overrides).
        params: BTreeMap<String, Value>,
        /// The parameters Berth acts on, typed (boxed: they are many and this is one variant).
        settings: Box<S3Settings>,
    },
    /// Any other driver (gcs, azure, swift, oss, or an unknown name): kept so the server can
    /// say which driver it does not support.
    Other {
        /// The driver key, e.g. `gcs`.
        name: String,
        /// Its parameters as written.
        params: BTreeMap<String, Value>,
    },
}

impl StorageDriverConfig {
    /// The driver's key in `config.yml` (`filesystem`, `inmemory`, `s3`, or the other name).
    pub fn name(&self) -> &str {
        match self {
            StorageDriverConfig::Filesystem { .. } => "filesystem",
            StorageDriverConfig::InMemory => "inmemory",
            StorageDriverConfig::S3 { .. } => "s3",
            StorageDriverConfig::Other { name, .. } => name,
        }
    }
}

/// Typed view of the `storage.s3` parameters Berth acts on (all optional here; the driver
/// applies registry:2's defaults and the AWS environment variables).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct S3Settings {
    /// `region`, e.g. `us-east-1`.
    pub region: Option<String>,
    /// `bucket`.
    pub bucket: Option<String>,
    /// `regionendpoint`: URL of an S3-compatible service.
    pub regionendpoint: Option<String>,
    /// `accesskey`, or the content of the file named by `accesskey_file` (masked in output).
    pub accesskey: Option<String>,
    /// `secretkey`, or the content of the file named by `secretkey_file` (masked in output).
    pub secretkey: Option<String>,
    /// `sessiontoken` (masked in output).
    pub sessiontoken: Option<String>,
    /// `rootdirectory`: key prefix inside the bucket.
    pub rootdirectory: Option<String>,
    /// `forcepathstyle`: path-style bucket URLs (unset: on when `regionendpoint` is set).
    pub forcepathstyle: Option<bool>,
    /// `encrypt`: server-side encryption (SSE-S3, or SSE-KMS with `keyid`).
    pub encrypt: Option<bool>,
    /// `keyid`: the KMS key for `encrypt`.
    pub keyid: Option<String>,
    /// `secure`: HTTPS to the endpoint (default true).
    pub secure: Option<bool>,
    /// `skipverify`: accept any TLS certificate from the endpoint.
    pub skipverify: Option<bool>,
    /// `chunksize`: multipart part size in bytes (at least 5 MiB).
    pub chunksize: Option<u64>,
    /// `storageclass`, e.g. `STANDARD`, `REDUCED_REDUNDANCY`, or `NONE` to send none.
    pub storageclass: Option<String>,
    /// `useragent`: the User-Agent of requests to the store.
    pub useragent: Option<String>,
}

/// `storage.cache`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    /// `blobdescriptor` (or the deprecated `layerinfo`): `inmemory` or `redis`; `None` = off.
    pub blobdescriptor: Option<String>,
    /// `blobdescriptorsize`: entries for the in-memory cache (registry:2 default 10000).
    pub blobdescriptorsize: Option<u64>,
}

/// `storage.maintenance`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MaintenanceConfig {
    /// `uploadpurging`: background removal of abandoned uploads.
    pub uploadpurging: UploadPurgingConfig,
    /// `readonly.enabled`: refuse every write (for backups and garbage collection).
    pub readonly_enabled: bool,
    /// `gc` (Berth extension): online garbage collection in the background.
    pub gc: OnlineGcConfig,
    /// `diskwatermark` (Berth extension): warn, then refuse new uploads, as the disk fills.
    pub diskwatermark: DiskWatermarkConfig,
    /// `retention` (Berth extension): tag retention policies, scheduled and `berth retention`.
    pub retention: RetentionConfig,
}

/// `storage.maintenance.diskwatermark` (Berth extension): the filesystem holding the root
/// directory is checked every `interval`; above `warn` percent used a warning is logged, above
/// `refuse` percent new uploads are refused with `DENIED` (pulls, deletes, manifests of blobs
/// already uploaded and garbage collection go on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskWatermarkConfig {
    /// `enabled`, default false.
    pub enabled: bool,
    /// `warn`: percent used above which a warning is logged, default 80.
    pub warn: u8,
    /// `refuse`: percent used above which new upload data is refused, default 95.
    pub refuse: u8,
    /// `interval` between checks, default 10s.
    #[serde(with = "go_duration")]
    pub interval: Duration,
}

impl Default for DiskWatermarkConfig {
    fn default() -> Self {
        DiskWatermarkConfig {
            enabled: false,
            warn: 80,
            refuse: 95,
            interval: Duration::from_secs(10),
        }
    }
}

/// `storage.maintenance.gc` (Berth extension): online garbage collection, which runs while the
/// registry serves pushes (docs/lifecycle.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineGcConfig {
    /// `enabled`, default false.
    pub enabled: bool,
    /// `interval` between collections, default 24h.
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// `delay`: blobs used more recently than this are kept, and trashed blobs are deleted only
    /// this long after they were trashed; default 1h.
    #[serde(with = "go_duration")]
    pub delay: Duration,
    /// `dryrun`: only log what would be trashed and purged, default false.
    pub dryrun: bool,
}

impl Default for OnlineGcConfig {
    fn default() -> Self {
        OnlineGcConfig {
            enabled: false,
            interval: Duration::from_secs(24 * 3600),
            delay: Duration::from_secs(3600),
            dryrun: false,
        }
    }
}

/// `storage.maintenance.uploadpurging`, with registry:2's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadPurgingConfig {
    /// `enabled`, default true.
    pub enabled: bool,
    /// `age`: uploads older than this are removed, default 168h.
    #[serde(with = "go_duration")]
    pub age: Duration,
    /// `interval` between purges, default 24h.
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// `dryrun`: only log what would be removed, default false.
    pub dryrun: bool,
}

impl Default for UploadPurgingConfig {
    fn default() -> Self {
        UploadPurgingConfig {
            enabled: true,
            age: Duration::from_secs(168 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dryrun: false,
        }
    }
}

/// The `http` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpConfig {
    /// `addr`: `HOST:PORT` for tcp (`:5000` = all interfaces) or a socket path for unix.
    pub addr: String,
    /// `net`: `tcp` (default; also `tcp4`, `tcp6`) or `unix`.
    pub net: String,
    /// `prefix`: path the API is served under, e.g. `/registry/`; empty = root.
    pub prefix: String,
    /// `host`: externally visible base URL used for absolute Location headers.
    pub host: Option<String>,
    /// `secret`: key for signing upload state (masked in output).
    pub secret: Option<String>,
    /// `relativeurls`: relative Location headers.
    pub relativeurls: bool,
    /// `draintimeout`: how long to wait for in-flight requests on shutdown; `None` when unset.
    #[serde(with = "go_duration_opt")]
    pub draintimeout: Option<Duration>,
    /// `headers`: extra response headers, name to values. Default `X-Content-Type-Options: [nosniff]`.
    pub headers: BTreeMap<String, Vec<String>>,
    /// `tls`: present when a certificate (or Let's Encrypt) is configured.
    pub tls: Option<TlsConfig>,
    /// `debug`: the debug/metrics listener, present when `debug.addr` is set.
    pub debug: Option<DebugConfig>,
    /// `http2.disabled`: serve HTTP/1.1 only.
    pub http2_disabled: bool,
}

/// `http.tls`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TlsConfig {
    /// `certificate`: PEM certificate chain file.
    pub certificate: Option<PathBuf>,
    /// `key`: PEM private key file (required with `certificate`).
    pub key: Option<PathBuf>,
    /// `clientcas`: CA files for client certificate authentication.
    pub clientcas: Vec<PathBuf>,
    /// `minimumtls`: `tls1.0` ... `tls1.3`; `None` means registry:2's default, tls1.2.
    pub minimumtls: Option<String>,
    /// `ciphersuites`: Go cipher suite names (not supported by Berth; kept for reporting).
    pub ciphersuites: Vec<String>,
    /// `letsencrypt`: kept raw (not supported by Berth).
    pub letsencrypt: Option<Value>,
}

/// `http.debug`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DebugConfig {
    /// `addr` of the debug listener.
    pub addr: String,
    /// `prometheus`: metrics endpoint on the debug listener.
    pub prometheus: PrometheusConfig,
}

/// `http.debug.prometheus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrometheusConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `path`, default `/metrics`.
    pub path: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: false,
            path: "/metrics".to_owned(),
        }
    }
}

/// The `health` section. Intervals default to 10s; a threshold is the number of consecutive
/// failures that make a check unhealthy (registry:2: absent or 0 means a single failure, so the
/// value here is at least 1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `storagedriver`: periodic check of the storage backend.
    pub storagedriver: StorageDriverHealth,
    /// `file`: unhealthy while a file exists.
    pub file: Vec<FileCheck>,
    /// `http`: unhealthy unless a HEAD request returns the expected status.
    pub http: Vec<HttpCheck>,
    /// `tcp`: unhealthy unless a TCP connection succeeds.
    pub tcp: Vec<TcpCheck>,
}

/// `health.storagedriver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageDriverHealth {
    /// `enabled`, default false.
    pub enabled: bool,
    /// `interval`, default 10s.
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// `threshold`, default 1.
    pub threshold: u32,
}

impl Default for StorageDriverHealth {
    fn default() -> Self {
        StorageDriverHealth {
            enabled: false,
            interval: Duration::from_secs(10),
            threshold: 1,
        }
    }
}

/// An entry of `health.file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileCheck {
    /// `file`: the path whose existence means unhealthy.
    pub file: PathBuf,
    /// `interval`, default 10s.
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// `threshold`, default 1.
    pub threshold: u32,
}

/// An entry of `health.http`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// `uri` to send HEAD requests to.
    pub uri: String,
    /// `headers` sent with each request.
    pub headers: BTreeMap<String, Vec<String>>,
    /// `statuscode` expected, default 200.
    pub statuscode: u16,
    /// `timeout` of each request; `None` = no timeout.
    #[serde(with = "go_duration_opt")]
    pub timeout: Option<Duration>,
    /// `interval`, default 10s.
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// `threshold`, default 1.
    pub threshold: u32,
}

/// An entry of `health.tcp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpCheck {
    /// `addr`: `HOST:PORT` to connect to.
    pub addr: String,
    /// `timeout` of each connection attempt; `None` = the system's.
    #[serde(with = "go_duration_opt")]
    pub timeout: Option<Duration>,
    /// `interval`, default 10s.
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// `threshold`, default 1.
    pub threshold: u32,
}

/// `auth`: exactly one access controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthConfig {
    /// `auth.htpasswd`: HTTP basic auth against a bcrypt htpasswd file.
    Htpasswd {
        /// `realm` sent in the challenge.
        realm: String,
        /// `path` of the htpasswd file.
        path: PathBuf,
        /// Other keys as written.
        extra: BTreeMap<String, Value>,
    },
    /// `auth.token`: bearer tokens issued by an external token service.
    Token {
        /// `realm`: URL of the token service.
        realm: String,
        /// `service` name expected in tokens.
        service: String,
        /// `issuer` expected in tokens.
        issuer: String,
        /// `rootcertbundle`: certificates that sign tokens.
        rootcertbundle: Option<PathBuf>,
        /// `jwks`: JSON Web Key Set file that signs tokens.
        jwks: Option<PathBuf>,
        /// `autoredirect`: derive the realm from the request's Host.
        autoredirect: bool,
        /// Other keys as written.
        extra: BTreeMap<String, Value>,
    },
    /// `auth.silly`: development only; any Authorization header passes.
    Silly {
        /// `realm` sent in the challenge.
        realm: String,
        /// `service` sent in the challenge.
        service: String,
        /// Other keys as written.
        extra: BTreeMap<String, Value>,
    },
}

impl AuthConfig {
    /// The provider's key in `config.yml`.
    pub fn name(&self) -> &'static str {
        match self {
            AuthConfig::Htpasswd { .. } => "htpasswd",
            AuthConfig::Token { .. } => "token",
            AuthConfig::Silly { .. } => "silly",
        }
    }
}

/// `notifications`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NotificationsConfig {
    /// `events`: what event payloads contain.
    pub events: EventsConfig,
    /// `endpoints`: webhook receivers.
    pub endpoints: Vec<EndpointConfig>,
}

/// `notifications.events`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventsConfig {
    /// `includereferences`: include the manifest's references in manifest events.
    pub includereferences: bool,
}

/// An entry of `notifications.endpoints`, with registry:2's defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointConfig {
    /// `name` identifying the endpoint in logs.
    pub name: String,
    /// `disabled`: configured but not sent to.
    pub disabled: bool,
    /// `url` events are POSTed to.
    pub url: String,
    /// `headers` added to each request (an `Authorization` value is masked in output).
    pub headers: BTreeMap<String, Vec<String>>,
    /// `timeout` of each request, default 1s.
    #[serde(with = "go_duration")]
    pub timeout: Duration,
    /// `threshold`: failures before backing off, default 10.
    pub threshold: u32,
    /// `backoff` after failures, default 1s.
    #[serde(with = "go_duration")]
    pub backoff: Duration,
    /// `ignoredmediatypes`: target media types not sent.
    pub ignoredmediatypes: Vec<String>,
    /// `ignore`: media types and actions not sent.
    pub ignore: IgnoreConfig,
}

/// `notifications.endpoints[].ignore`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IgnoreConfig {
    /// `mediatypes` not sent.
    pub mediatypes: Vec<String>,
    /// `actions` (`pull`, `push`, `delete`, ...) not sent.
    pub actions: Vec<String>,
}
