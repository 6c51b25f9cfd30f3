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
//! admins: [root]                   # may do everything, including the catalog
//! ```
//!
//! Patterns are matched segment by segment (segments are separated by `/`): `*` matches
//! one whole segment, `*` inside a segment matches any run of characters within it
//! (`app-*`), `**` matches any number of segments — at least one at the end of a pattern
//! (`public/**` covers `public/x` and `public/x/y`, not `public` itself), zero or more
//! elsewhere (`**/base` covers `base` and `a/b/base`) — and anything else matches exactly.
//!
//! A caller gets the union of every matching rule. Rules for `anonymous` apply to everyone,
//! rules for `authenticated` to every logged-in caller. Nothing is granted by default.
//!
//! The catalog (`registry:catalog:*`) is granted to every logged-in caller, and to
//! anonymous callers only when some rule lets `anonymous` pull something; in both cases the
//! list is filtered with [`AccessRules::may_list`], so nobody learns the name of a
//! repository they cannot pull.

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
}

/// Who may do what on which repositories.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RuleSpec")]
pub struct Rule {
    repositories: Vec<Pattern>,
    users: Vec<String>,
    actions: Vec<Action>,
}

/// A rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    repositories: Vec<String>,
    users: Vec<String>,
    actions: Vec<String>,
}

impl TryFrom<RuleSpec> for Rule {
    type Error = RuleError;

    fn try_from(spec: RuleSpec) -> Result<Rule, RuleError> {
        Rule::new(&spec.repositories, &spec.users, &spec.actions)
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
        if repositories.is_empty() || users.is_empty() || actions.is_empty() {
            return Err(RuleError(
                "each rule needs at least one repository, user and action".into(),
            ));
        }
        let repositories = repositories
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
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
        Ok(Rule {
            repositories,
            users,
            actions,
        })
    }

    fn applies_to(&self, subject: Option<&str>) -> bool {
        self.users.iter().any(|u| match (u.as_str(), subject) {
            (ANONYMOUS, _) => true,
            (AUTHENTICATED, Some(_)) => true,
            (name, Some(s)) => name == s,
            (_, None) => false,
        })
    }

    fn covers(&self, repository: &str) -> bool {
        self.repositories.iter().any(|p| p.matches(repository))
    }
}

impl AccessRules {
    /// Rules and admins.
    pub fn new(rules: Vec<Rule>, admins: Vec<String>) -> AccessRules {
        AccessRules { rules, admins }
    }

    /// Whether `subject` is an admin.
    pub fn is_admin(&self, subject: Option<&str>) -> bool {
        logged_in(subject).is_some_and(|s| self.admins.iter().any(|a| a == s))
    }

    /// What `subject` (`None` = anonymous) may do on `repository`: sorted, without
    /// duplicates; `*` in a rule gives pull, push and delete, and [`Action::All`] too.
    pub fn granted(&self, subject: Option<&str>, repository: &str) -> Vec<Action> {
        let subject = logged_in(subject);
        let mut actions: Vec<Action> = if self.is_admin(subject) {
            vec![Action::All]
        } else {
            self.rules
                .iter()
                .filter(|r| r.applies_to(subject) && r.covers(repository))
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
        let allowed = match &requested.resource {
            Resource::Repository(name) => self.granted(subject, name),
            Resource::Catalog if self.may_catalog(subject) => vec![Action::All],
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

/// A repository pattern, split into segments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`
    AnyDepth,
    /// A segment, possibly with `*` wildcards.
    One(String),
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, RuleError> {
        if text.is_empty() || text.split('/').any(str::is_empty) {
            return Err(RuleError(format!(
                "bad repository pattern {text:?}: segments separated by single '/', none empty"
            )));
        }
        Ok(Pattern(
            text.split('/')
                .map(|s| match s {
                    "**" => Segment::AnyDepth,
                    s => Segment::One(s.to_owned()),
                })
                .collect(),
        ))
    }

    fn matches(&self, repository: &str) -> bool {
        let segments: Vec<&str> = repository.split('/').collect();
        match_segments(&self.0, &segments)
    }
}

fn match_segments(pattern: &[Segment], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        // At the end, `**` needs at least one segment.
        Some((Segment::AnyDepth, [])) => !name.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=name.len()).any(|skip| match_segments(rest, &name[skip..]))
        }
        Some((Segment::One(p), rest)) => match name.split_first() {
            Some((first, tail)) => glob(p, first) && match_segments(rest, tail),
            None => false,
        },
    }
}

/// `*` matches any run of characters (within one segment); everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let Some((prefix, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(prefix) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match text.find(part) {
            Some(i) => text = &text[i + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

#[cfg(test)]
mod tests;
