//! The claim set of a registry token (distribution's `ClaimSet`): the registered claims and
//! the private `access` claim, as both the controller and the built-in issuer use them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Access, Action, Resource};

/// Clock skew allowed on `exp` and `nbf`, as registry:2's `token.Leeway`.
pub const LEEWAY_SECS: i64 = 60;

/// A token's claims. Missing claims read as empty or zero, as in registry:2, and then fail
/// the checks that need them (a token without `exp` has expired in 1970).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `iss`: who issued the token.
    #[serde(default, deserialize_with = "null_default")]
    pub iss: String,
    /// `sub`: the user; empty for anonymous.
    #[serde(default, deserialize_with = "null_default")]
    pub sub: String,
    /// `aud`: the services the token is for.
    #[serde(default)]
    pub aud: Audience,
    /// `exp`: expiry, seconds since the epoch.
    #[serde(default, deserialize_with = "null_default")]
    pub exp: i64,
    /// `nbf`: not before, seconds since the epoch.
    #[serde(default, deserialize_with = "null_default")]
    pub nbf: i64,
    /// `iat`: issued at, seconds since the epoch.
    #[serde(default, deserialize_with = "null_default")]
    pub iat: i64,
    /// `jti`: unique token ID.
    #[serde(default, deserialize_with = "null_default")]
    pub jti: String,
    /// `access`: what the token grants.
    #[serde(default, deserialize_with = "null_default")]
    pub access: Vec<ResourceActions>,
    /// `berth_groups` (Berth's built-in token server): the subject's groups from an OIDC
    /// sign-in, for filtering the catalog; absent for everyone else.
    #[serde(
        default,
        rename = "berth_groups",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub groups: Vec<String>,
}

/// One entry of the `access` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// Repository name, or `catalog`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Granted actions: `pull`, `push`, `delete`, `*`.
    #[serde(default, deserialize_with = "null_default")]
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// The claim entry for `access`.
    pub fn from_access(access: &Access) -> ResourceActions {
        let (kind, name) = match &access.resource {
            Resource::Repository(name) => ("repository", name.as_str()),
            Resource::Catalog => ("registry", "catalog"),
        };
        ResourceActions {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: access
                .actions
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
        }
    }

    /// The access this entry grants; `None` for resource types Berth does not know. Unknown
    /// actions are ignored, as registry:2 ignores them.
    pub fn to_access(&self) -> Option<Access> {
        let resource = match (self.kind.as_str(), self.name.as_str()) {
            ("repository", name) if !name.is_empty() => Resource::Repository(name.to_owned()),
            ("registry", "catalog") => Resource::Catalog,
            _ => return None,
        };
        let mut actions: Vec<Action> = self
            .actions
            .iter()
            .filter_map(|a| Action::parse(a))
            .collect();
        actions.sort();
        actions.dedup();
        Some(Access { resource, actions })
    }
}

impl Claims {
    /// The access granted by the `access` claim.
    pub fn granted(&self) -> Vec<Access> {
        self.access
            .iter()
            .filter_map(ResourceActions::to_access)
            .collect()
    }

    /// Checks issuer, audience and validity period at `now` (seconds since the epoch);
    /// `Err` says why the token is not valid.
    pub fn check(&self, issuer: &str, service: &str, now: i64) -> Result<(), String> {
        if self.iss != issuer {
            return Err(format!("token from untrusted issuer {:?}", self.iss));
        }
        if !self.aud.0.iter().any(|a| a == service) {
            return Err(format!(
                "token intended for another audience: {:?}",
                self.aud.0
            ));
        }
        if now > self.exp.saturating_add(LEEWAY_SECS) {
            return Err(format!("token expired at {}", self.exp));
        }
        if now < self.nbf.saturating_sub(LEEWAY_SECS) {
            return Err(format!("token not valid before {}", self.nbf));
        }
        Ok(())
    }
}

/// `aud`: one string or an array of strings. Written as a single string when there is one
/// audience, which registry:2 v2.x requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience(pub Vec<String>);

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Option::<Raw>::deserialize(d)? {
            None => Audience::default(),
            Some(Raw::One(a)) => Audience(vec![a]),
            Some(Raw::Many(a)) => Audience(a),
        })
    }
}

/// JSON `null` reads as the default, as Go's decoder leaves the zero value.
fn null_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).expect("claims")
    }

    #[test]
    fn audience_is_a_string_or_an_array() {
        assert_eq!(claims(r#"{"aud":"reg"}"#).aud, Audience(vec!["reg".into()]));
        assert_eq!(
            claims(r#"{"aud":["a","reg"]}"#).aud,
            Audience(vec!["a".into(), "reg".into()])
        );
        assert_eq!(claims(r#"{"aud":null}"#).aud, Audience::default());
        assert!(serde_json::from_str::<Claims>(r#"{"aud":5}"#).is_err());
        let one = serde_json::to_value(Audience(vec!["reg".into()])).expect("json");
        assert_eq!(one, serde_json::json!("reg"));
        let two = serde_json::to_value(Audience(vec!["a".into(), "b".into()])).expect("json");
        assert_eq!(two, serde_json::json!(["a", "b"]));
    }

    #[test]
    fn checks_issuer_audience_and_time_with_leeway() {
        let c = claims(r#"{"iss":"auth","aud":["x","reg"],"exp":1000,"nbf":500}"#);
        assert!(c.check("auth", "reg", 800).is_ok());
        assert!(c.check("other", "reg", 800).is_err());
        assert!(c.check("auth", "x2", 800).is_err());
        assert!(c.check("auth", "reg", 1000 + LEEWAY_SECS).is_ok());
        assert!(c.check("auth", "reg", 1001 + LEEWAY_SECS).is_err());
        assert!(c.check("auth", "reg", 500 - LEEWAY_SECS).is_ok());
        assert!(c.check("auth", "reg", 499 - LEEWAY_SECS).is_err());
        // No exp: expired long ago. Extreme values do not overflow.
        assert!(claims(r#"{"iss":"auth","aud":"reg"}"#)
            .check("auth", "reg", 100)
            .is_err());
        let far = claims(&format!(
            r#"{{"iss":"a","aud":"r","exp":{},"nbf":{}}}"#,
            i64::MAX,
            i64::MIN
        ));
        assert!(far.check("a", "r", 0).is_ok());
    }

    #[test]
    fn access_claim_converts_both_ways() {
        let c = claims(
            r#"{"access":[
                {"type":"repository","name":"a/b","actions":["push","pull","bogus","pull"]},
                {"type":"registry","name":"catalog","actions":["*"]},
                {"type":"repository(plugin)","name":"p","actions":["pull"]},
                {"type":"repository","name":"","actions":["pull"]},
                {"type":"repository","name":"n","actions":null}
            ]}"#,
        );
        assert_eq!(
            c.granted(),
            vec![
                Access::repository("a/b", &[Action::Pull, Action::Push]),
                Access::catalog(),
                Access::repository("n", &[]),
            ]
        );
        let entry = ResourceActions::from_access(&Access::repository("x", &[Action::Pull]));
        assert_eq!(
            serde_json::to_value(&entry).expect("json"),
            serde_json::json!({"type":"repository","name":"x","actions":["pull"]})
        );
        assert_eq!(
            ResourceActions::from_access(&Access::catalog()).to_access(),
            Some(Access::catalog())
        );
    }
}
