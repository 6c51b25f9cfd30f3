//! Per-repository access rules (a Berth extension), used by the built-in token server to
//! decide what a token grants and by the catalog to hide what a caller may not pull:
//!
//! ```yaml
//! rules:
//!   - repositories: ["team-a/*"]   # patterns, see below
//!     users: [alice, ci]           # user names, or the groups anonymous / authenticated
//!     actions: [pull, push]        # pull, push, delete, "*"
//!   - repositories: ["public/**"]
//!     users: [anonymous]
//!     actions: [pull]
//!   - repositories: ["team-b/**"]
//!     groups: [team-b]             # groups from the OIDC provider (auth.oidc groups_claim)
//!     actions: [pull]
//! admins: [root]                   # may do everything, including the catalog
//! admin_groups: [registry-admins]  # so may every member of these groups
//! ```
//!
//! A rule names `users`, `groups` or both (at least one of them); it applies to a caller who
//! is one of its users or a member of one of its groups. Groups come from the identity
//! provider of an OIDC sign-in ([`Principal::groups`]); an htpasswd user or a service account
//! belongs to no group.
//!
//! Patterns are [`berth_oci::RepoPattern`]s (shared with the retention policies): `*`
//! matches one whole segment, `*` inside a segment any run of characters within it (`app-*`),
//! `**` any number of segments (at least one at the end: `public/**` does not cover `public`).
//!
//! A caller gets the union of every matching rule. Rules for `anonymous` apply to everyone,
//! rules for `authenticated` to every logged-in caller. Nothing is granted by default.
//!
//! The catalog (`registry:catalog:*`) is granted to every logged-in caller, and to
//! anonymous callers only when some rule lets `anonymous` pull something; in both cases the
//! list is filtered with [`AccessRules::may_list`], so nobody learns the name of a
//! repository they cannot pull.

use berth_oci::RepoPattern as Pattern;
use serde::Deserialize;

use crate::{Access, Action, Resource};

/// The group every caller, logged-in or not, belongs to.
pub const ANONYMOUS: &str = "anonymous";
/// The group every logged-in caller belongs to.
pub const AUTHENTICATED: &str = "authenticated";

/// Why rules cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access rule: {0}")]
pub struct RuleError(String);

/// The whole rule set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRules {
    /// The rules, in any order (they only add up).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Users who may do everything on every repository, and list the catalog.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Groups whose members are admins.
    #[serde(default)]
    pub admin_groups: Vec<String>,
}

/// Who is asking: a user name (`None` = anonymous) and the groups the identity provider put
/// the user in (empty for htpasswd users and service accounts).
#[derive(Debug, Clone, Copy, Default)]
pub struct Principal<'a> {
    /// The user name; `None` or empty is anonymous.
    pub user: Option<&'a str>,
    /// The user's groups.
    pub groups: &'a [String],
}

impl<'a> Principal<'a> {
    /// A caller without groups.
    pub fn user(user: Option<&'a str>) -> Principal<'a> {
        Principal { user, groups: &[] }
    }

    /// An anonymous caller has no groups, whatever it claims.
    fn logged_in(self) -> Principal<'a> {
        match logged_in(self.user) {
            Some(user) => Principal {
                user: Some(user),
                groups: self.groups,
            },
            None => Principal::default(),
        }
    }
}

/// Who may do what on which repositories.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RuleSpec")]
pub struct Rule {
    repositories: Vec<Pattern>,
    users: Vec<String>,
    groups: Vec<String>,
    actions: Vec<Action>,
}

/// A rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    repositories: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    actions: Vec<String>,
}

impl TryFrom<RuleSpec> for Rule {
    type Error = RuleError;

    fn try_from(spec: RuleSpec) -> Result<Rule, RuleError> {
        Rule::with_groups(&spec.repositories, &spec.users, &spec.groups, &spec.actions)
    }
}

impl Rule {
    /// A rule from patterns, users or groups, and action names; each list must be
    /// non-empty, and every pattern and action valid.
    pub fn new<S: AsRef<str>>(
        repositories: &[S],
        users: &[S],
        actions: &[S],
    ) -> Result<Rule, RuleError> {
        Rule::with_groups(repositories, users, &[], actions)
    }

