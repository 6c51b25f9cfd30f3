//! Manifest references: a tag or a digest.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, OciError};

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self, OciError> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        let rest_ok = b
            .iter()
            .skip(1)
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
        if !first_ok || !rest_ok || b.len() > 128 {
            return Err(OciError::InvalidTag(s.to_owned()));
        }
        Ok(Tag(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest (anything with a `:` is a digest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable digest.
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self, OciError> {
        if s.contains(':') {
            s.parse().map(Reference::Digest)
        } else {
            s.parse().map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn tags_and_digests() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        assert!(matches!("_x.y-Z9".parse(), Ok(Reference::Tag(_))));
        assert!("-x".parse::<Reference>().is_err());
        assert!(".x".parse::<Reference>().is_err());
        assert!("a/b".parse::<Reference>().is_err());
        assert!("..".parse::<Reference>().is_err());
        assert!(format!("a{}", "b".repeat(128))
            .parse::<Reference>()
            .is_err());
        assert!("sha256:zz".parse::<Reference>().is_err());
    }

    proptest! {
        #[test]
        fn tag_parse_never_panics(s in "\\PC{0,140}") {
            if let Ok(Reference::Tag(t)) = s.parse::<Reference>() {
                prop_assert!(!t.as_str().contains('/'));
                prop_assert!(t.as_str() != "." && t.as_str() != "..");
            }
        }
    }
}
