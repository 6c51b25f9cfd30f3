//! Which upstream a request is for, and under which name its content is stored.
//!
//! - registry:2 mode (`proxy.remoteurl`): every name is the upstream's, stored under the same
//!   name; `?ns=` is ignored, as registry:2 does.
//! - many upstreams (`proxy.upstreams`), in this order:
//!   1. containerd's `?ns=<host>` names the upstream (hosts.toml mirrors, k3s);
//!   2. a first path segment equal to an upstream's host (`/v2/ghcr.io/org/app/...`);
//!   3. plain names go to the `default` upstream unless they fall under a `private` prefix.
//!
//!   Everything else is a private repository. Cached content is stored as `<host>/<name>`, and
//!   Docker Hub's one-segment names become `library/<name>` (`alpine` → `docker.io/library/alpine`).

use std::sync::Arc;

use berth_oci::RepoName;

use crate::upstream::Upstream;

/// Where a pull goes.
#[derive(Clone)]
pub struct Route {
    /// The upstream that owns the name.
    pub upstream: Arc<Upstream>,
    /// The name at the upstream (`library/alpine`).
    pub remote: RepoName,
    /// The name cached content is stored under here (`docker.io/library/alpine`).
    pub local: RepoName,
    /// Which rule chose the upstream.
    pub via: Via,
}

/// The routing rule that sent a name to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// containerd's `?ns=<host>`.
    Namespace,
    /// The first path segment is the upstream's host.
    HostPrefix,
    /// A plain name, sent to the `default` upstream.
    Default,
    /// registry:2's `proxy.remoteurl`: every name.
    Registry,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("upstream", &self.upstream.host())
            .field("remote", &self.remote)
            .field("local", &self.local)
            .finish()
    }
}

/// How names map to upstreams.
pub enum Routing {
    /// registry:2's `proxy.remoteurl`: the whole registry mirrors one upstream.
    Single(Arc<Upstream>),
    /// Berth's `proxy.upstreams`.
    Many {
        /// The upstreams, each standing for its host.
        upstreams: Vec<Arc<Upstream>>,
        /// Index of the upstream plain names go to.
        default: Option<usize>,
        /// Name prefixes (whole segments) that stay private even with a default.
        private: Vec<String>,
    },
}

/// Hosts Docker Hub is also known by in `?ns=`.
const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "registry-1.docker.io", "index.docker.io"];

fn host_matches(upstream: &Upstream, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    upstream.host() == host
        || (upstream.is_docker_hub() && DOCKER_HUB_ALIASES.contains(&host.as_str()))
}

fn under_prefix(name: &str, prefix: &str) -> bool {
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Routing {
    /// The route of `repo` (with containerd's `ns` query parameter, if any), or `None` for a
    /// private repository.
    pub fn route(&self, repo: &RepoName, ns: Option<&str>) -> Option<Route> {
        match self {
            Routing::Single(upstream) => Some(Route {
                upstream: upstream.clone(),
                remote: repo.clone(),
                local: repo.clone(),
                via: Via::Registry,
            }),
            Routing::Many {
                upstreams,
                default,
                private,
            } => {
                if let Some(ns) = ns.filter(|n| !n.is_empty()) {
                    if let Some(u) = upstreams.iter().find(|u| host_matches(u, ns)) {
                        return cached(u, repo.as_str(), Via::Namespace);
                    }
                }
                if let Some((first, rest)) = repo.as_str().split_once('/') {
                    if let Some(u) = upstreams.iter().find(|u| u.host() == first) {
                        return cached(u, rest, Via::HostPrefix);
                    }
                }
                let u = upstreams.get((*default)?)?;
                if private.iter().any(|p| under_prefix(repo.as_str(), p)) {
                    return None;
                }
                cached(u, repo.as_str(), Via::Default)
            }
        }
    }

    /// The namespace, when containerd's `?ns=` names a registry no upstream stands for. Such
    /// a request is refused: answering it from the default upstream or from private storage
    /// would serve other content than the reference names (`quay.io/library/alpine` answered
    /// with Docker Hub's `library/alpine`). registry:2 mode ignores `ns`, as registry:2 does.
    pub fn unknown_namespace<'a>(&self, ns: Option<&'a str>) -> Option<&'a str> {
        let Routing::Many { upstreams, .. } = self else {
            return None;
        };
        let ns = ns.filter(|n| !n.is_empty())?;
        (!upstreams.iter().any(|u| host_matches(u, ns))).then_some(ns)
    }

    /// Whether pushes are refused everywhere (registry:2 mode).
    pub fn read_only(&self) -> bool {
        matches!(self, Routing::Single(_))
    }

    /// The configured upstreams.
    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        match self {
            Routing::Single(u) => vec![u.clone()],
            Routing::Many { upstreams, .. } => upstreams.clone(),
        }
    }
}