    /// A rule for users and groups: at least one of the two lists must be non-empty.
    pub fn with_groups<S: AsRef<str>>(
        repositories: &[S],
        users: &[S],
        groups: &[S],
        actions: &[S],
    ) -> Result<Rule, RuleError> {
        if repositories.is_empty() || (users.is_empty() && groups.is_empty()) || actions.is_empty()
        {
            return Err(RuleError(
                "each rule needs at least one repository, user or group, and action".into(),
            ));
        }
        if groups.iter().any(|g| g.as_ref().is_empty()) {
            return Err(RuleError("a group name cannot be empty".into()));
        }
        let repositories = repositories
            .iter()
            .map(|p| Pattern::parse(p.as_ref()).map_err(RuleError))
            .collect::<Result<Vec<_>, _>>()?;
        let actions = actions
            .iter()
            .map(|a| {
                Action::parse(a.as_ref()).ok_or_else(|| {
                    RuleError(format!(
                        "unknown action {:?}: use pull, push, delete or \"*\"",
                        a.as_ref()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let users = users.iter().map(|u| u.as_ref().to_owned()).collect();
        let groups = groups.iter().map(|g| g.as_ref().to_owned()).collect();
        Ok(Rule {
            repositories,
            users,
            groups,
            actions,
        })
    }

    fn applies_to(&self, who: Principal<'_>) -> bool {
        self.users.iter().any(|u| match (u.as_str(), who.user) {
            (ANONYMOUS, _) => true,
            (AUTHENTICATED, Some(_)) => true,
            (name, Some(s)) => name == s,
            (_, None) => false,
        }) || self.groups.iter().any(|g| who.groups.contains(g))
    }

    fn covers(&self, repository: &str) -> bool {
        self.repositories.iter().any(|p| p.matches(repository))
    }
}

impl AccessRules {
    /// Rules and admins.
    pub fn new(rules: Vec<Rule>, admins: Vec<String>) -> AccessRules {
        AccessRules {
            rules,
            admins,
            admin_groups: Vec::new(),
        }
    }

    /// The same, with groups whose members are admins.
    pub fn with_admin_groups(mut self, admin_groups: Vec<String>) -> AccessRules {
        self.admin_groups = admin_groups;
        self
    }

    /// Whether `subject` is an admin.
    pub fn is_admin(&self, subject: Option<&str>) -> bool {
        self.is_admin_principal(Principal::user(subject))
    }

    /// Whether `who` is an admin: one of `admins`, or a member of one of `admin_groups`.
    pub fn is_admin_principal(&self, who: Principal<'_>) -> bool {
        let who = who.logged_in();
        who.user.is_some_and(|s| self.admins.iter().any(|a| a == s))
            || who.groups.iter().any(|g| self.admin_groups.contains(g))
    }

    /// What `subject` (`None` = anonymous) may do on `repository`: sorted, without
    /// duplicates; `*` in a rule gives pull, push and delete, and [`Action::All`] too.
    pub fn granted(&self, subject: Option<&str>, repository: &str) -> Vec<Action> {
        self.granted_to(Principal::user(subject), repository)
    }

    /// What `who` may do on `repository`, by its user name and its groups (as
    /// [`AccessRules::granted`]).
    pub fn granted_to(&self, who: Principal<'_>, repository: &str) -> Vec<Action> {
        let who = who.logged_in();
        let mut actions: Vec<Action> = if self.is_admin_principal(who) {
            vec![Action::All]
        } else {
            self.rules
                .iter()
                .filter(|r| r.applies_to(who) && r.covers(repository))
                .flat_map(|r| r.actions.iter().copied())
                .collect()
        };
        if actions.contains(&Action::All) {
            actions.extend([Action::Pull, Action::Push, Action::Delete]);
        }
        actions.sort();
        actions.dedup();
        actions
    }

    /// Whether `subject` may see `repository` in the catalog: whether it may pull it.
    pub fn may_list(&self, subject: Option<&str>, repository: &str) -> bool {
        self.granted(subject, repository).contains(&Action::Pull)
    }

    /// Whether `who` (user and groups) may see `repository` in the catalog.
    pub fn may_list_to(&self, who: Principal<'_>, repository: &str) -> bool {
        self.granted_to(who, repository).contains(&Action::Pull)
    }

    /// Whether `subject` may list the catalog at all (then filtered with `may_list`).
    pub fn may_catalog(&self, subject: Option<&str>) -> bool {
        logged_in(subject).is_some()
            || self.rules.iter().any(|r| {
                r.users.iter().any(|u| u == ANONYMOUS)
                    && r.actions.iter().any(|a| a.covers(Action::Pull))
            })
    }

    /// `requested` cut down to what `subject` may do (the token server's intersection:
    /// actions not granted are dropped, possibly all of them).
    pub fn grant(&self, subject: Option<&str>, requested: &Access) -> Access {
        self.grant_to(Principal::user(subject), requested)
    }

    /// `requested` cut down to what `who` (user and groups) may do.
    pub fn grant_to(&self, who: Principal<'_>, requested: &Access) -> Access {
        let allowed = match &requested.resource {
            Resource::Repository(name) => self.granted_to(who, name),
            Resource::Catalog if self.may_catalog(who.user) => vec![Action::All],
            Resource::Catalog => Vec::new(),
        };
        Access {
            resource: requested.resource.clone(),
            actions: requested
                .actions
                .iter()
                .copied()
                .filter(|wanted| allowed.iter().any(|a| a.covers(*wanted)))
                .collect(),
        }
    }
}

/// An empty subject is anonymous.
fn logged_in(subject: Option<&str>) -> Option<&str> {
    subject.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
