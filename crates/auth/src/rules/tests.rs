use super::*;

const EXAMPLE: &str = r#"
rules:
  - repositories: ["team-a/*"]
    users: [alice, ci]
    actions: [pull, push]
  - repositories: ["public/**"]
    users: [anonymous]
    actions: [pull]
  - repositories: ["team-a/tools"]
    users: [bob]
    actions: [delete]
  - repositories: ["shared/**/base", "app-*"]
    users: [authenticated]
    actions: ["*"]
admins: [root]
"#;

fn example() -> AccessRules {
    serde_yaml::from_str(EXAMPLE).expect("rules")
}

use Action::{All, Delete, Pull, Push};

#[test]
fn bad_patterns_and_actions_are_refused() {
    for bad in ["", "/a", "a/", "a//b"] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?}");
    }
    let bad_yaml = [
        "rules: [{repositories: [a], users: [x], actions: [pul]}]",
        "rules: [{repositories: [a], users: [x], actions: []}]",
        "rules: [{repositories: [], users: [x], actions: [pull]}]",
        "rules: [{repositories: [a], users: [], actions: [pull]}]",
        "rules: [{repositories: [a], users: [x]}]",
        "rules: [{repositories: [a], users: [x], actions: [pull], extra: 1}]",
        "rule: []",
    ];
    for yaml in bad_yaml {
        assert!(serde_yaml::from_str::<AccessRules>(yaml).is_err(), "{yaml}");
    }
    let err = serde_yaml::from_str::<AccessRules>(bad_yaml[0]).expect_err("typo");
    assert!(err.to_string().contains("unknown action \"pul\""), "{err}");
    assert_eq!(
        serde_yaml::from_str::<AccessRules>("{}").expect("empty"),
        AccessRules::default()
    );
}

#[test]
fn users_and_groups() {
    let r = example();
    assert_eq!(r.granted(Some("alice"), "team-a/app"), vec![Pull, Push]);
    assert_eq!(r.granted(Some("ci"), "team-a/app"), vec![Pull, Push]);
    assert_eq!(r.granted(Some("mallory"), "team-a/app"), vec![]);
    assert_eq!(r.granted(None, "team-a/app"), vec![]);
    // Anonymous rules apply to everyone.
    assert_eq!(r.granted(None, "public/x"), vec![Pull]);
    assert_eq!(r.granted(Some("mallory"), "public/x"), vec![Pull]);
    // Rules add up.
    assert_eq!(r.granted(Some("bob"), "team-a/tools"), vec![Delete]);
    assert_eq!(r.granted(Some("alice"), "team-a/tools"), vec![Pull, Push]);
    // `authenticated` is any logged-in user, never anonymous; `*` gives everything.
    assert_eq!(
        r.granted(Some("bob"), "shared/x/base"),
        vec![Pull, Push, Delete, All]
    );
    assert_eq!(
        r.granted(Some("bob"), "app-web"),
        vec![Pull, Push, Delete, All]
    );
    assert_eq!(r.granted(None, "shared/base"), vec![]);
    // An empty subject is anonymous.
    assert_eq!(r.granted(Some(""), "app-web"), vec![]);
    // Admins everywhere.
    assert_eq!(
        r.granted(Some("root"), "anything/at/all"),
        vec![Pull, Push, Delete, All]
    );
    assert!(r.is_admin(Some("root")));
    assert!(!r.is_admin(Some("alice")));
    assert!(!r.is_admin(None));
}

#[test]
fn listing_and_catalog() {
    let r = example();
    assert!(r.may_list(Some("alice"), "team-a/app"));
    assert!(!r.may_list(Some("bob"), "team-a/tools"));
    assert!(r.may_list(None, "public/x"));
    assert!(!r.may_list(None, "team-a/app"));
    assert!(r.may_list(Some("root"), "team-a/tools"));
    // Catalog: every logged-in user; anonymous because a rule lets it pull.
    assert!(r.may_catalog(Some("mallory")));
    assert!(r.may_catalog(None));
    let private: AccessRules = serde_yaml::from_str(
        "rules: [{repositories: ['**'], users: [anonymous], actions: [push]}]",
    )
    .expect("rules");
    assert!(!private.may_catalog(None));
    assert!(private.may_catalog(Some("someone")));
    let star: AccessRules =
        serde_yaml::from_str("rules: [{repositories: ['x'], users: [anonymous], actions: ['*']}]")
            .expect("rules");
    assert!(star.may_catalog(None));
    assert!(!AccessRules::default().may_catalog(None));
}

