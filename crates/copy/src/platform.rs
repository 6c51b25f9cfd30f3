//! `--platform os/arch[/variant]`: which child of an index to copy.

use std::fmt;
use std::str::FromStr;

use berth_oci::Descriptor;
use serde::Deserialize;

use crate::Failure;

/// A platform as in an index's `platform` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    /// `v7`, `v8`, if given.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program runs on, in OCI's words (Rust says `x86_64`, OCI `amd64`).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Whether an index entry is for this platform (a variant only counts when asked for).
    pub fn matches(&self, entry: &serde_json::Value) -> bool {
        #[derive(Deserialize)]
        struct P {
            os: Option<String>,
            architecture: Option<String>,
            variant: Option<String>,
        }
        let Some(p) = entry.get("platform").and_then(|p| P::deserialize(p).ok()) else {
            return false;
        };
        p.os.as_deref() == Some(&self.os)
            && p.architecture.as_deref() == Some(&self.architecture)
            && (self.variant.is_none() || p.variant == self.variant)
    }
}

impl FromStr for Platform {
    type Err = Failure;

    fn from_str(s: &str) -> Result<Self, Failure> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: (*os).to_owned(),
                    architecture: (*arch).to_owned(),
                    variant: Some((*variant).to_owned()),
                })
            }
            _ => Err(Failure::Usage(format!(
                "--platform {s:?}: expected OS/ARCH or OS/ARCH/VARIANT (linux/arm64/v8)"
            ))),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The child of `index_body` for `platform`, if there is one.
pub fn select(index_body: &[u8], platform: &Platform) -> Option<Descriptor> {
    let index: serde_json::Value = serde_json::from_slice(index_body).ok()?;
    let entry = index
        .get("manifests")?
        .as_array()?
        .iter()
        .find(|e| platform.matches(e))?;
    Descriptor::deserialize(entry).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_selects() {
        let p: Platform = "linux/arm64".parse().unwrap_or_else(|e| panic!("{e}"));
        let d = format!("sha256:{}", "b".repeat(64));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "x", "digest": format!("sha256:{}", "a".repeat(64)), "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "x", "digest": d, "size": 2,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]});
        let body = serde_json::to_vec(&index).unwrap_or_default();
        assert_eq!(select(&body, &p).map(|d| d.size), Some(2));
        let v7: Platform = "linux/arm64/v7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(select(&body, &v7).is_none());
        assert!("linux".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }
}
