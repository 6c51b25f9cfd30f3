//! Repository names, validated with the distribution spec's grammar so that a name can never
//! escape the storage root (`..`, `//`, NUL and uppercase are all rejected).

use std::fmt;
use std::str::FromStr;

use crate::OciError;

/// registry:2's limit on the whole name, which keeps storage paths bounded.
const MAX_NAME_LEN: usize = 255;

/// A validated repository name such as `library/alpine` or `a/b/c/d/e/f/g/h`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path components (`a/b/c` → `a`, `b`, `c`).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: alphanumeric runs joined by one separator.
fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self, OciError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(is_valid_component) {
            return Err(OciError::InvalidName(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c/d/e/f/g/h",
            "my-app",
            "my--app",
            "a.b",
            "a_b",
            "a__b",
            "x9/y-z.w",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok:?} rejected");
        }
    }

    #[test]
    fn rejects_tricks() {
        let long = "a".repeat(256);
        for bad in [
            "",
            "..",
            "a/..",
            "../a",
            "a//b",
            "/a",
            "a/",
            "A",
            "a b",
            "a\0b",
            "a...b",
            "a___b",
            "-a",
            "a-",
            "%2e%2e",
            "a/./b",
            "_a",
            long.as_str(),
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn valid_names_never_contain_path_tricks(s in "[a-z0-9./_%-]{0,40}") {
            if let Ok(n) = s.parse::<RepoName>() {
                prop_assert!(!n.as_str().split('/').any(|c| c == ".." || c == "." || c.is_empty()));
            }
        }
    }
}
