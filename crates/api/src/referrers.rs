//! `GET /v2/<name>/referrers/<digest>`: the OCI 1.1 referrers API, with `artifactType`
//! filtering reported in `OCI-Filters-Applied`; through the pull-through cache too, which
//! adds what the upstream lists.

use axum::response::Response;
use berth_oci::media_types::OCI_INDEX;
use berth_oci::{Digest, RepoName};
use berth_registry::read::ReadStore;
use http::HeaderName;
use serde_json::json;

use crate::dispatch::json;
use crate::request::Req;
use crate::ApiError;

/// Answers an image index listing the manifests whose subject is `digest`.
pub async fn list(
    req: &Req,
    store: &dyn ReadStore,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    let filter = req.query.get("artifactType").filter(|t| !t.is_empty());
    let manifests = store.referrers(repo, digest, filter).await?;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut extra = Vec::new();
    if filter.is_some() {
        extra.push((
            HeaderName::from_static("oci-filters-applied"),
            "artifactType".to_owned(),
        ));
    }
    json(&index, OCI_INDEX, extra)
}
