use crate::{load_str, ConfigError, MASK};

const TOKEN: &str = "version: 0.1
storage: {inmemory: {}}
auth:
  token:
    realm: https://reg.example/token
    service: reg
    issuer: berth
    builtin: {signingkey: /tmp/k.pem}
";

fn load(oidc: &str, env: &[(&str, &str)]) -> Result<crate::Loaded, ConfigError> {
    let text = format!("{TOKEN}  oidc:\n{oidc}");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    load_str(&text, "config.yml", &env)
}

#[test]
fn defaults_and_the_issuer_beside_the_token_server() {
    let loaded = load(
        "    realm: https://id.example/application/o/berth/\n    client_id: berth\n",
        &[],
    )
    .expect("valid");
    let oidc = loaded.config.oidc.expect("oidc");
    assert_eq!(
        oidc.expected_issuer(),
        "https://id.example/application/o/berth/"
    );
    assert_eq!(oidc.display_name(), "id.example");
    assert_eq!(oidc.scopes, ["openid", "profile", "email", "groups"]);
    assert_eq!(oidc.groups_claim, "groups");
    assert_eq!(oidc.refresh_interval, std::time::Duration::from_secs(300));
    assert_eq!(oidc.client_secret, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.auth.map(|a| a.name()), Some("token"));
}

#[test]
fn environment_overrides_every_key() {
    let loaded = load(
        "    realm: https://id.example/\n    client_id: x\n",
        &[
            ("REGISTRY_AUTH_OIDC_CLIENT_ID", "berth"),
            ("REGISTRY_AUTH_OIDC_CLIENT_SECRET", "s3cret"),
            ("REGISTRY_AUTH_OIDC_GROUPS_CLAIM", "roles"),
            ("REGISTRY_AUTH_OIDC_REFRESH_INTERVAL", "90s"),
            ("REGISTRY_AUTH_OIDC_SCOPES", "[profile, groups]"),
            ("REGISTRY_AUTH_OIDC_SERVICE", "Keycloak"),
            ("REGISTRY_AUTH_OIDC_ISSUER", "https://kc.example/realms/r"),
        ],
    )
    .expect("valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let oidc = loaded.config.oidc.clone().expect("oidc");
    assert_eq!(oidc.client_id, "berth");
    assert_eq!(oidc.client_secret.as_deref(), Some("s3cret"));
    assert_eq!(oidc.groups_claim, "roles");
    assert_eq!(oidc.refresh_interval, std::time::Duration::from_secs(90));
    // `openid` is always asked for.
    assert_eq!(oidc.scopes, ["openid", "profile", "groups"]);
    assert_eq!(oidc.display_name(), "Keycloak");
    assert_eq!(oidc.expected_issuer(), "https://kc.example/realms/r");
    // Written back, masked and not, and loaded again: the same section.
    let masked = loaded.config.to_masked_yaml();
    assert!(
        masked.contains(MASK) && !masked.contains("s3cret"),
        "{masked}"
    );
    let again = load_str(&loaded.config.to_yaml(), "again", &[]).expect("reload");
    assert_eq!(again.config.oidc, Some(oidc));
}

#[test]
fn secret_from_a_file() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-file\n").expect("write");
    let loaded = load(
        &format!(
            "    realm: https://id.example/\n    client_id: b\n    client_secret_file: {}\n",
            file.display()
        ),
        &[],
    )
    .expect("valid");
    assert_eq!(
        loaded.config.oidc.and_then(|o| o.client_secret).as_deref(),
        Some("from-file")
    );
}

#[test]
fn errors_name_the_key() {
    let err = |oidc: &str| load(oidc, &[]).expect_err("refused").to_string();
    let e = err("    realm: http://id.example/\n    client_id: b\n");
    assert!(
        e.contains("auth.oidc.realm") && e.contains("loopback"),
        "{e}"
    );
    let e = err("    realm: https://id.example/\n    issuer: ftp://x/\n    client_id: b\n");
    assert!(e.contains("auth.oidc.issuer"), "{e}");
    let e = err("    realm: https://id.example/\n");
    assert!(e.contains("auth.oidc.client_id"), "{e}");
    let e = err("    client_id: b\n");
    assert!(e.contains("auth.oidc.realm"), "{e}");
    let e = err("    realm: https://id.example/\n    client_id: b\n    client_secret: a\n    client_secret_file: /x\n");
    assert!(e.contains("auth.oidc.client_secret_file"), "{e}");
    // Loopback over http is fine (a provider on the same machine, the tests).
    for realm in [
        "http://127.0.0.1:4000/",
        "http://[::1]:9/x",
        "http://localhost/",
    ] {
        load(&format!("    realm: {realm}\n    client_id: b\n"), &[]).expect(realm);
    }
}

#[test]
fn needs_the_builtin_token_server() {
    let text = "version: 0.1
storage: {inmemory: {}}
auth:
  htpasswd: {realm: r, path: /tmp/h}
  oidc: {realm: 'https://id.example/', client_id: b}
";
    let e = load_str(text, "config.yml", &[])
        .expect_err("refused")
        .to_string();
    assert!(e.contains("auth.oidc") && e.contains("builtin"), "{e}");
    let alone = "version: 0.1\nstorage: {inmemory: {}}\nauth:\n  oidc: {realm: 'https://id.example/', client_id: b}\n";
    let e = load_str(alone, "config.yml", &[])
        .expect_err("refused")
        .to_string();
    assert!(e.contains("builtin"), "{e}");
}

#[test]
fn unknown_keys_warn() {
    let loaded = load(
        "    realm: https://id.example/\n    client_id: b\n    clientid: c\n",
        &[],
    )
    .expect("valid");
    assert!(
        loaded.warnings.iter().any(|w| w.contains("clientid")),
        "{:?}",
        loaded.warnings
    );
}
