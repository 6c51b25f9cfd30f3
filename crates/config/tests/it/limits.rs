//! `limits` (Berth extension): failed-login limits per client address and per account, and the
//! cap on references per manifest. Defaults when absent, values from the file and from
//! `REGISTRY_LIMITS_*`, zero and out-of-range values refused naming the key, unknown keys
//! warned about, and the section written back by `to_yaml` / `to_masked_yaml`.

use std::time::Duration;

use berth_config::{LimitsConfig, LoginLimits};

use crate::{assert_warning, env, err, ok, MINIMAL};

const FULL: &str = "\
limits:
  login:
    clientfailures: 50
    accountfailures: 5
    window: 15m
  manifests:
    maxreferences: 2500
";

#[test]
fn defaults_when_absent() {
    let expected = LimitsConfig {
        login: LoginLimits {
            client_failures: 30,
            account_failures: 10,
            window: Duration::from_secs(5 * 60),
        },
        manifest_references: 1000,
    };
    assert_eq!(LimitsConfig::default(), expected);
    for yaml in [
        MINIMAL.to_owned(),
        format!("{MINIMAL}limits:\n"),
        format!("{MINIMAL}limits: {{}}\n"),
        format!("{MINIMAL}limits:\n  login:\n  manifests: {{}}\n"),
        format!("{MINIMAL}limits:\n  login: {{clientfailures: null, window: null}}\n"),
    ] {
        let loaded = ok(&yaml, &[]);
        assert!(loaded.warnings.is_empty(), "{yaml}: {:#?}", loaded.warnings);
        assert_eq!(loaded.config.limits, expected, "{yaml}");
    }
    let embedded = berth_config::load(None, &env(&[("BERTH_DATA_DIR", "/tmp/berth-test-data")]))
        .expect("embedded default loads");
    assert_eq!(embedded.config.limits, expected);
}

#[test]
fn values_from_yaml() {
    let loaded = ok(&format!("{MINIMAL}{FULL}"), &[]);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.config.limits,
        LimitsConfig {
            login: LoginLimits {
                client_failures: 50,
                account_failures: 5,
                window: Duration::from_secs(15 * 60),
            },
            manifest_references: 2500,
        }
    );
    // Each key on its own; the others keep their defaults. Bounds are inclusive.
    let one = ok(
        &format!("{MINIMAL}limits:\n  login: {{accountfailures: 1, window: 24h}}\n  manifests: {{maxreferences: 1000000}}\n"),
        &[],
    );
    assert!(one.warnings.is_empty(), "{:#?}", one.warnings);
    let l = &one.config.limits;
    assert_eq!(l.login.client_failures, 30);
    assert_eq!(l.login.account_failures, 1);
    assert_eq!(l.login.window, Duration::from_secs(24 * 3600));
    assert_eq!(l.manifest_references, 1_000_000);
    // Numbers written as strings and keys in another case are read like everywhere else.
    let spelled = ok(
        &format!("{MINIMAL}Limits:\n  Login:\n    ClientFailures: '7'\n    Window: 1m30s\n"),
        &[],
    );
    assert!(spelled.warnings.is_empty(), "{:#?}", spelled.warnings);
    assert_eq!(spelled.config.limits.login.client_failures, 7);
    assert_eq!(spelled.config.limits.login.window, Duration::from_secs(90));
}

#[test]
fn window_is_a_go_duration_like_the_rest_of_the_file() {
    // registry:2 reads a bare number as nanoseconds; so does Berth, with the usual warning.
    let loaded = ok(
        &format!("{MINIMAL}limits:\n  login:\n    window: 300\n"),
        &[],
    );
    assert_eq!(loaded.config.limits.login.window, Duration::from_nanos(300));
    assert_warning(
        &loaded,
        &["limits.login.window", "300 nanoseconds", "\"300s\""],
    );
    let e = err(
        &format!("{MINIMAL}limits:\n  login:\n    window: 1d\n"),
        &[],
    );
    assert!(
        e.contains("limits.login.window: invalid value \"1d\": expected a duration"),
        "{e}"
    );
}

