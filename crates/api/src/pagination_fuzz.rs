//! Time-bounded property tests of the pagination parameters (`n`, `last`) of the catalog and
//! the tags list, through the real router, with an access controller that hides half the
//! repositories (the probe found `?n=0` looping forever only when auth was on). Every answer
//! must come within a deadline, hold at most `n` names, and following its `Link` headers must
//! end.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use berth_auth::{Access, AccessController, AuthRequest, Denied, Grant};
use berth_oci::{Digest, RepoName};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::InMemoryDriver;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;

use crate::parser_fuzz::{check, fuzz};
use crate::{app, ApiOptions, Ctx};

/// Lets everyone list the catalog, but shows only repositories whose name ends in an even digit.
struct HalfHidden;

#[async_trait::async_trait]
impl AccessController for HalfHidden {
    async fn authorize(&self, _: &AuthRequest<'_>, _: &[Access]) -> Result<Grant, Denied> {
        Ok(Grant::default())
    }

    fn may_list(&self, _: &Grant, repository: &str) -> bool {
        repository
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_digit() && (b - b'0').is_multiple_of(2))
    }
}

const REPOS: usize = 24;
const TAGS: usize = 12;

async fn registry() -> Arc<Registry> {
    let registry = Registry::new(Arc::new(InMemoryDriver::new()), RegistryOptions::default());
    let config = Bytes::from_static(b"{}");
    let config_digest = Digest::sha256_of(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
    for i in 0..REPOS {
        let repo: RepoName = format!("team/r{i:02}").parse().expect("name");
        let body: berth_registry::BodyStream =
            Box::pin(futures_util::stream::iter([Ok(config.clone())]));
        registry
            .put_blob(&repo, &config_digest, body)
            .await
            .expect("config blob");
        for t in 0..TAGS {
            let tag = format!("t{t:02}").parse().expect("tag");
            registry
                .put_manifest(
                    &repo,
                    &tag,
                    Some("application/vnd.oci.image.manifest.v1+json"),
                    Bytes::from(manifest.clone()),
                )
                .await
                .expect("manifest");
        }
    }
    registry
}

/// `n` and `last` values where pagination loops go wrong.
fn pagination_params() -> impl Strategy<Value = (Option<String>, Option<String>)> {
    let n = prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just(String::new()),
        (0usize..40).prop_map(|n| n.to_string()),
        "\\PC{0,6}",
    ];
    let last = prop_oneof![
        Just(String::new()),
        Just("team/r05".to_owned()),
        Just("team/r23".to_owned()),
        Just("zzz".to_owned()),
        Just("t05".to_owned()),
        "[a-z0-9/._-]{0,12}",
    ];
    (proptest::option::of(n), proptest::option::of(last))
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Follows `uri` and its `Link` headers; returns the pages seen, or why it failed.
async fn walk(router: &axum::Router, uri: String, key: &str) -> Result<usize, String> {
    let mut next = Some(uri);
    let mut pages = 0usize;
    let n = next
        .as_deref()
        .and_then(|u| u.split("n=").nth(1))
        .and_then(|v| v.split('&').next())
        .and_then(|v| v.parse::<usize>().ok());
    while let Some(uri) = next.take() {
        pages += 1;
        if pages > REPOS * TAGS + 2 {
            return Err(format!("Link headers did not end ({uri})"));
        }
        let request = Request::get(&uri)
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let call = router.clone().oneshot(request);
        let response = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .map_err(|_| format!("{uri}: no answer within 5 s"))?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let link = response
            .headers()
            .get(http::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status == StatusCode::BAD_REQUEST {
            return Ok(pages);
        }
        check(status == StatusCode::OK, &format!("{uri}: status {status}"))?;
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("{uri}: {e}"))?;
        let items = value[key].as_array().map_or(0, Vec::len);
        if let Some(n) = n {
            check(items <= n, &format!("{uri}: {items} items for n={n}"))?;
        }
        next = link.and_then(|l| {
            let start = l.find('<')? + 1;
            let end = l.find('>')?;
            Some(l[start..end].to_owned())
        });
    }
    Ok(pages)
}

#[test]
fn pagination_parameters_always_terminate() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let registry = runtime.block_on(registry());
    let router = app(Arc::new(Ctx {
        registry,
        options: ApiOptions {
            relative_urls: true,
            ..ApiOptions::default()
        },
        auth: Some(Arc::new(HalfHidden)),
        token_issuer: None,
        proxy: None,
        notifier: None,
        health: Default::default(),
    }));
    fuzz(
        "catalog and tags pagination (auth on)",
        pagination_params(),
        |(n, last)| {
            let mut query = Vec::new();
            if let Some(n) = n {
                query.push(format!("n={}", encode(n)));
            }
            if let Some(last) = last {
                query.push(format!("last={}", encode(last)));
            }
            let query = query.join("&");
            runtime.block_on(async {
                walk(&router, format!("/v2/_catalog?{query}"), "repositories").await?;
                walk(&router, format!("/v2/team/r04/tags/list?{query}"), "tags").await?;
                Ok(())
            })
        },
    );
}
