//! Repository name patterns, shared by the access rules (berth-auth) and the retention
//! policies (berth-registry, checked at config load by berth-config), so that
//! `repositories: ["team-a/*"]` means the same everywhere.
//!
//! Patterns are matched segment by segment (segments are separated by `/`): `*` matches
//! one whole segment, `*` inside a segment matches any run of characters within it
//! (`app-*`), `**` matches any number of segments — at least one at the end of a pattern
//! (`public/**` covers `public/x` and `public/x/y`, not `public` itself), zero or more
//! elsewhere (`**/base` covers `base` and `a/b/base`) — and anything else matches exactly.

use std::fmt;

/// A repository pattern, split into segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`
    AnyDepth,
    /// A segment, possibly with `*` wildcards.
    One(String),
}

impl RepoPattern {
    /// Parses a pattern; the error explains what a pattern must look like.
    pub fn parse(text: &str) -> Result<RepoPattern, String> {
        if text.is_empty() || text.split('/').any(str::is_empty) {
            return Err(format!(
                "bad repository pattern {text:?}: segments separated by single '/', none empty"
            ));
        }
        Ok(RepoPattern {
            text: text.to_owned(),
            segments: text
                .split('/')
                .map(|s| match s {
                    "**" => Segment::AnyDepth,
                    s => Segment::One(s.to_owned()),
                })
                .collect(),
        })
    }

    /// Whether `repository` (a name such as `team-a/app`) matches.
    pub fn matches(&self, repository: &str) -> bool {
        let segments: Vec<&str> = repository.split('/').collect();
        match_segments(&self.segments, &segments)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
mod tests {
    use super::*;

    fn matches(pattern: &str, repo: &str) -> bool {
        RepoPattern::parse(pattern).expect("pattern").matches(repo)
    }

    #[test]
    fn star_is_one_segment_double_star_any_depth() {
        assert!(matches("team-a/*", "team-a/app"));
        assert!(!matches("team-a/*", "team-a"));
        assert!(!matches("team-a/*", "team-a/app/sub"));
        assert!(!matches("team-a/*", "team-b/app"));
        assert!(matches("public/**", "public/x"));
        assert!(matches("public/**", "public/x/y/z"));
        assert!(!matches("public/**", "public"));
        assert!(!matches("public/**", "publicity/x"));
        assert!(matches("**", "a"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("**/base", "base"));
        assert!(matches("**/base", "a/b/base"));
        assert!(!matches("**/base", "a/b/base2"));
        assert!(matches("a/**/z", "a/z"));
        assert!(matches("a/**/z", "a/b/c/z"));
        assert!(!matches("a/**/z", "a/b/c"));
        assert!(matches("*/app", "team/app"));
        assert!(!matches("*/app", "app"));
    }

    #[test]
    fn exact_and_in_segment_wildcards() {
        assert!(matches("library/nginx", "library/nginx"));
        assert!(!matches("library/nginx", "library/nginx2"));
        assert!(!matches("library/nginx", "library"));
        assert!(!matches("library", "library/nginx"));
        assert!(matches("app-*", "app-web"));
        assert!(matches("app-*", "app-"));
        assert!(!matches("app-*", "app-web/x"));
        assert!(!matches("app-*", "my-app-web"));
        assert!(matches("*-svc", "billing-svc"));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("a*b*c", "a-c-b"));
        assert!(!matches("a*bc*bc", "abc"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "/a", "a/", "a//b"] {
            assert!(RepoPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            RepoPattern::parse("a/**").expect("pattern").to_string(),
            "a/**"
        );
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics(pattern in "[a*/]{0,12}", repo in "[a-c/]{0,12}") {
            if let Ok(p) = RepoPattern::parse(&pattern) {
                let _ = p.matches(&repo);
            }
        }

        #[test]
        fn glob_agrees_with_a_reference(pattern in "[ab*]{0,8}", text in "[ab]{0,8}") {
            proptest::prop_assert_eq!(glob(&pattern, &text), reference_glob(pattern.as_bytes(), text.as_bytes()));
        }
    }

    /// A slow, obviously right wildcard matcher.
    fn reference_glob(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| reference_glob(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && reference_glob(rest, &t[1..]),
        }
    }
}
