//! The HTTP server: binds the configured address (TCP or a unix socket), serves HTTP/1.1 and
//! HTTP/2 with hyper, and shuts down gracefully on SIGTERM/SIGINT: it stops accepting, lets
//! in-flight requests finish (up to `http.draintimeout`, 30 s when unset), then exits. Nothing
//! half-written can become visible, because every write is published by rename only once
//! complete.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Request;
use berth_api::sendfile::{FileSender, ZeroCopyStream};
use berth_api::{ClientAddr, Ctx};
use berth_config::Loaded;
use berth_registry::Registry;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tower::ServiceExt;

use crate::setup;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for in-flight requests when `http.draintimeout` is not set.
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The first and the longest pause after a failed accept (Go's net/http uses the same).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The pause between failed accepts, shared by the TCP and the unix-socket loops. An accept
/// error such as EMFILE (out of file descriptors) lasts while the pending connection waits in
/// the backlog, so accepting again at once would spin a core and flood the log: each failure
/// in a row doubles the pause, up to a second, and a success resets it.
#[derive(Default)]
struct AcceptBackoff {
    delay: Duration,
}

impl AcceptBackoff {
    /// The accepted connection, or `None` after logging the error and pausing.
    async fn accepted<T>(&mut self, result: std::io::Result<T>) -> Option<T> {
        match result {
            Ok(conn) => {
                self.delay = Duration::ZERO;
                Some(conn)
            }
            Err(e) => {
                self.delay = (self.delay * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                tracing::warn!(
                    error = %e,
                    retry_in_ms = self.delay.as_millis() as u64,
                    "accept failed"
                );
                tokio::time::sleep(self.delay).await;
                None
            }
        }
    }
}

/// Builds the repository index once when the storage has none yet (the first start on a
/// bucket, registry:2's included); until it is complete, `_catalog` walks the tree. Of several
/// nodes, the jobs runner builds it; the others look again every half minute, in case the
/// runner died before finishing and one of them runs the jobs now.
async fn complete_catalog_index(registry: Arc<Registry>, jobs: Arc<crate::cluster::Jobs>) {
    loop {
        match registry.catalog_index_needs_rebuild().await {
            Ok(false) => return,
            Ok(true) if jobs.may_run("first build of the repository index") => break,
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "could not check the repository index"),
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    match registry.catalog_index_needs_rebuild().await {
        Ok(false) => {}
        Ok(true) => {
            tracing::info!(
                "building the repository index for _catalog (first start on this storage)"
            );
            match registry.rebuild_catalog_index().await {
                Ok(n) => tracing::info!(repositories = n, "repository index complete"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not build the repository index; _catalog walks the storage until the next start")
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not check the repository index"),
    }
}

/// The API's options; with the web UI on, a browser asking for `/` is sent to it.
fn api_options(config: &berth_config::Config) -> anyhow::Result<berth_api::ApiOptions> {
    #[allow(unused_mut)] // changed only with the `ui` feature
    let mut options = setup::api_options(config)?;
    #[cfg(feature = "ui")]
    if config.ui.enabled {
        options.root_redirect = Some(berth_ui::base_path(&options.prefix));
    }
    Ok(options)
}

/// The UI's OIDC sign-in from `auth.oidc` (with the built-in token server, which the config
/// crate already required); its provider is asked for its discovery document in the
/// background, so that an unreachable or misconfigured one is a startup warning (sign-in
/// with it then shows an error page until it answers).
#[cfg(feature = "ui")]
fn oidc_signin(
    config: &berth_config::Config,
    login: berth_ui::LoginMode,
) -> anyhow::Result<Option<Arc<berth_ui::Oidc>>> {
    let Some(c) = &config.oidc else {
        return Ok(None);
    };
    if login != berth_ui::LoginMode::BuiltinToken {
        anyhow::bail!("auth.oidc needs auth.token.builtin (the built-in token server) beside it");
    }
    let oidc = Arc::new(
        berth_ui::Oidc::new(berth_ui::OidcSettings {
            realm: c.realm.clone(),
            issuer: c.expected_issuer().to_owned(),
            name: c.display_name(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            scopes: c.scopes.clone(),
            groups_claim: c.groups_claim.clone(),
            refresh_interval: c.refresh_interval,
        })
        .map_err(|e| anyhow::anyhow!("auth.oidc: {e}"))?,
    );
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let check = oidc.clone();
        let realm = c.realm.clone();
        runtime.spawn(async move {
            match check.check().await {
                Ok(()) => tracing::info!(realm, "OIDC identity provider found"),
                Err(e) => tracing::warn!(
                    realm,
                    error = %e,
                    "auth.oidc: the identity provider is not usable; signing in with it shows an error page until it is (password logins and existing sessions keep working)"
                ),
            }
        });
    }
    Ok(Some(oidc))
}

/// The application: the API, and the web UI's routes when it is built in and enabled.
fn app(
    config: &berth_config::Config,
    ctx: Arc<Ctx>,
    jobs: Arc<crate::cluster::Jobs>,
) -> anyhow::Result<axum::Router> {
    #[cfg(feature = "ui")]
    if config.ui.enabled {
        use berth_ui::LoginMode;
        let login = match &config.auth {
            None => LoginMode::Open,
            Some(berth_config::AuthConfig::Htpasswd { .. }) => LoginMode::Htpasswd,
            Some(berth_config::AuthConfig::Token { .. }) if ctx.token_issuer.is_some() => {
                LoginMode::BuiltinToken
            }
            Some(_) => LoginMode::Unsupported,
        };
        let admin = crate::ui_admin::UiAdmin::new(ctx.registry.clone(), config, jobs)?;
        let options = berth_ui::UiOptions {
            title: config.ui.title.clone(),
            pullhost: config.ui.pullhost.clone(),
            login,
            admin: Some(Arc::new(admin)),
            oidc: oidc_signin(config, login)?,
        };
        tracing::info!(
            path = berth_ui::base_path(&ctx.options.prefix),
            "web UI enabled"
        );
        return Ok(berth_ui::router(ctx.clone(), options).merge(berth_api::app(ctx)));
    }
    if config.oidc.is_some() {
        tracing::warn!(
            "auth.oidc is set, but the web UI is off (ui.enabled) or not built in: nobody can sign in with OIDC"
        );
    }
    #[cfg(not(feature = "ui"))]
    if config.ui.enabled {
        tracing::debug!("ui.enabled is set, but this binary was built without the web UI");
    }
    let _ = jobs;
    Ok(berth_api::app(ctx))
}

/// Runs the registry until a shutdown signal.
pub async fn serve(loaded: Loaded, config_path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let config = &loaded.config;
    setup::check_supported(config)?;
    let registry = setup::registry(config).await?;
    for note in setup::not_yet_implemented(config) {
        tracing::warn!("{note}");
    }
    // Built (and its spool directory checked) before this node may take the jobs lease: a
    // node that cannot start must not hold it on its way out.
    let proxy =
        berth_proxy::Proxy::from_config(config, registry.clone()).map_err(anyhow::Error::msg)?;
    let jobs = crate::cluster::start(config, registry.clone()).await;
    let purging = &config.storage.maintenance.uploadpurging;
    if purging.enabled {
        let (age, interval, dry_run) = (purging.age, purging.interval, purging.dryrun);
        let (registry, jobs) = (registry.clone(), jobs.clone());
        tokio::spawn(purge_uploads(registry, jobs, age, interval, dry_run));
    }
    if !registry.read_only() {
        tokio::spawn(complete_catalog_index(registry.clone(), jobs.clone()));
    }
    let gc_wake = crate::online_gc::spawn(
        &config.storage.maintenance.gc,
        registry.clone(),
        jobs.clone(),
    );
    crate::retention::spawn(
        &config.storage.maintenance.retention,
        registry.clone(),
        jobs.clone(),
    )?;
    crate::sync_job::spawn(&config.sync, registry.clone(), jobs.clone())?;
    tokio::spawn(reload_on_sighup(registry.clone(), config_path)?);
    let auth = setup::auth(config)?;
    let health = crate::health::start(config, registry.clone());
    crate::watermark::start(
        &config.storage.maintenance.diskwatermark,
        setup::filesystem_root(config),
        registry.clone(),
        gc_wake,
    );
    if let (Some(debug), Some(addr)) = (&config.http.debug, config.debug_listen_addr()) {
        let options = crate::debug_server::DebugOptions {
            addr,
            metrics_path: debug
                .prometheus
                .enabled
                .then(|| debug.prometheus.path.clone()),
            root: setup::filesystem_root(config),
            jobs: jobs.clone(),
        };
        crate::debug_server::start(options, health.clone(), registry.clone()).await?;
    }
    crate::proxy_cache::spawn(config, proxy.as_ref(), jobs.clone());
    if let (Some(issuer), Some(proxy)) = (&auth.issuer, &proxy) {
        // Tokens must name what the registry authorizes: the resolved repository.
        let proxy = proxy.clone();
        issuer.resolve_names_with(Arc::new(move |name: &str| {
            let name = name.parse().ok()?;
            let route = proxy.route(&name, None)?;
            (route.local != name).then(|| route.local.to_string())
        }));
    }
    // The scan hook (scan.enabled) hears pushes through the notifier; the scanner reaches this
    // server at the address bound below.
    let scan_addr = crate::scan_hook::ScanAddr::default();
    let scan_listeners =
        crate::scan_hook::listener(&config.scan, registry.clone(), scan_addr.clone())
            .into_iter()
            .collect();
    let ctx = Arc::new(Ctx {
        notifier: setup::notifier(config, scan_listeners)?,
        health,
        auth: auth.controller,
        token_issuer: auth.issuer,
        proxy,
        registry: registry.clone(),
        options: api_options(config)?,
    });
    let app = app(config, ctx, jobs.clone())?;
    let graceful = GracefulShutdown::new();
    let tls = match &config.http.tls {
        Some(settings) => Some(crate::tls::acceptor(settings, !config.http.http2_disabled)?),
        None => None,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Slowloris: a client must send its request headers within this time.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let storage = setup::storage_description(config);
    let mut shutdown = std::pin::pin!(shutdown_signal()?);

    if config.http.net == "unix" {
        let path = &config.http.addr;
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on unix socket {path}"))?;
        announce(&format!("unix:{path}"), &storage, &loaded.source);
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Some((stream, _)) = backoff.accepted(accepted).await else { continue };
                    let app = app.clone();
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| app.clone().oneshot(req.map(axum::body::Body::new)));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move { let _ = conn.await; });
                }
                _ = &mut shutdown => break,
            }
        }
    } else {
        let addr = config.listen_addr();
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on http.addr {addr}"))?;
        let local = listener.local_addr().context("listener has no address")?;
        let _ = scan_addr.set(crate::scan_hook::reachable(local));
        let scheme = if tls.is_some() { "https" } else { "http" };
        announce(&format!("{scheme}://{local}"), &storage, &loaded.source);
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Some((stream, peer)) = backoff.accepted(accepted).await else { continue };
                    // Small responses (manifests, upload steps) must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    let service = move |sender: Option<FileSender>| hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ClientAddr(peer));
                        if let Some(sender) = &sender {
                            req.extensions_mut().insert(sender.clone());
                        }
                        app.clone().oneshot(req.map(axum::body::Body::new))
                    });
                    match &tls {
                        None => {
                            // Blobs go out with sendfile(2) on plain connections.
                            let (stream, sender) = ZeroCopyStream::new(stream);
                            let conn = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service(Some(sender))).into_owned());
                            tokio::spawn(async move { let _ = conn.await; });
                        }
                        Some(acceptor) => {
                            let service = service(None);
                            // The handshake runs in the connection's task, bounded, so a client
                            // that connects and never speaks cannot hold the accept loop.
                            let (acceptor, builder) = (acceptor.clone(), builder.clone());
                            let watcher = graceful.watcher();
                            tokio::spawn(async move {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls_stream)) => {
                                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service).into_owned();
                                        let _ = watcher.watch(conn).await;
                                    }
                                    Ok(Err(e)) => tracing::info!(client = %peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::info!(client = %peer, "TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                _ = &mut shutdown => break,
            }
        }
    }

    // Another node takes the jobs over at once instead of when the lease runs out.
    jobs.release(&registry).await;
    let drain = config
        .http
        .draintimeout
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_DRAIN);
    tracing::info!(
        drain_seconds = drain.as_secs(),
        "shutting down: waiting for in-flight requests"
    );
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
    tracing::info!("stopped");
    Ok(())
}

