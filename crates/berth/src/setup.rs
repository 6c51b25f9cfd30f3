//! Turns the configuration into running parts: the storage driver, the registry core and the
//! HTTP options. Anything configured that Berth cannot honour safely stops startup here with a
//! message naming the key.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_api::ApiOptions;
use berth_auth::htpasswd::HtpasswdController;
use berth_auth::issuer::{BuiltinConfig, TokenIssuer};
use berth_auth::limiter::FailureLimiter;
use berth_auth::token::{TokenController, TokenOptions};
use berth_auth::AccessController;
use berth_config::{AuthConfig, Config, Loaded, StorageDriverConfig};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::{FilesystemDriver, InMemoryDriver, StorageDriver};
use http::{HeaderName, HeaderValue};

/// Loads CONFIG (or the embedded default) with the process's `REGISTRY_*` overrides.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Loaded> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("REGISTRY_"))
        .collect();
    Ok(berth_config::load(path, &env)?)
}

/// Refuses configurations whose meaning Berth cannot honour yet and where running anyway
/// would be unsafe (serving without the configured auth or TLS).
pub fn check_supported(config: &Config) -> anyhow::Result<()> {
    match &config.auth {
        None | Some(AuthConfig::Htpasswd { .. } | AuthConfig::Token { .. }) => {}
        Some(other) => bail!(
            "auth.{} is configured, but Berth does not implement it; refusing to serve without it (use auth.htpasswd or auth.token, or remove the auth section to run an open registry)",
            other.name()
        ),
    }
    match &config.storage.driver {
        StorageDriverConfig::Filesystem { .. }
        | StorageDriverConfig::InMemory
        | StorageDriverConfig::S3 { .. } => Ok(()),
        StorageDriverConfig::Other { name, .. } => {
            bail!("storage driver {name:?} is not supported by Berth; use storage.filesystem or storage.s3")
        }
    }
}

/// Sections that parse but that this build does not act on yet, so the operator is told
/// instead of finding out later.
pub fn not_yet_implemented(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if config.storage.cache.blobdescriptor.is_some() {
        notes.push(
            "storage.cache is ignored: Berth needs no separate blob descriptor cache".to_owned(),
        );
    }
    notes
}

/// What the `auth` section turns into.
#[derive(Default)]
pub struct Auth {
    /// Who may do what; `None` without an `auth` section (an open registry).
    pub controller: Option<Arc<dyn AccessController>>,
    /// The built-in token server, with `auth.token.builtin`.
    pub issuer: Option<Arc<TokenIssuer>>,
}

/// Builds the access controller (and the built-in token server) for the `auth` section.
pub fn auth(config: &Config) -> anyhow::Result<Auth> {
    let login = &config.limits.login;
    let limiter =
        || FailureLimiter::with_limits(login.client_failures, login.account_failures, login.window);
    match &config.auth {
        None => Ok(Auth::default()),
        Some(AuthConfig::Htpasswd { realm, path, .. }) => {
            let controller =
                HtpasswdController::new(realm, path, limiter()).with_context(|| {
                    format!(
                        "auth.htpasswd.path: create the file with `berth htpasswd -f {} USER`",
                        path.display()
                    )
                })?;
            Ok(Auth {
                controller: Some(Arc::new(controller)),
                issuer: None,
            })
        }
        Some(AuthConfig::Token {
            realm,
            service,
            issuer,
            rootcertbundle,
            jwks,
            autoredirect,
            extra,
        }) => {
            let options = TokenOptions {
                realm: realm.clone(),
                service: service.clone(),
                issuer: issuer.clone(),
                rootcertbundle: rootcertbundle.clone(),
                jwks: jwks.clone(),
                autoredirect: *autoredirect,
                autoredirectpath: extra
                    .get("autoredirectpath")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
            };
            let Some(builtin) = extra.get("builtin") else {
                let controller = TokenController::new(options).context("auth.token")?;
                return Ok(Auth {
                    controller: Some(Arc::new(controller)),
                    issuer: None,
                });
            };
            let builtin: BuiltinConfig =
                serde_yaml::from_value(builtin.clone()).context("auth.token.builtin")?;
            require_shared_signing_key(config, &builtin.signingkey)?;
            let token_issuer = TokenIssuer::new(builtin, service, issuer)
                .context("auth.token.builtin")?
                .with_limiter(Arc::new(limiter()));
            let controller = token_issuer.controller(options).context("auth.token")?;
            Ok(Auth {
                controller: Some(Arc::new(controller)),
                issuer: Some(Arc::new(token_issuer)),
            })
        }
        Some(other) => bail!("auth.{} is not implemented", other.name()),
    }
}

/// A human description of where data lives, for the startup message.
pub fn storage_description(config: &Config) -> String {
    match &config.storage.driver {
        StorageDriverConfig::Filesystem { rootdirectory, .. } => {
            format!("filesystem at {}", rootdirectory.display())
        }
        StorageDriverConfig::InMemory => "in memory (lost on exit)".to_owned(),
        StorageDriverConfig::S3 { settings, .. } => {
            let options = crate::s3::options(config, settings);
            let root = options.root_directory.trim_matches('/');
            let under = if root.is_empty() {
                String::new()
            } else {
                format!(" under {root}/")
            };
            format!(
                "s3 bucket {}{under} at {}",
                options.bucket,
                options.service_url()
            )
        }
        other => format!("{other:?}"),
    }
}

