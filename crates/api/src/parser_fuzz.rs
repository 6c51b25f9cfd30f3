//! Time-bounded property tests for every parser that sees network input: repository names,
//! tags and references, digests, request paths, query strings, `Content-Range` and `Range`,
//! `Authorization: Basic` headers, token scopes, JWTs (junk and tampered valid tokens) and
//! manifests.
//!
//! Each parser gets `BERTH_FUZZ_SECONDS` (default 0.3 s; CI sets more) of generated inputs,
//! and the test prints how many cases ran, so CI shows the coverage of each run. A panic or a
//! broken property fails the test and prints the input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use berth_auth::access::Access;
use berth_auth::htpasswd::parse_basic;
use berth_auth::issuer::{BuiltinConfig, TokenIssuer};
use berth_auth::rules::Rule;
use berth_auth::token::{TokenController, TokenOptions};
use berth_auth::AuthRequest;
use berth_oci::{Digest, Manifest, Reference, RepoName, Tag};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRng, TestRunner};

use crate::endpoint::{self, Endpoint};
use crate::request::{parse_content_range, parse_range, Query};

/// The time each parser gets.
fn budget() -> Duration {
    let seconds = std::env::var("BERTH_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.3);
    Duration::from_secs_f64(seconds)
}

/// Runs `property` on values of `strategy` until the budget is spent; returns the case count.
/// The property returns `Err(why)` when the parser accepted or produced something it must not.
pub(crate) fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    mut property: impl FnMut(&S::Value) -> Result<(), String>,
) -> u64
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new_with_rng(
        Config {
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let deadline = Instant::now() + budget();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            let value = strategy
                .new_tree(&mut runner)
                .expect("strategy generates")
                .current();
            match catch_unwind(AssertUnwindSafe(|| property(&value))) {
                Ok(Ok(())) => {}
                Ok(Err(why)) => panic!("{name}: property broken by {value:?}: {why}"),
                Err(_) => panic!("{name}: parser panicked on {value:?}"),
            }
            cases += 1;
        }
    }
    println!("parser-fuzz: {name}: {cases} cases, 0 panics, 0 broken properties");
    cases
}

pub(crate) fn check(ok: bool, why: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why.to_owned())
    }
}

/// Strings made of the pieces attackers use in paths and names, plus anything at all.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_owned()),
        Just("/".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2F".to_owned()),
        Just("\\".to_owned()),
        Just("\0".to_owned()),
        "[a-z0-9._-]{1,8}",
        "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

fn names_tags_digests() -> u64 {
    let mut cases = fuzz("repository names", tricky_text(), |s| {
        match s.parse::<RepoName>() {
            Ok(name) => check(
                name.to_string() == *s
                    && !s.split('/').any(|c| c.is_empty() || c == "." || c == "..")
                    && !s.contains(['\\', '\0', '%']),
                "accepted a name with a path trick, or did not round-trip",
            ),
            Err(_) => Ok(()),
        }
    });
    cases += fuzz("tags and references", tricky_text(), |s| {
        if let Ok(tag) = s.parse::<Tag>() {
            // The OCI tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
            let b = s.as_bytes();
            check(
                tag.to_string() == *s
                    && b.len() <= 128
                    && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c)),
                "accepted an invalid tag",
            )?;
        }
        let _ = s.parse::<Reference>();
        Ok(())
    });
    let digestish = prop_oneof![
        "sha(256|512):[0-9a-fA-F]{0,130}",
        "[a-z0-9+._-]{1,10}:[a-zA-Z0-9=_-]{0,70}",
        "\\PC{0,80}",
    ];
    cases += fuzz("digests", digestish, |s| match s.parse::<Digest>() {
        Ok(d) => check(
            d.to_string() == *s && !s.contains(['/', '\\', '.'].as_ref()),
            "accepted a non-canonical digest",
        ),
        Err(_) => Ok(()),
    });
    cases
}