#[test]
fn env_overrides() {
    let loaded = ok(
        MINIMAL,
        &[
            ("REGISTRY_LIMITS_LOGIN_CLIENTFAILURES", "5"),
            ("REGISTRY_LIMITS_LOGIN_ACCOUNTFAILURES", "3"),
            ("REGISTRY_LIMITS_LOGIN_WINDOW", "90s"),
            ("REGISTRY_LIMITS_MANIFESTS_MAXREFERENCES", "50"),
        ],
    );
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.config.limits,
        LimitsConfig {
            login: LoginLimits {
                client_failures: 5,
                account_failures: 3,
                window: Duration::from_secs(90),
            },
            manifest_references: 50,
        }
    );
    // Over file values: the variable wins, the other keys keep the file's values.
    let over = ok(
        &format!("{MINIMAL}{FULL}"),
        &[("REGISTRY_LIMITS_MANIFESTS_MAXREFERENCES", "50")],
    );
    assert_eq!(over.config.limits.manifest_references, 50);
    assert_eq!(over.config.limits.login.client_failures, 50);
    assert_eq!(
        over.config.limits.login.window,
        Duration::from_secs(15 * 60)
    );
    // A whole section as YAML, like registry:2's overrides.
    let section = ok(
        MINIMAL,
        &[("REGISTRY_LIMITS_LOGIN", "{clientfailures: 8, window: 1h}")],
    );
    assert_eq!(section.config.limits.login.client_failures, 8);
    assert_eq!(section.config.limits.login.account_failures, 10);
    assert_eq!(
        section.config.limits.login.window,
        Duration::from_secs(3600)
    );
    // A misspelled variable is ignored with a suggestion.
    let typo = ok(MINIMAL, &[("REGISTRY_LIMITS_LOGIN_CLIENTFAILURE", "5")]);
    assert_eq!(typo.config.limits, LimitsConfig::default());
    assert_warning(
        &typo,
        &[
            "REGISTRY_LIMITS_LOGIN_CLIENTFAILURE",
            "did you mean REGISTRY_LIMITS_LOGIN_CLIENTFAILURES?",
        ],
    );
}

#[test]
fn zero_is_refused_naming_the_key() {
    for (section, key) in [
        ("login", "clientfailures"),
        ("login", "accountfailures"),
        ("manifests", "maxreferences"),
    ] {
        let e = err(
            &format!("{MINIMAL}limits:\n  {section}:\n    {key}: 0\n"),
            &[],
        );
        assert!(
            e.contains(&format!(
                "config.yml: limits.{section}.{key}: invalid value 0: expected a whole number of at least 1"
            )),
            "{e}"
        );
    }
    let e = err(
        &format!("{MINIMAL}limits:\n  login:\n    window: 0s\n"),
        &[],
    );
    assert!(
        e.contains("config.yml: limits.login.window: invalid value \"0s\": expected a duration of more than 0 and at most 24h"),
        "{e}"
    );
    // From the environment, the error names the variable.
    let e = err(MINIMAL, &[("REGISTRY_LIMITS_LOGIN_ACCOUNTFAILURES", "0")]);
    assert!(
        e.starts_with("environment variable REGISTRY_LIMITS_LOGIN_ACCOUNTFAILURES: limits.login.accountfailures: invalid value 0"),
        "{e}"
    );
}