/// The filesystem driver's root directory (for disk space metrics), if that is the driver.
pub fn filesystem_root(config: &Config) -> Option<std::path::PathBuf> {
    match &config.storage.driver {
        StorageDriverConfig::Filesystem { rootdirectory, .. } => Some(rootdirectory.clone()),
        _ => None,
    }
}

/// Starts the delivery tasks of `notifications`; `None` without an enabled endpoint.
pub fn notifier(
    config: &Config,
    listeners: Vec<berth_notify::Listener>,
) -> anyhow::Result<Option<berth_notify::Notifier>> {
    let source = berth_notify::source_record(&config.http.addr);
    Ok(berth_notify::Notifier::start_with(
        config.notifications.as_ref(),
        source,
        listeners,
    )?)
}

/// Builds the storage driver and the registry core. An S3 bucket is checked first (and probed
/// for conditional writes): a bad setting stops here with the key to fix.
pub async fn registry(config: &Config) -> anyhow::Result<Arc<Registry>> {
    let driver: Arc<dyn StorageDriver> = match &config.storage.driver {
        StorageDriverConfig::Filesystem {
            rootdirectory,
            fsync,
            ..
        } => Arc::new(
            FilesystemDriver::new(rootdirectory)
                .with_context(|| {
                    format!(
                        "cannot use storage.filesystem.rootdirectory {}",
                        rootdirectory.display()
                    )
                })?
                .with_sync(*fsync),
        ),
        StorageDriverConfig::InMemory => Arc::new(InMemoryDriver::new()),
        StorageDriverConfig::S3 { settings, .. } => crate::s3::driver(config, settings).await?,
        _ => {
            check_supported(config)?;
            bail!("unsupported storage driver")
        }
    };
    // registry:2 times every storage action for Prometheus; Berth only when metrics are on.
    let metrics = config
        .http
        .debug
        .as_ref()
        .is_some_and(|d| d.prometheus.enabled);
    let driver: Arc<dyn StorageDriver> = if metrics {
        Arc::new(berth_storage::Instrumented::new(driver))
    } else {
        driver
    };
    let options = RegistryOptions {
        delete_enabled: config.storage.delete_enabled,
        read_only: config.storage.maintenance.readonly_enabled,
    };
    let registry = Registry::new(driver, options);
    // On an object store a directory walk costs a request per directory: `_catalog` comes
    // from the repository index there (rebuilt by the server when incomplete).
    let object_store = matches!(config.storage.driver, StorageDriverConfig::S3 { .. });
    registry.set_catalog_index(object_store);
    // There, too, a manifest GET would cost two round trips for its links: a single node
    // reuses a resolution for a second. Nodes of a cluster (a `cluster` section) do not: a
    // client that deletes or moves a tag through one node and reads through the next must see
    // its own write (docs/scale-out.md), which is worth those two requests.
    if object_store && !config.cluster.configured {
        registry.set_resolve_cache_ttl(std::time::Duration::from_secs(1));
    }
    // Safe for the online collector of any node sharing this storage and configuration: it
    // requires delay >= 4 x refresh (docs/lifecycle.md).
    registry.set_touch_refresh(config.storage.maintenance.gc.delay / 4);
    registry.set_online_gc(config.storage.maintenance.gc.enabled);
    registry.set_max_references(config.limits.manifest_references);
    Ok(registry)
}

/// HTTP options from the `http` and `log` sections.
pub fn api_options(config: &Config) -> anyhow::Result<ApiOptions> {
    let mut headers = Vec::new();
    for (name, values) in &config.http.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("http.headers: invalid header name {name:?}"))?;
        for value in values {
            let v = HeaderValue::from_str(value)
                .with_context(|| format!("http.headers.{name}: invalid value {value:?}"))?;
            headers.push((header.clone(), v));
        }
    }
    Ok(ApiOptions {
        headers,
        access_log: !config.log.accesslog_disabled,
        relative_urls: config.http.relativeurls,
        host: config.http.host.clone().filter(|h| !h.is_empty()),
        prefix: config.http.prefix.clone(),
        tls: config.http.tls.is_some(),
        metrics: config
            .http
            .debug
            .as_ref()
            .is_some_and(|d| d.prometheus.enabled),
        root_redirect: None,
    })
}

/// On storage other nodes may share, every node must sign tokens with the same key, or a
/// token issued by one node is refused by the next: the key is provisioned (a file or a
/// mounted secret), never created by a node on its own.
fn require_shared_signing_key(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    if !crate::cluster::storage_may_be_shared(config) {
        return Ok(());
    }
    if !path.exists() {
        bail!(
            "auth.token.builtin.signingkey: {} does not exist. On shared storage ({}) every node must sign tokens with the same key, so Berth does not create one per node: create it once (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {}) and give the same file to every node",
            path.display(),
            if config.cluster.configured { "a cluster section is configured" } else { "an object store" },
            path.display()
        );
    }
    tracing::info!(path = %path.display(), "token signing key provisioned (shared storage: every node must use this same key)");
    Ok(())
}