fn paths_and_queries() -> u64 {
    let path = prop_oneof![
        tricky_text().prop_map(|t| format!("/v2/{t}")),
        (
            tricky_text(),
            prop_oneof![
                Just("/manifests/"),
                Just("/blobs/"),
                Just("/blobs/uploads/"),
                Just("/tags/list"),
                Just("/referrers/"),
            ],
            tricky_text()
        )
            .prop_map(|(n, s, r)| format!("/v2/{n}{s}{r}")),
        "\\PC{0,60}",
    ];
    let mut cases = fuzz("request paths", path, |p| {
        let Ok(endpoint) = endpoint::parse(p) else {
            return Ok(());
        };
        if let Endpoint::Upload(_, id) = &endpoint {
            check(
                !id.contains(['/', '\\', '.'].as_ref()) && !id.is_empty(),
                "upload id with a path character",
            )?;
        }
        match endpoint.repository() {
            Some(name) => check(
                !name
                    .to_string()
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".."),
                "repository name with a path trick",
            ),
            None => Ok(()),
        }
    });
    cases += fuzz("query strings", "\\PC{0,80}", |q| {
        let query = Query::parse(Some(q));
        let _ = query.page_size();
        let _ = query.get("n");
        Ok(())
    });
    cases
}

/// Numbers where arithmetic breaks: 0, 1, around 2^63 and 2^64, just past u64, and any u64.
fn extreme_number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just(u64::MAX.to_string()),
        Just((u64::MAX - 1).to_string()),
        Just((1u64 << 63).to_string()),
        Just("18446744073709551616".to_owned()),
        Just("00000000000000000000001".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
    ]
}

fn ranges() -> u64 {
    let extremes = (extreme_number(), extreme_number(), any::<bool>())
        .prop_map(|(a, b, prefix)| format!("{}{a}-{b}", if prefix { "bytes=" } else { "" }));
    let range_text = prop_oneof![
        "(bytes[= ])?[0-9]{0,22}-[0-9]{0,22}(/[0-9*]{0,5})?",
        "\\PC{0,40}",
        extremes,
    ];
    let mut cases = fuzz(
        "Content-Range",
        range_text.clone(),
        |v| match parse_content_range(v) {
            Ok((start, len)) => check(
                len >= 1 && start.checked_add(len - 1).is_some(),
                "range with an overflowing or empty length",
            ),
            Err(_) => Ok(()),
        },
    );
    cases += fuzz(
        "Range",
        (range_text, any::<u64>(), 0u64..4096),
        |(v, big, small)| {
            for size in [*big, *small] {
                if let Ok(Some((start, end))) = parse_range(Some(v), size) {
                    check(start <= end && end < size, "range outside the blob")?;
                }
            }
            Ok(())
        },
    );
    cases
}

fn authorization_headers() -> u64 {
    use base64::Engine;
    let header = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )),
        "(Basic|basic|Bearer|BASIC)? ?\\PC{0,60}",
    ];
    let mut cases = fuzz("Authorization: Basic", header, |h| {
        if let Some((user, _password)) = parse_basic(h) {
            check(!user.contains(':'), "user name with a colon")?;
        }
        Ok(())
    });
    let scope = prop_oneof![
        "(repository|registry|repository\\(plugin\\)):[a-z0-9/._:-]{0,30}:[a-z,*]{0,20}",
        "\\PC{0,60}",
    ];
    cases += fuzz("token scopes", scope, |s| {
        let _ = Access::parse_scope(s);
        Ok(())
    });
    cases
}

