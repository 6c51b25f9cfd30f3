//! registry:2's health checks, polled in the background: `health.storagedriver` (storage
//! answers), `health.file` (unhealthy while a file exists), `health.http` (a HEAD request gets
//! the expected status) and `health.tcp` (a connection succeeds). Each check is named as in
//! registry:2 (`storagedriver_<driver>`, the file path, the URI, the address) and reports
//! through [`HealthState`], which the API and `/debug/health` read.
//!
//! One deliberate difference: the first poll runs at startup, not one interval later, so a
//! registry that starts on a broken disk is not reported healthy for the first 10 s.

use std::sync::Arc;
use std::time::Duration;

use berth_api::health::HealthState;
use berth_config::{Config, HealthConfig, StorageDriverConfig};
use berth_registry::Registry;

/// Registers every configured check and starts its poller.
pub fn start(config: &Config, registry: Arc<Registry>) -> Arc<HealthState> {
    let state = Arc::new(HealthState::default());
    let health: &HealthConfig = &config.health;
    if health.storagedriver.enabled {
        let name = format!("storagedriver_{}", driver_name(&config.storage.driver));
        let registry = registry.clone();
        poll(
            &state,
            name,
            health.storagedriver.threshold,
            health.storagedriver.interval,
            move || {
                let registry = registry.clone();
                async move { registry.check_storage().await.map_err(|e| e.to_string()) }
            },
        );
    }
    for check in &health.file {
        let file = check.file.clone();
        poll(
            &state,
            file.display().to_string(),
            // registry:2 ignores a threshold on file checks.
            1,
            check.interval,
            move || {
                let file = file.clone();
                async move {
                    match tokio::fs::metadata(&file).await {
                        Ok(_) => Err("file exists".to_owned()),
                        Err(_) => Ok(()),
                    }
                }
            },
        );
    }
    for check in &health.http {
        let client = http_client(check.timeout);
        let (uri, status, headers) = (check.uri.clone(), check.statuscode, check.headers.clone());
        poll(
            &state,
            uri.clone(),
            check.threshold,
            check.interval,
            move || {
                let (client, uri, headers) = (client.clone(), uri.clone(), headers.clone());
                async move {
                    let mut request = client.head(&uri);
                    for (name, values) in &headers {
                        for value in values {
                            request = request.header(name, value);
                        }
                    }
                    match request.send().await {
                        Ok(r) if r.status().as_u16() == status => Ok(()),
                        Ok(r) => Err(format!(
                            "downstream service returned unexpected status: {}",
                            r.status().as_u16()
                        )),
                        Err(e) => Err(format!("error while checking: {uri}: {e}")),
                    }
                }
            },
        );
    }
    for check in &health.tcp {
        let (addr, timeout) = (check.addr.clone(), check.timeout);
        poll(
            &state,
            addr.clone(),
            check.threshold,
            check.interval,
            move || {
                let addr = addr.clone();
                async move {
                    let connect = tokio::net::TcpStream::connect(addr.clone());
                    let connected = match timeout {
                        Some(t) => tokio::time::timeout(t, connect).await.ok(),
                        None => Some(connect.await),
                    };
                    match connected {
                        Some(Ok(_)) => Ok(()),
                        _ => Err(format!("connection to {addr} failed")),
                    }
                }
            },
        );
    }
    state
}

/// Registers `name` and polls `check` every `interval` (registry:2's default 10 s when 0).
fn poll<F, Fut>(
    state: &Arc<HealthState>,
    name: String,
    threshold: u32,
    interval: Duration,
    check: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    state.register(&name, threshold);
    let interval = if interval.is_zero() {
        Duration::from_secs(10)
    } else {
        interval
    };
    tracing::info!(
        check = name,
        interval_s = interval.as_secs_f64(),
        threshold,
        "health check configured"
    );
    let state = state.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            state.update(&name, check().await.err());
        }
    });
}

fn http_client(timeout: Option<Duration>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "health.http: cannot build the HTTP client; checking without a timeout");
        reqwest::Client::default()
    })
}

/// registry:2's storage type name, used in the check's name.
fn driver_name(driver: &StorageDriverConfig) -> &str {
    match driver {
        StorageDriverConfig::Filesystem { .. } => "filesystem",
        StorageDriverConfig::InMemory => "inmemory",
        StorageDriverConfig::S3 { .. } => "s3aws",
        StorageDriverConfig::Other { name, .. } => name,
    }
}