#[test]
fn grant_intersects_requested_with_allowed() {
    let r = example();
    let wanted = Access::repository("team-a/app", &[Pull, Push, Delete]);
    assert_eq!(
        r.grant(Some("alice"), &wanted),
        Access::repository("team-a/app", &[Pull, Push])
    );
    assert_eq!(
        r.grant(None, &wanted),
        Access::repository("team-a/app", &[])
    );
    // `*` requested: only for those who hold `*`.
    let all = Access::repository("team-a/app", &[All]);
    assert_eq!(r.grant(Some("alice"), &all).actions, vec![]);
    assert_eq!(r.grant(Some("root"), &all).actions, vec![All]);
    assert_eq!(r.grant(Some("x"), &Access::catalog()), Access::catalog());
    let private = AccessRules::new(vec![], vec![]);
    assert_eq!(private.grant(None, &Access::catalog()).actions, vec![]);
}

#[test]
fn rule_new_checks_its_lists() {
    assert!(Rule::new(&["a"], &["u"], &["pull"]).is_ok());
    assert!(Rule::new(&["a"], &["u"], &["fly"]).is_err());
    assert!(Rule::new::<&str>(&[], &["u"], &["pull"]).is_err());
}

const GROUPS: &str = r#"
rules:
  - repositories: ["team-a/**"]
    groups: [team-a]
    actions: [pull, push]
  - repositories: ["team-b/**"]
    users: [carol]
    groups: [team-b]
    actions: [pull]
  - repositories: ["public/**"]
    users: [anonymous]
    actions: [pull]
admins: [root]
admin_groups: [registry-admins]
"#;

#[test]
fn groups_grant_beside_users() {
    let rules: AccessRules = serde_yaml::from_str(GROUPS).expect("rules");
    let a = ["team-a".to_owned()];
    let b = ["team-b".to_owned(), "other".to_owned()];
    let alice = Principal {
        user: Some("alice"),
        groups: &a,
    };
    let bob = Principal {
        user: Some("bob"),
        groups: &b,
    };
    assert_eq!(rules.granted_to(alice, "team-a/app"), vec![Pull, Push]);
    assert_eq!(rules.granted_to(alice, "team-b/app"), vec![]);
    assert_eq!(rules.granted_to(bob, "team-b/app"), vec![Pull]);
    assert_eq!(rules.granted_to(bob, "team-a/app"), vec![]);
    assert_eq!(rules.granted_to(bob, "public/x"), vec![Pull]);
    // A user named in a group rule without the group, and the same name without groups.
    assert_eq!(rules.granted(Some("carol"), "team-b/x"), vec![Pull]);
    assert_eq!(rules.granted(Some("team-a"), "team-a/app"), vec![]);
    // Groups of an anonymous caller count for nothing.
    let anon = Principal {
        user: None,
        groups: &a,
    };
    assert_eq!(rules.granted_to(anon, "team-a/app"), vec![]);
    let empty = Principal {
        user: Some(""),
        groups: &a,
    };
    assert_eq!(rules.granted_to(empty, "team-a/app"), vec![]);
}

#[test]
fn admins_by_group() {
    let rules: AccessRules = serde_yaml::from_str(GROUPS).expect("rules");
    let admins = ["registry-admins".to_owned()];
    let dave = Principal {
        user: Some("dave"),
        groups: &admins,
    };
    assert!(rules.is_admin_principal(dave));
    assert_eq!(
        rules.granted_to(dave, "anything/at/all"),
        vec![Pull, Push, Delete, All]
    );
    assert!(!rules.is_admin(Some("dave")));
    assert!(rules.is_admin(Some("root")));
    assert!(!rules.is_admin_principal(Principal {
        user: None,
        groups: &admins
    }));
}

#[test]
fn rules_need_users_or_groups() {
    for bad in [
        "rules: [{repositories: [a], actions: [pull]}]",
        "rules: [{repositories: [a], users: [], groups: [], actions: [pull]}]",
        "rules: [{repositories: [a], groups: [''], actions: [pull]}]",
    ] {
        assert!(serde_yaml::from_str::<AccessRules>(bad).is_err(), "{bad}");
    }
    let ok: AccessRules =
        serde_yaml::from_str("rules: [{repositories: [a], groups: [g], actions: [pull]}]")
            .expect("groups only");
    assert_eq!(ok.rules.len(), 1);
}
