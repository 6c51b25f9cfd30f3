//! Access as the Docker token protocol names it: `repository:<name>:pull,push` and
//! `registry:catalog:*`, parsed from and rendered to scope strings.

use std::fmt;

/// An action on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, put manifests (registry:2 asks for `pull,push` on a push).
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// `*`: everything (the catalog's only action).
    All,
}

impl Action {
    /// The protocol's name for the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::All => "*",
        }
    }

    /// Parses a protocol action name; unknown names are `None` (and are ignored, as
    /// registry:2 and docker_auth do).
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            "*" => Some(Action::All),
            _ => None,
        }
    }

    /// Whether holding `self` grants `wanted`.
    pub fn covers(self, wanted: Action) -> bool {
        self == Action::All || self == wanted
    }
}

/// What the access is to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// A repository by name.
    Repository(String),
    /// The catalog (`registry:catalog`).
    Catalog,
}

/// A resource and the actions wanted (or granted) on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The resource.
    pub resource: Resource,
    /// The actions, without duplicates.
    pub actions: Vec<Action>,
}

impl Access {
    /// Access to a repository.
    pub fn repository(name: &str, actions: &[Action]) -> Access {
        Access {
            resource: Resource::Repository(name.to_owned()),
            actions: actions.to_vec(),
        }
    }

    /// Access to the catalog.
    pub fn catalog() -> Access {
        Access {
            resource: Resource::Catalog,
            actions: vec![Action::All],
        }
    }

    /// Parses one scope, `type:name:actions` (the name may contain `:` for a registry
    /// with a port, so type is split off the front and actions off the back).
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let resource = match (kind, name) {
            ("repository", name) if !name.is_empty() => Resource::Repository(name.to_owned()),
            ("registry", "catalog") => Resource::Catalog,
            _ => return None,
        };
        let mut parsed: Vec<Action> = actions.split(',').filter_map(Action::parse).collect();
        parsed.sort();
        parsed.dedup();
        Some(Access {
            resource,
            actions: parsed,
        })
    }

    /// Whether `granted` (from a token) covers everything `self` wants.
    pub fn is_covered_by(&self, granted: &[Access]) -> bool {
        self.actions.iter().all(|wanted| {
            granted
                .iter()
                .any(|g| g.resource == self.resource && g.actions.iter().any(|a| a.covers(*wanted)))
        })
    }
}

impl fmt::Display for Access {
    /// The scope string, e.g. `repository:team/app:pull,push`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        match &self.resource {
            Resource::Repository(name) => write!(f, "repository:{name}:{}", actions.join(",")),
            Resource::Catalog => write!(f, "registry:catalog:{}", actions.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        let a = Access::parse_scope("repository:team/app:push,pull").expect("scope");
        assert_eq!(
            a,
            Access::repository("team/app", &[Action::Pull, Action::Push])
        );
        assert_eq!(a.to_string(), "repository:team/app:pull,push");
        let host = Access::parse_scope("repository:reg.lan:5000/app:pull").expect("scope");
        assert_eq!(
            host.resource,
            Resource::Repository("reg.lan:5000/app".into())
        );
        assert_eq!(
            Access::parse_scope("registry:catalog:*"),
            Some(Access::catalog())
        );
        assert_eq!(Access::parse_scope("repository::pull"), None);
        assert_eq!(Access::parse_scope("nonsense"), None);
    }

    #[test]
    fn coverage() {
        let granted = [Access::repository("a", &[Action::Pull])];
        assert!(Access::repository("a", &[Action::Pull]).is_covered_by(&granted));
        assert!(!Access::repository("a", &[Action::Pull, Action::Push]).is_covered_by(&granted));
        assert!(!Access::repository("b", &[Action::Pull]).is_covered_by(&granted));
        let all = [Access::repository("a", &[Action::All])];
        assert!(Access::repository("a", &[Action::Delete]).is_covered_by(&all));
    }

    proptest::proptest! {
        #[test]
        fn parse_scope_never_panics(s in ".*") {
            let _ = Access::parse_scope(&s);
        }
    }
}
