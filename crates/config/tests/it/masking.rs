//! `to_masked_yaml`: the effective configuration without its secrets.

use crate::ok;

const WITH_SECRETS: &str = "\
version: 0.1
storage:
  s3:
    region: us-east-1
    bucket: mybucket
    accesskey: AKIAEXAMPLEKEY
    secretkey: wJalrXUtnFEMIsecretEXAMPLE
  delete:
    enabled: true
http:
  secret: http-signing-secret
  tls:
    certificate: /certs/server.crt
    key: /certs/server.key
auth:
  htpasswd:
    realm: basic-realm
    path: /auth/htpasswd
    password: stray-extra-password
proxy:
  remoteurl: https://registry-1.docker.io
  username: hubuser
  password: hub-password
notifications:
  endpoints:
    - name: hook
      url: https://hooks.example.com/
      headers:
        Authorization: [Bearer notification-token]
        X-Trace: [visible-trace]
health:
  http:
    - uri: http://upstream/health
      headers:
        Authorization: [Basic health-credentials]
";

#[test]
fn secrets_are_masked_and_the_rest_is_shown() {
    let loaded = ok(WITH_SECRETS, &[]);
    let masked = loaded.config.to_masked_yaml();
    for secret in [
        "AKIAEXAMPLEKEY",
        "wJalrXUtnFEMIsecretEXAMPLE",
        "http-signing-secret",
        "stray-extra-password",
        "hub-password",
        "notification-token",
        "health-credentials",
    ] {
        assert!(!masked.contains(secret), "{secret} leaked in:\n{masked}");
    }
    for visible in [
        "mybucket",
        "us-east-1",
        "/certs/server.key",
        "hubuser",
        "https://registry-1.docker.io",
        "visible-trace",
        "basic-realm",
        "X-Content-Type-Options",
    ] {
        assert!(
            masked.contains(visible),
            "{visible} missing from:\n{masked}"
        );
    }
    let tree: serde_yaml::Value = serde_yaml::from_str(&masked).expect("masked output is YAML");
    assert_eq!(tree["http"]["secret"], serde_yaml::Value::from("*****"));
    assert_eq!(tree["proxy"]["password"], serde_yaml::Value::from("*****"));
    assert_eq!(
        tree["storage"]["s3"]["secretkey"],
        serde_yaml::Value::from("*****")
    );
    assert_eq!(
        tree["notifications"]["endpoints"][0]["headers"]["Authorization"][0],
        serde_yaml::Value::from("*****")
    );
    assert_eq!(
        tree["storage"]["delete"]["enabled"],
        serde_yaml::Value::from(true)
    );
    assert_eq!(tree["version"], serde_yaml::Value::from("0.1"));
}

#[test]
fn masked_output_shows_effective_values_after_env_and_defaults() {
    let loaded = ok(
        "version: 0.1\nstorage: inmemory\n",
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:5055"),
            ("REGISTRY_HTTP_SECRET", "from-env"),
        ],
    );
    let masked = loaded.config.to_masked_yaml();
    assert!(masked.contains("addr: 127.0.0.1:5055"), "{masked}");
    assert!(masked.contains("secret: '*****'"), "{masked}");
    assert!(!masked.contains("from-env"), "{masked}");
    assert!(
        masked.contains("age: 168h") && masked.contains("interval: 24h"),
        "defaults shown: {masked}"
    );
    assert!(masked.contains("inmemory"), "{masked}");
    // The masked text is itself a loadable config (with placeholder secrets).
    let again = berth_config::load_str(&masked, "masked.yml", &[]).expect("masked output loads");
    assert_eq!(again.config.http.secret.as_deref(), Some("*****"));
    assert_eq!(again.config.http.addr, "127.0.0.1:5055");
}