#[test]
fn bad_values_are_refused_naming_the_key() {
    let cases = [
        (
            "login:\n    clientfailures: 4294967296",
            "limits.login.clientfailures: invalid value 4294967296: expected a whole number of at least 1 and at most 4294967295",
        ),
        (
            "login:\n    clientfailures: -1",
            "limits.login.clientfailures: invalid value -1",
        ),
        (
            "login:\n    accountfailures: many",
            "limits.login.accountfailures: invalid value \"many\"",
        ),
        (
            "login:\n    accountfailures: 2.5",
            "limits.login.accountfailures: invalid value 2.5",
        ),
        (
            "login:\n    window: 25h",
            "limits.login.window: invalid value \"25h\": expected a duration of more than 0 and at most 24h",
        ),
        (
            "login:\n    window: soon",
            "limits.login.window: invalid value \"soon\": expected a duration",
        ),
        (
            "manifests:\n    maxreferences: 1000001",
            "limits.manifests.maxreferences: invalid value 1000001: expected a whole number of at least 1 and at most 1000000",
        ),
        (
            "manifests:\n    maxreferences: [1]",
            "limits.manifests.maxreferences: invalid value (a list)",
        ),
        (
            "login: 5",
            "limits.login: invalid value 5: expected a mapping of keys",
        ),
    ];
    for (body, expected) in cases {
        let e = err(&format!("{MINIMAL}limits:\n  {body}\n"), &[]);
        assert!(e.contains("/config.yml: limits."), "{e}");
        assert!(e.contains(expected), "{body}: {e}");
    }
    let e = err(&format!("{MINIMAL}limits: 5\n"), &[]);
    assert!(
        e.contains("limits: invalid value 5: expected a mapping of keys"),
        "{e}"
    );
}

#[test]
fn unknown_keys_warn_with_suggestions() {
    let loaded = ok(
        &format!(
            "{MINIMAL}limits:\n  login:\n    clientfailure: 5\n    accountfailures: 4\n  manifest:\n    maxreferences: 9\n  uploads: {{}}\n"
        ),
        &[],
    );
    assert_warning(
        &loaded,
        &[
            "unknown config key \"limits.login.clientfailure\" (ignored)",
            "did you mean \"limits.login.clientfailures\"?",
        ],
    );
    assert_warning(
        &loaded,
        &[
            "unknown config key \"limits.manifest\" (ignored)",
            "did you mean \"limits.manifests\"?",
        ],
    );
    assert_warning(
        &loaded,
        &["unknown config key \"limits.uploads\" (ignored)"],
    );
    assert_eq!(loaded.warnings.len(), 3, "{:#?}", loaded.warnings);
    let l = &loaded.config.limits;
    assert_eq!(l.login.client_failures, 30, "misspelled key is ignored");
    assert_eq!(l.login.account_failures, 4);
    assert_eq!(l.manifest_references, 1000);
}

#[test]
fn emitted_and_round_trips() {
    let loaded = ok(
        &format!("{MINIMAL}{FULL}"),
        &[("REGISTRY_LIMITS_LOGIN_WINDOW", "1h30m")],
    );
    let text = loaded.config.to_yaml();
    let tree: serde_yaml::Value = serde_yaml::from_str(&text).expect("emitted YAML");
    let limits = &tree["limits"];
    assert_eq!(
        limits["login"]["clientfailures"],
        serde_yaml::Value::from(50)
    );
    assert_eq!(
        limits["login"]["accountfailures"],
        serde_yaml::Value::from(5)
    );
    assert_eq!(limits["login"]["window"], serde_yaml::Value::from("1h30m"));
    assert_eq!(
        limits["manifests"]["maxreferences"],
        serde_yaml::Value::from(2500)
    );
    let again = berth_config::load_str(&text, "effective.yml", &[]).expect("emitted YAML loads");
    assert!(again.warnings.is_empty(), "{:#?}", again.warnings);
    assert_eq!(again.config, loaded.config, "{text}");
}

#[test]
fn config_check_shows_the_defaults() {
    // `berth config check` prints `to_masked_yaml`: the limits in effect are visible even when
    // the file does not mention them, and nothing in the section is masked.
    let loaded = ok("version: 0.1\nstorage: inmemory\n", &[]);
    let masked = loaded.config.to_masked_yaml();
    assert!(
        masked.contains(
            "limits:\n  login:\n    clientfailures: 30\n    accountfailures: 10\n    window: 5m\n  manifests:\n    maxreferences: 1000\n"
        ),
        "{masked}"
    );
    let again = berth_config::load_str(&masked, "masked.yml", &[]).expect("masked output loads");
    assert_eq!(again.config.limits, LimitsConfig::default());
    // The Rust-shaped serde form round-trips too (the window as a Go duration).
    let json = serde_json::to_string(&loaded.config.limits).expect("serializes");
    assert!(json.contains("\"window\":\"5m\""), "{json}");
    let back: LimitsConfig = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, loaded.config.limits);
}