/// The route of `name` at `upstream`: Docker Hub's official images live under `library/`.
fn cached(upstream: &Arc<Upstream>, name: &str, via: Via) -> Option<Route> {
    let remote = if upstream.is_docker_hub() && !name.contains('/') {
        format!("library/{name}")
    } else {
        name.to_owned()
    };
    let local = format!("{}/{remote}", upstream.host()).parse().ok()?;
    Some(Route {
        upstream: upstream.clone(),
        remote: remote.parse().ok()?,
        local,
        via,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::UpstreamSettings;

    fn upstream(host: &str) -> Arc<Upstream> {
        Arc::new(
            Upstream::new(UpstreamSettings {
                host: host.into(),
                url: "http://127.0.0.1:9".into(),
                credentials: None,
                tag_ttl: Duration::ZERO,
                proxy: None,
                timeout: Duration::from_secs(1),
                allow_private_redirects: false,
            })
            .expect("upstream"),
        )
    }

    fn many(default: Option<usize>) -> Routing {
        Routing::Many {
            upstreams: vec![upstream("docker.io"), upstream("ghcr.io")],
            default,
            private: vec!["team".into(), "ci/x".into()],
        }
    }

    fn r(routing: &Routing, name: &str, ns: Option<&str>) -> Option<(String, String, String)> {
        let name: RepoName = name.parse().expect("name");
        routing.route(&name, ns).map(|r| {
            (
                r.upstream.host().to_owned(),
                r.remote.to_string(),
                r.local.to_string(),
            )
        })
    }

    fn t(host: &str, remote: &str, local: &str) -> Option<(String, String, String)> {
        Some((host.into(), remote.into(), local.into()))
    }

    #[test]
    fn ns_routes_to_the_named_upstream() {
        let m = many(None);
        assert_eq!(
            r(&m, "library/alpine", Some("docker.io")),
            t("docker.io", "library/alpine", "docker.io/library/alpine")
        );
        assert_eq!(
            r(&m, "alpine", Some("registry-1.docker.io")),
            t("docker.io", "library/alpine", "docker.io/library/alpine")
        );
        assert_eq!(
            r(&m, "org/app", Some("ghcr.io")),
            t("ghcr.io", "org/app", "ghcr.io/org/app")
        );
        assert_eq!(m.unknown_namespace(Some("quay.io")), Some("quay.io"));
        assert_eq!(m.unknown_namespace(Some("ghcr.io")), None);
        assert_eq!(m.unknown_namespace(Some("index.docker.io")), None);
        assert_eq!(m.unknown_namespace(Some("")), None);
        assert_eq!(m.unknown_namespace(None), None);
        let single = Routing::Single(upstream("registry-1.docker.io"));
        assert_eq!(single.unknown_namespace(Some("quay.io")), None);
    }

    #[test]
    fn host_prefix_routes_to_that_upstream() {
        let m = many(None);
        assert_eq!(
            r(&m, "ghcr.io/org/app", None),
            t("ghcr.io", "org/app", "ghcr.io/org/app")
        );
        assert_eq!(
            r(&m, "docker.io/alpine", None),
            t("docker.io", "library/alpine", "docker.io/library/alpine")
        );
        assert_eq!(r(&m, "ghcr.io", None), None, "a bare host is a plain name");
    }

    #[test]
    fn plain_names_go_to_the_default_unless_private() {
        assert_eq!(r(&many(None), "alpine", None), None);
        let m = many(Some(0));
        assert_eq!(
            r(&m, "alpine", None),
            t("docker.io", "library/alpine", "docker.io/library/alpine")
        );
        assert_eq!(
            r(&m, "bitnami/redis", None),
            t("docker.io", "bitnami/redis", "docker.io/bitnami/redis")
        );
        assert_eq!(r(&m, "team/app", None), None);
        assert_eq!(r(&m, "team", None), None);
        assert_eq!(r(&m, "ci/x/y", None), None);
        assert!(
            r(&m, "teams/app", None).is_some(),
            "prefixes are whole segments"
        );
        assert!(r(&m, "ci/xy", None).is_some());
        assert!(
            r(&m, "team/app", Some("docker.io")).is_some(),
            "ns is explicit"
        );
    }

    #[test]
    fn registry2_mode_keeps_names_and_ignores_ns() {
        let s = Routing::Single(upstream("registry-1.docker.io"));
        assert_eq!(
            r(&s, "library/alpine", Some("quay.io")),
            t("registry-1.docker.io", "library/alpine", "library/alpine")
        );
        assert!(s.read_only() && !many(None).read_only());
    }
}
