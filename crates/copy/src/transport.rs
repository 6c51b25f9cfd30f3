//! Where images come from and go to, as written on the command line (skopeo's transports):
//! `docker://REF` (a registry; docker.io short names expanded as docker expands them),
//! `oci:DIR[:TAG]` (an OCI image layout directory) and `docker-archive:FILE[:REF]` (a
//! `docker save` tarball).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use berth_oci::{Digest, RepoName};

use crate::Failure;

/// Docker Hub as it is named in image references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's registry API host (what `docker.io` means on the wire).
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A tag or a digest in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTag {
    /// `:tag`.
    Tag(String),
    /// `@sha256:...`.
    Digest(Digest),
}

impl fmt::Display for ImageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageTag::Tag(t) => f.write_str(t),
            ImageTag::Digest(d) => d.fmt(f),
        }
    }
}

/// An image in a registry: `host/repo:tag` or `host/repo@digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// The registry as named (`docker.io`, `127.0.0.1:5000`).
    pub host: String,
    /// The repository (`library/alpine`).
    pub repo: RepoName,
    /// The tag or digest.
    pub reference: ImageTag,
}

impl RegistryRef {
    /// The host to send requests to: Docker Hub's API lives at `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        api_host(&self.host)
    }

    /// The same repository with another tag or digest.
    pub fn with(&self, reference: ImageTag) -> RegistryRef {
        RegistryRef {
            reference,
            ..self.clone()
        }
    }
}

/// The API host of a registry name.
pub fn api_host(host: &str) -> &str {
    if host == DOCKER_HUB || host == "index.docker.io" {
        DOCKER_HUB_API
    } else {
        host
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            ImageTag::Tag(t) => write!(f, "{}/{}:{t}", self.host, self.repo),
            ImageTag::Digest(d) => write!(f, "{}/{}@{d}", self.host, self.repo),
        }
    }
}

impl FromStr for RegistryRef {
    type Err = Failure;

    /// Parses a reference the way docker does: a first component with a `.` or `:`, or
    /// `localhost`, is a registry host; anything else is on Docker Hub, where one-component
    /// names live under `library/`; no tag means `latest`.
    fn from_str(s: &str) -> Result<Self, Failure> {
        let bad = |why: &str| Failure::Usage(format!("{s:?} is not an image reference: {why}"));
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
            ),
            None => (s, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a host's port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let (host, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let host = if host == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            host
        };
        let path = if host == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let repo: RepoName = path
            .parse()
            .map_err(|e: berth_oci::OciError| bad(&e.to_string()))?;
        let reference = match (digest, tag) {
            (Some(d), _) => ImageTag::Digest(d),
            (None, Some(t)) => {
                t.parse::<berth_oci::Tag>()
                    .map_err(|e| bad(&e.to_string()))?;
                ImageTag::Tag(t.to_owned())
            }
            (None, None) => ImageTag::Tag("latest".to_owned()),
        };
        Ok(RegistryRef {
            host,
            repo,
            reference,
        })
    }
}

/// One end of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A registry.
    Registry(RegistryRef),
    /// An OCI image layout directory and the ref name of the image in it.
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name`. Without it a source must hold one image,
        /// and a target lists the image by digest only.
        tag: Option<String>,
    },
    /// A repository of Berth's own storage (`local:REPO[:TAG]`, with `--config`).
    Local(crate::local::LocalRef),
    /// A `docker save` tarball and the `repo:tag` of the image in it.
    Archive {
        /// The file.
        file: PathBuf,
        /// The name in `RepoTags` (`alpine:3.20`); without it the only image.
        reference: Option<String>,
    },
}

impl FromStr for Location {
    type Err = Failure;

    fn from_str(s: &str) -> Result<Self, Failure> {
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Location::Registry(rest.parse()?));
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            // The tag is after the last `:`, unless what follows looks like a path.
            let (dir, tag) = split_suffix(rest);
            return Ok(Location::Layout {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("local:") {
            return Ok(Location::Local(crate::local::parse(rest)?));
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            // A reference may itself contain `:` (`alpine:3.20`), so the file is what
            // precedes the first `:`.
            let (file, reference) = match rest.split_once(':') {
                Some((file, r)) if !r.is_empty() => (file, Some(r.to_owned())),
                _ => (rest.trim_end_matches(':'), None),
            };
            return Ok(Location::Archive {
                file: PathBuf::from(file),
                reference,
            });
        }
        Err(Failure::Usage(format!(
            "{s:?}: say where the image is: docker://HOST/REPO:TAG, oci:DIR[:TAG], docker-archive:FILE[:REPO:TAG] or local:REPO[:TAG]"
        )))
    }
}

/// `DIR:TAG` into its parts; a suffix with a `/` is part of the directory.
fn split_suffix(s: &str) -> (&str, Option<String>) {
    match s.rsplit_once(':') {
        Some((dir, tag)) if !tag.is_empty() && !tag.contains('/') && !dir.is_empty() => {
            (dir, Some(tag.to_owned()))
        }
        _ => (s, None),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "docker://{r}"),
            Location::Layout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            Location::Layout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Location::Local(l) => match &l.reference {
                Some(berth_oci::Reference::Digest(d)) => write!(f, "local:{}@{d}", l.repo),
                Some(berth_oci::Reference::Tag(t)) => write!(f, "local:{}:{t}", l.repo),
                None => write!(f, "local:{}", l.repo),
            },
            Location::Archive {
                file,
                reference: Some(r),
            } => write!(f, "docker-archive:{}:{r}", file.display()),
            Location::Archive {
                file,
                reference: None,
            } => write!(f, "docker-archive:{}", file.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> String {
        match s.parse::<RegistryRef>() {
            Ok(r) => r.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn docker_short_names_expand_as_docker_does() {
        assert_eq!(reg("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(reg("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(reg("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            reg("index.docker.io/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(reg("localhost/a"), "localhost/a:latest");
        assert_eq!(reg("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        assert_eq!(reg("ghcr.io/o/r:1"), "ghcr.io/o/r:1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(reg(&format!("host:1/r@{d}")), format!("host:1/r@{d}"));
        assert!(reg("UPPER").starts_with("error"));
        assert!(reg("a:b:c").starts_with("error"));
    }

    #[test]
    fn docker_hub_api_host() {
        let r: RegistryRef = "alpine".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn transports() {
        let l = |s: &str| s.parse::<Location>().map(|l| l.to_string());
        assert_eq!(l("oci:/tmp/x:v1").ok().as_deref(), Some("oci:/tmp/x:v1"));
        assert_eq!(l("oci:/tmp/x").ok().as_deref(), Some("oci:/tmp/x"));
        assert_eq!(l("oci:./a:b/c").ok().as_deref(), Some("oci:./a:b/c"));
        assert_eq!(
            l("docker-archive:/tmp/a.tar:alpine:3").ok().as_deref(),
            Some("docker-archive:/tmp/a.tar:alpine:3")
        );
        assert_eq!(
            l("docker-archive:a.tar").ok().as_deref(),
            Some("docker-archive:a.tar")
        );
        assert_eq!(
            l("docker://alpine").ok().as_deref(),
            Some("docker://docker.io/library/alpine:latest")
        );
        assert_eq!(l("local:a/b:1").ok().as_deref(), Some("local:a/b:1"));
        assert!(l("alpine").is_err());
    }
}
