//! Personal access tokens (a Berth extension): long-lived secrets that users who sign in with
//! OIDC create in the web UI and use as the password of `docker login` (and podman,
//! containerd, skopeo). The built-in token server asks a [`PersonalTokens`] store whether a
//! password is a live token of that user; the token then grants what the rules give the user
//! and the groups recorded with it, cut to the token's scope (pull, or pull and push; never
//! delete). The store itself lives with the registry's storage (crates/ui), so every node
//! sharing the storage knows every token.

use crate::Action;

/// Every personal access token starts with this, so a password can be told from one.
pub const TOKEN_PREFIX: &str = "berth_pat_";

/// What a live personal access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalGrant {
    /// The groups the user was in when the token was created.
    pub groups: Vec<String>,
    /// The most the token may do on a repository: pull, or pull and push.
    pub actions: Vec<Action>,
}

/// Where personal access tokens are kept.
#[async_trait::async_trait]
pub trait PersonalTokens: Send + Sync {
    /// What `secret` grants when it is a live (not expired, not revoked) token of `user`;
    /// `None` otherwise.
    async fn check(&self, user: &str, secret: &str) -> Option<PersonalGrant>;
}
