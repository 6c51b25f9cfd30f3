//! Parses a `/v2/...` path once into a typed [`Endpoint`], matching the fixed suffixes from the
//! right so repository names of any depth work (`/v2/a/b/c/d/e/f/g/h/manifests/latest`).
//! The raw (still percent-encoded) path is parsed, so `%2e%2e` is just an invalid name.

use berth_oci::{Digest, OciError, Reference, RepoName};

/// One API endpoint with its parsed path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/_berth/usage` (Berth extension): storage use per repository, as JSON. `_` cannot
    /// start a repository name, so no repository can hide this path (Zot uses `/v2/_zot/`).
    Usage,
    /// `/v2/<name>/tags/list`.
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`: start an upload (or mount).
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<uuid>`: an upload session.
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(RepoName, Digest),
}

impl Endpoint {
    /// The repository the endpoint acts on, for authorization and logs.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog | Endpoint::Usage => None,
            Endpoint::Tags(n)
            | Endpoint::Manifest(n, _)
            | Endpoint::Blob(n, _)
            | Endpoint::UploadStart(n)
            | Endpoint::Upload(n, _)
            | Endpoint::Referrers(n, _) => Some(n),
        }
    }

    /// The same endpoint acting on `name` instead (the name a request resolves to).
    pub fn with_repository(self, name: RepoName) -> Endpoint {
        match self {
            Endpoint::Base | Endpoint::Catalog | Endpoint::Usage => self,
            Endpoint::Tags(_) => Endpoint::Tags(name),
            Endpoint::Manifest(_, r) => Endpoint::Manifest(name, r),
            Endpoint::Blob(_, d) => Endpoint::Blob(name, d),
            Endpoint::UploadStart(_) => Endpoint::UploadStart(name),
            Endpoint::Upload(_, id) => Endpoint::Upload(name, id),
            Endpoint::Referrers(_, d) => Endpoint::Referrers(name, d),
        }
    }
}

/// Why a path is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Not under `/v2/`, or no known suffix.
    NotFound,
    /// The path parameters did not parse.
    Invalid(OciError),
    /// The upload id is not one Berth issued.
    UploadUnknown(String),
}

impl From<OciError> for PathError {
    fn from(e: OciError) -> Self {
        PathError::Invalid(e)
    }
}

fn name(segments: &[&str]) -> Result<RepoName, PathError> {
    Ok(segments.join("/").parse::<RepoName>()?)
}

/// Parses a request path (without query) into an endpoint.
pub fn parse(path: &str) -> Result<Endpoint, PathError> {
    let rest = path.strip_prefix("/v2").ok_or(PathError::NotFound)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/').ok_or(PathError::NotFound)?;
    match rest {
        "_catalog" => return Ok(Endpoint::Catalog),
        "_berth/usage" => return Ok(Endpoint::Usage),
        _ => {}
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let tail = |k: usize| -> &[&str] { &segs[n.saturating_sub(k)..] };
    let head = |k: usize| -> &[&str] { &segs[..n.saturating_sub(k)] };
    if n < 2 {
        return Err(PathError::NotFound);
    }
    match tail(2) {
        ["tags", "list"] => return Ok(Endpoint::Tags(name(head(2))?)),
        ["blobs", "uploads"] => return Ok(Endpoint::UploadStart(name(head(2))?)),
        ["manifests", reference] => {
            let repo = name(head(2))?;
            return Ok(Endpoint::Manifest(repo, reference.parse()?));
        }
        ["referrers", digest] => {
            let repo = name(head(2))?;
            return Ok(Endpoint::Referrers(repo, digest.parse()?));
        }
        _ => {}
    }
    if n >= 3 {
        if let ["blobs", "uploads", id] = tail(3) {
            let repo = name(head(3))?;
            if id.is_empty() {
                return Ok(Endpoint::UploadStart(repo));
            }
            let id = berth_registry::uploads::parse_upload_id(id)
                .ok_or_else(|| PathError::UploadUnknown((*id).to_owned()))?;
            return Ok(Endpoint::Upload(repo, id));
        }
    }
    if let ["blobs", digest] = tail(2) {
        let repo = name(head(2))?;
        return Ok(Endpoint::Blob(repo, digest.parse()?));
    }
    Err(PathError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn n(s: &str) -> RepoName {
        s.parse().expect("name")
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(parse("/v2/"), Ok(Endpoint::Base));
        assert_eq!(parse("/v2"), Ok(Endpoint::Base));
        assert_eq!(parse("/v2/_catalog"), Ok(Endpoint::Catalog));
        assert_eq!(
            parse("/v2/a/b/c/d/e/f/g/h/tags/list"),
            Ok(Endpoint::Tags(n("a/b/c/d/e/f/g/h")))
        );
        assert_eq!(
            parse("/v2/x/manifests/latest"),
            Ok(Endpoint::Manifest(n("x"), "latest".parse().expect("ref")))
        );
        assert_eq!(
            parse(&format!("/v2/x/y/blobs/{D}")),
            Ok(Endpoint::Blob(n("x/y"), D.parse().expect("d")))
        );
        assert_eq!(
            parse("/v2/x/blobs/uploads/"),
            Ok(Endpoint::UploadStart(n("x")))
        );
        assert_eq!(
            parse("/v2/x/blobs/uploads"),
            Ok(Endpoint::UploadStart(n("x")))
        );
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(
            parse(&format!("/v2/x/blobs/uploads/{id}")),
            Ok(Endpoint::Upload(n("x"), id.into()))
        );
        assert_eq!(
            parse(&format!("/v2/x/referrers/{D}")),
            Ok(Endpoint::Referrers(n("x"), D.parse().expect("d")))
        );
    }

    #[test]
    fn names_may_contain_suffix_words() {
        assert_eq!(parse("/v2/tags/tags/list"), Ok(Endpoint::Tags(n("tags"))));
        assert_eq!(
            parse("/v2/a/manifests/b/manifests/v1"),
            Ok(Endpoint::Manifest(
                n("a/manifests/b"),
                "v1".parse().expect("ref")
            ))
        );
        assert_eq!(
            parse("/v2/blobs/blobs/uploads/"),
            Ok(Endpoint::UploadStart(n("blobs")))
        );
    }

    #[test]
    fn rejects_tricks() {
        for bad in [
            "/v2/../manifests/x",
            "/v2/a/../b/manifests/x",
            "/v2/%2e%2e/manifests/x",
            "/v2/a//b/tags/list",
            "/v2/A/tags/list",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(PathError::Invalid(OciError::InvalidName(_)))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse("/v2/a/blobs/sha256:xyz"),
            Err(PathError::Invalid(OciError::InvalidDigest(_)))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/uploads/../../x"),
            Err(PathError::NotFound | PathError::Invalid(_))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/uploads/nope"),
            Err(PathError::UploadUnknown(_))
        ));
        assert_eq!(parse("/v3/x"), Err(PathError::NotFound));
        assert_eq!(parse("/v2/x"), Err(PathError::NotFound));
    }
}