/// A controller trusting a fresh built-in issuer, and a valid token from it.
fn issuer_and_token() -> (TokenController, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BuiltinConfig {
        htpasswd: None,
        signingkey: dir.path().join("key.pem"),
        ttl: Duration::from_secs(300),
        serviceaccounts: Vec::new(),
        rules: vec![Rule::new(&["**"], &["anonymous"], &["pull"]).expect("rule")],
        admins: Vec::new(),
        admin_groups: Vec::new(),
    };
    let issuer = TokenIssuer::new(config, "registry.test", "berth-fuzz").expect("issuer");
    let controller = issuer
        .controller(TokenOptions::default())
        .expect("controller");
    let request = AuthRequest {
        authorization: None,
        client: None,
        origin: None,
    };
    let params = [("scope".to_owned(), "repository:fuzz/app:pull".to_owned())];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let token = runtime
        .block_on(issuer.issue(&request, &params))
        .expect("anonymous token")
        .token;
    (controller, token, dir)
}

fn jwts() -> u64 {
    let (controller, token, _dir) = issuer_and_token();
    let now = berth_now();
    assert!(
        controller.verify(&token, now).is_ok(),
        "the valid token verifies"
    );
    let mut cases = fuzz(
        "JWTs (junk)",
        prop_oneof![
            "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
            "\\PC{0,200}",
        ],
        |t| check(controller.verify(t, now).is_err(), "junk verified"),
    );
    // Tampering: change one character that is not the last of its segment (the last one may
    // carry only padding bits), or cut or extend the token. None of these may verify.
    let len = token.len();
    let tamper = (0..len, "[A-Za-z0-9_.=-]", 0u8..3);
    cases += fuzz("JWTs (tampered valid token)", tamper, |(at, ch, how)| {
        let mut bytes = token.clone().into_bytes();
        let forged = match how {
            0 => {
                let last_of_segment = *at + 1 == len || bytes[*at + 1] == b'.';
                if last_of_segment || bytes[*at] == ch.as_bytes()[0] {
                    return Ok(());
                }
                bytes[*at] = ch.as_bytes()[0];
                String::from_utf8(bytes).map_err(|e| e.to_string())?
            }
            1 => token[..*at].to_owned(),
            _ => format!("{token}{ch}"),
        };
        check(
            controller.verify(&forged, now).is_err(),
            "a tampered token verified",
        )
    });
    cases
}

fn berth_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn manifests() -> u64 {
    let content_type = prop_oneof![
        Just(None),
        Just(Some(
            "application/vnd.oci.image.manifest.v1+json".to_owned()
        )),
        Just(Some("application/vnd.oci.image.index.v1+json".to_owned())),
        Just(Some(
            "application/vnd.docker.distribution.manifest.v2+json".to_owned()
        )),
        "\\PC{0,30}".prop_map(Some),
    ];
    let json_like = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        manifest_json().prop_map(String::into_bytes),
    ];
    fuzz("manifests", (json_like, content_type), |(body, ct)| {
        let _ = Manifest::parse(body, ct.as_deref());
        Ok(())
    })
}

/// Manifest-shaped JSON with fields of the wrong types, huge sizes and odd digests.
fn manifest_json() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("2".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        "\"\\PC{0,10}\"",
        Just(
            "\"sha256:0000000000000000000000000000000000000000000000000000000000000000\""
                .to_owned()
        ),
    ];
    let descriptor = (value.clone(), value.clone(), value.clone())
        .prop_map(|(m, d, s)| format!(r#"{{"mediaType":{m},"digest":{d},"size":{s}}}"#));
    (
        value.clone(),
        value,
        descriptor.clone(),
        proptest::collection::vec(descriptor, 0..4),
    )
        .prop_map(|(version, media_type, config, layers)| {
            format!(
                r#"{{"schemaVersion":{version},"mediaType":{media_type},"config":{config},"layers":[{}],"manifests":[{}]}}"#,
                layers.join(","),
                layers.join(",")
            )
        })
}

#[test]
fn every_network_parser_survives_generated_input() {
    let total = names_tags_digests()
        + paths_and_queries()
        + ranges()
        + authorization_headers()
        + jwts()
        + manifests();
    println!("parser-fuzz: total {total} cases, 0 panics");
}