/// `storage.maintenance.uploadpurging`: the first run waits a random part of the interval (at
/// most an hour, as registry:2 waits, so a fleet restarted together does not purge at once),
/// then one run every `interval` (at least a second).
async fn purge_uploads(
    registry: Arc<Registry>,
    jobs: Arc<crate::cluster::Jobs>,
    age: Duration,
    interval: Duration,
    dry_run: bool,
) {
    let interval = interval.max(Duration::from_secs(1));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = interval.min(Duration::from_secs(3600));
    tokio::time::sleep(spread.mul_f64(f64::from(nanos) / 1e9)).await;
    loop {
        if !jobs.may_run("upload purging") {
            tokio::time::sleep(interval).await;
            continue;
        }
        match registry.purge_uploads(age, dry_run).await {
            Ok(report) => {
                for upload in &report.purged {
                    tracing::info!(upload, dry_run, "purged abandoned upload");
                }
                tracing::info!(
                    purged = report.purged.len(),
                    kept = report.kept,
                    dry_run,
                    "upload purge done"
                );
            }
            Err(e) => tracing::error!(error = %e, "upload purge failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Prints where the registry listens and where its data lives, for humans and for tests
/// (which read the `listening on` line to learn the port when binding port 0).
fn announce(url: &str, storage: &str, source: &str) {
    println!(
        "berth {} listening on {url} (storage: {storage}; config: {source})",
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!(url, storage, config = source, "berth listening");
}

/// SIGHUP re-reads the configuration (file and `REGISTRY_*` environment) and applies what can
/// change without a restart: `storage.maintenance.readonly.enabled`, for backups and
/// migrations. A configuration that no longer loads is reported and ignored.
/// The handler is installed before this returns (not when the task first runs), so
/// a SIGHUP right after the `listening` line is never lost.
fn reload_on_sighup(
    registry: Arc<Registry>,
    path: Option<std::path::PathBuf>,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    Ok(async move {
        while hup.recv().await.is_some() {
            match setup::load_config(path.as_deref()) {
                Ok(loaded) => {
                    let read_only = loaded.config.storage.maintenance.readonly_enabled;
                    registry.set_read_only(read_only);
                    tracing::info!(read_only, "configuration reloaded (SIGHUP)");
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "configuration reload failed; keeping the running configuration"
                ),
            }
        }
    })
}

/// Installs the SIGTERM/SIGINT handlers *now* (before the `listening` line is
/// printed), so a signal sent the moment the port is announced is never lost to
/// the default action, which would kill the process without draining.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
