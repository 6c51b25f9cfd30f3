//! Logging in to the token endpoint: form and Basic credentials, service accounts,
//! failure limiting.

use super::*;

#[tokio::test]
async fn containerd_oauth2_post_form() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let form = params(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-pw"),
        ("service", SERVICE),
        ("client_id", "containerd-client"),
        ("access_type", "online"),
        (
            "scope",
            "repository:team-a/app:pull,push repository:public/x:pull",
        ),
    ]);
    let response = issuer
        .issue(&request(None, "10.0.0.2"), &form)
        .await
        .expect("token");
    let claims = controller(&issuer)
        .verify(&response.token, unix_now())
        .expect("valid");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.granted().len(), 2);
    // Wrong password in the form.
    let mut wrong = form.clone();
    wrong[2].1 = "nope".into();
    assert!(matches!(
        issuer.issue(&request(None, "10.0.0.2"), &wrong).await,
        Err(Denied::Unauthorized { .. })
    ));
    // Refresh tokens are not issued; a password grant needs both fields.
    for bad in [
        params(&[("grant_type", "refresh_token"), ("refresh_token", "x")]),
        params(&[("grant_type", "password"), ("username", "alice")]),
        params(&[("grant_type", "client_credentials")]),
    ] {
        match issuer.issue(&request(None, "10.0.0.3"), &bad).await {
            Err(Denied::Unauthorized { challenge, .. }) => {
                assert_eq!(challenge, TOKEN_REALM_CHALLENGE)
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_locked_out() {
    let f = Fixture::new();
    let limiter = Arc::new(FailureLimiter::new(3, Duration::from_secs(60)));
    let issuer = f.issuer().with_limiter(limiter.clone());
    let try_login = |user: &'static str, password: &'static str, ip: &'static str| {
        let issuer = &issuer;
        async move {
            let header = basic(user, password);
            issuer.issue(&request(Some(&header), ip), &[]).await
        }
    };
    match try_login("alice", "wrong", "10.1.0.1").await {
        Err(Denied::Unauthorized { challenge, message }) => {
            assert_eq!(challenge, r#"Basic realm="berth token service""#);
            assert!(!message.contains("wrong"));
        }
        other => panic!("{other:?}"),
    }
    // Unknown users and wrong service account secrets count too.
    assert!(try_login("nobody", "x", "10.1.0.1").await.is_err());
    assert!(try_login("ci", "guess", "10.1.0.1").await.is_err());
    assert!(matches!(
        try_login("alice", "alice-pw", "10.1.0.1").await,
        Err(Denied::TooManyAttempts { .. })
    ));
    // Other clients are not affected, and the limiter is the shared one.
    assert!(try_login("alice", "alice-pw", "10.1.0.2").await.is_ok());
    assert!(limiter
        .check(Some("10.1.0.1".parse().expect("ip")), "bob")
        .is_err());
    // A success forgets the account's failures, not the client's: logging in to one's own
    // account must not reset the budget for guessing another's.
    assert!(try_login("bob", "wrong", "10.1.0.3").await.is_err());
    assert!(try_login("bob", "wrong", "10.1.0.3").await.is_err());
    assert!(try_login("alice", "alice-pw", "10.1.0.3").await.is_ok());
    assert!(try_login("bob", "wrong", "10.1.0.3").await.is_err());
    assert!(matches!(
        try_login("alice", "alice-pw", "10.1.0.3").await,
        Err(Denied::TooManyAttempts { .. })
    ));
    // Bob's account took 3 failures: locked from every address.
    assert!(matches!(
        try_login("bob", "bob-pw", "10.1.0.4").await,
        Err(Denied::TooManyAttempts { .. })
    ));
}

#[tokio::test]
async fn service_accounts() {
    let f = Fixture::new();
    let issuer = f.issuer();
    let response = get(
        &issuer,
        Some(("ci", CI_SECRET)),
        &["repository:team-a/app:push"],
    )
    .await
    .expect("service account");
    let claims = controller(&issuer)
        .verify(&response.token, unix_now())
        .expect("valid");
    assert_eq!(claims.sub, "ci");
    assert_eq!(
        claims.granted(),
        vec![Access::repository("team-a/app", &[Action::Push])]
    );
    // The account's name shadows the htpasswd user of the same name.
    assert!(get(&issuer, Some(("ci", "htpasswd-ci-pw")), &[])
        .await
        .is_err());
    // Whitespace around the secret in the file is not part of it; a prefix is not enough.
    assert!(get(&issuer, Some(("ci", &format!(" {CI_SECRET}"))), &[])
        .await
        .is_err());
    assert!(get(&issuer, Some(("ci", &CI_SECRET[..10])), &[])
        .await
        .is_err());
}

#[tokio::test]
async fn without_htpasswd_only_service_accounts_and_anonymous() {
    let f = Fixture::new();
    let mut config = f.config();
    config.htpasswd = None;
    let limiter = Arc::new(FailureLimiter::new(2, Duration::from_secs(60)));
    let issuer = TokenIssuer::new(config, SERVICE, ISSUER)
        .expect("issuer")
        .with_limiter(limiter.clone());
    assert!(get(&issuer, Some(("ci", CI_SECRET)), &[]).await.is_ok());
    assert!(get(&issuer, None, &[]).await.is_ok());
    assert!(matches!(
        get(&issuer, Some(("alice", "alice-pw")), &[]).await,
        Err(Denied::Unauthorized { .. })
    ));
    assert!(get(&issuer, Some(("alice", "alice-pw")), &[])
        .await
        .is_err());
    assert!(matches!(
        get(&issuer, Some(("ci", CI_SECRET)), &[]).await,
        Err(Denied::TooManyAttempts { .. })
    ));
}
