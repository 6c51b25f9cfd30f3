//! The registry:2 on-disk layout, and the only place that builds a storage path. Keeping it
//! byte-for-byte identical to Distribution's layout is what lets an existing `/var/lib/registry`
//! be served in place, and what lets registry:2 read what Berth writes.
//!
//! ```text
//! <root>/docker/registry/v2/
//! ├── blobs/
//! │   └── <alg>/<first two hex chars>/<hex>/data        blob and manifest content, by digest
//! └── repositories/
//!     └── <name, any depth>/
//!         ├── _layers/<alg>/<hex>/link                  "this repo may serve that blob"
//!         ├── _manifests/
//!         │   ├── revisions/<alg>/<hex>/link            manifests of this repo, by digest
//!         │   ├── tags/<tag>/current/link               digest the tag points at now
//!         │   ├── tags/<tag>/index/<alg>/<hex>/link     every digest the tag has pointed at
//!         │   └── referrers/                            Berth extension: OCI 1.1 referrers index
//!         │       ├── <alg>/<subject hex>/<alg>/<hex>/link   (registry:2 skips unknown dirs here)
//!         │       └── indexed                           marker: every older revision was scanned
//!         └── _uploads/<uuid>/
//!             ├── data                                  upload content so far (registry:2 only)
//!             ├── startedat                             RFC 3339 start time (registry:2 only)
//!             ├── berthstate                            Berth: bytes received, the SHA-256
//!             │                                         state after them, the part list
//!             ├── berthdata                             Berth on a filesystem: the content
//!             │                                         so far, chunks written at their offsets
//!             └── berthparts/<offset>-<random>          Berth on object stores: one immutable
//!                                                       object per chunk
//! ```
//!
//! Berth-only state for online garbage collection lives beside them, under `_berth/`, which
//! registry:2 never reads: its garbage collector, catalog and upload purger walk only `blobs/`
//! and `repositories/` (and its blob walk fails on any path under `blobs/` that is not a
//! digest, which is why the trash cannot live there).
//!
//! ```text
//! <root>/docker/registry/v2/_berth/
//! ├── touched/<alg>/<hex>                               unix time (ms) the blob was last
//! │                                                     pushed, mounted or referenced
//! ├── trash/<alg>/<hex>/<trashed-at, unix ms>           blob content moved out of blobs/ by
//! │                                                     online GC, until purged or restored
//! ├── catalog/<name, any depth>/_repository            repository index for `_catalog` on object
//! │                                                     stores (one flat listing, not a walk)
//! ├── catalog-complete                                  marker: the index covers every repository
//! ├── tokens/<sha256 of user name>/<sha256 of token>    a personal access token of an OIDC user:
//! │                                                     JSON (name, scope, groups, expiry), the
//! │                                                     token itself never stored
//! └── pulled/<name, any depth>/_revisions/<alg>/<hex>   unix time (ms) a manifest of a cached
//!                                                       repository was last pulled through
//!                                                       the pull-through cache (eviction)
//! ```
//!
//! A `link` file holds a digest string such as `sha256:ab12...`. Callers pass validated names,
//! tags and digests (from `berth-oci`), so no component can be `..` or empty.

use berth_oci::{Digest, RepoName, Tag};

/// The prefix of every registry:2 path.
pub const ROOT: &str = "/docker/registry/v2";

/// `/docker/registry/v2/repositories`: where the catalog walk starts.
pub fn repositories_root() -> String {
    format!("{ROOT}/repositories")
}

/// `/docker/registry/v2/blobs`: where GC walks all blobs.
pub fn blobs_root() -> String {
    format!("{ROOT}/blobs")
}

/// The directory of one blob.
pub fn blob_dir(d: &Digest) -> String {
    format!(
        "{ROOT}/blobs/{}/{}/{}",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

/// The content of one blob.
pub fn blob_data(d: &Digest) -> String {
    format!("{}/data", blob_dir(d))
}

/// The directory of a repository.
pub fn repo_dir(name: &RepoName) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// Link that makes a blob servable from a repository.
pub fn layer_link(name: &RepoName, d: &Digest) -> String {
    format!(
        "{}/_layers/{}/{}/link",
        repo_dir(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

/// Link that records a manifest revision in a repository.
pub fn revision_link(name: &RepoName, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}/link",
        repo_dir(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

/// Directory holding all revisions of a repository (GC walks it).
pub fn revisions_dir(name: &RepoName) -> String {
    format!("{}/_manifests/revisions", repo_dir(name))
}

/// Directory holding all tags of a repository.
pub fn tags_dir(name: &RepoName) -> String {
    format!("{}/_manifests/tags", repo_dir(name))
}

/// Directory of one tag.
pub fn tag_dir(name: &RepoName, tag: &Tag) -> String {
    format!("{}/{tag}", tags_dir(name))
}

/// The tag's current target.
pub fn tag_current_link(name: &RepoName, tag: &Tag) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

/// The tag's history: `index/<alg>/<hex>/link` for each digest it pointed at.
pub fn tag_index_dir(name: &RepoName, tag: &Tag) -> String {
    format!("{}/index", tag_dir(name, tag))
}

/// The tag's history entry for one digest.
pub fn tag_index_link(name: &RepoName, tag: &Tag, d: &Digest) -> String {
    format!(
        "{}/index/{}/{}/link",
        tag_dir(name, tag),
        d.algorithm().as_str(),
        d.hex()
    )
}

/// Directory listing the referrers of one subject digest.
pub fn referrers_dir(name: &RepoName, subject: &Digest) -> String {
    format!(
        "{}/_manifests/referrers/{}/{}",
        repo_dir(name),
        subject.algorithm().as_str(),
        subject.hex()
    )
}

/// Link recording that manifest `referrer` has `subject` as its subject.
pub fn referrer_link(name: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}/{}/link",
        referrers_dir(name, subject),
        referrer.algorithm().as_str(),
        referrer.hex()
    )
}

/// Marker saying the referrers index covers every revision, including those pushed before
/// Berth served the repository (e.g. by registry:2).
pub fn referrers_indexed_marker(name: &RepoName) -> String {
    format!("{}/_manifests/referrers/indexed", repo_dir(name))
}

/// Root of the repository index (`_catalog` on object stores).
pub fn catalog_index_root() -> String {
    format!("{ROOT}/_berth/catalog")
}

/// The index entry of one repository. `_repository` cannot be a name component (those never
/// start with `_`), so `a` and `a/b` have entries that never collide.
pub fn catalog_index_entry(name: &RepoName) -> String {
    format!("{}/{name}/_repository", catalog_index_root())
}

/// Written once the index was built from a full walk: from then on it is trusted.
pub fn catalog_index_complete() -> String {
    format!("{ROOT}/_berth/catalog-complete")
}

/// The jobs lease of nodes sharing this storage: one object per term, `<term:020>`, each
/// created only if absent (see `berth_registry::lease`).
pub fn jobs_lease_dir() -> String {
    format!("{ROOT}/_berth/cluster/jobs-lease")
}

/// One term of the jobs lease.
pub fn jobs_lease_term(term: u64) -> String {
    format!("{}/{term:020}", jobs_lease_dir())
}

/// Present while every node sharing this storage is read-only (`berth cluster read-only`).
pub fn cluster_read_only_flag() -> String {
    format!("{ROOT}/_berth/cluster/read-only")
}

/// Directory of one upload session.
pub fn upload_dir(name: &RepoName, uuid: &str) -> String {
    format!("{}/_uploads/{uuid}", repo_dir(name))
}

/// A Berth upload session's state: offset, saved hash state and parts (see
/// `berth_registry`'s uploads). Written whole after every chunk; its presence is the session's.
pub fn upload_state(name: &RepoName, uuid: &str) -> String {
    format!("{}/berthstate", upload_dir(name, uuid))
}

/// The directory of a Berth upload session's chunks.
pub fn upload_parts_dir(name: &RepoName, uuid: &str) -> String {
    format!("{}/berthparts", upload_dir(name, uuid))
}

/// One chunk of a Berth upload session, starting at `offset`; `nonce` makes every part name
/// new, so a part is never overwritten, only listed or not in the session's state.
pub fn upload_part(name: &RepoName, uuid: &str, offset: u64, nonce: u64) -> String {
    format!("{}/{offset:020}-{nonce:016x}", upload_parts_dir(name, uuid))
}

/// A Berth upload session's content as one file, on backends that write at offsets (a
/// filesystem; see `StorageDriver::lock_upload_file`). Not registry:2's `data`: the two keep
/// their state differently, and neither must take the other's session for its own.
pub fn upload_file(name: &RepoName, uuid: &str) -> String {
    format!("{}/berthdata", upload_dir(name, uuid))
}

/// Content received so far by a registry:2 upload session.
pub fn upload_data(name: &RepoName, uuid: &str) -> String {
    format!("{}/data", upload_dir(name, uuid))
}

/// Start time of an upload session (registry:2 writes RFC 3339 here).
pub fn upload_started_at(name: &RepoName, uuid: &str) -> String {
    format!("{}/startedat", upload_dir(name, uuid))
}

/// Root of Berth's own state (online garbage collection), outside registry:2's walks.
pub fn berth_root() -> String {
    format!("{ROOT}/_berth")
}

/// Directory of one user's personal access tokens; `user_hex` is the SHA-256 of the user
/// name in hex (so any name is one safe path component).
pub fn access_tokens(user_hex: &str) -> String {
    format!("{ROOT}/_berth/tokens/{user_hex}")
}

/// One personal access token's record; `token_hex` is the SHA-256 of the token in hex.
pub fn access_token(user_hex: &str, token_hex: &str) -> String {
    format!("{}/{token_hex}", access_tokens(user_hex))
}

/// Touch marker of a blob: when it was last made referenced or reused.
pub fn touch_marker(d: &Digest) -> String {
    format!(
        "{}/touched/{}/{}",
        berth_root(),
        d.algorithm().as_str(),
        d.hex()
    )
}

/// Root of the garbage-collection trash: `<alg>/<hex>/<trashed-at>`.
pub fn trash_root() -> String {
    format!("{}/trash", berth_root())
}

/// Directory of one blob's trash entries.
pub fn trash_dir(d: &Digest) -> String {
    format!("{}/{}/{}", trash_root(), d.algorithm().as_str(), d.hex())
}

/// One trash entry: the blob's content, named by when it was trashed (unix ms), so that moving
/// it in records the time in the same atomic step.
pub fn trash_entry(d: &Digest, trashed_at_ms: u64) -> String {
    format!("{}/{trashed_at_ms}", trash_dir(d))
}

/// Root of the pull-through cache's last-pull records.
pub fn pulled_root() -> String {
    format!("{}/pulled", berth_root())
}

/// When a manifest of a cached repository was last pulled (unix ms). `_revisions` cannot be a
/// repository name component (those start with a letter or digit), so the records of
/// `a` and `a/b` never collide.
pub fn pull_record(name: &RepoName, d: &Digest) -> String {
    format!(
        "{}/{name}/_revisions/{}/{}",
        pulled_root(),
        d.algorithm().as_str(),
        d.hex()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_registry2_layout() {
        let name: RepoName = "a/b/c".parse().expect("valid");
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .expect("valid");
        let tag: Tag = "latest".parse().expect("valid");
        let hex = d.hex();
        assert_eq!(
            blob_data(&d),
            format!("/docker/registry/v2/blobs/sha256/e3/{hex}/data")
        );
        assert_eq!(
            layer_link(&name, &d),
            format!("/docker/registry/v2/repositories/a/b/c/_layers/sha256/{hex}/link")
        );
        assert_eq!(
            revision_link(&name, &d),
            format!(
                "/docker/registry/v2/repositories/a/b/c/_manifests/revisions/sha256/{hex}/link"
            )
        );
        assert_eq!(
            tag_current_link(&name, &tag),
            "/docker/registry/v2/repositories/a/b/c/_manifests/tags/latest/current/link"
        );
        assert_eq!(
            tag_index_link(&name, &tag, &d),
            format!("/docker/registry/v2/repositories/a/b/c/_manifests/tags/latest/index/sha256/{hex}/link")
        );
        assert_eq!(
            touch_marker(&d),
            format!("/docker/registry/v2/_berth/touched/sha256/{hex}")
        );
        assert_eq!(
            trash_entry(&d, 17),
            format!("/docker/registry/v2/_berth/trash/sha256/{hex}/17")
        );
        assert_eq!(
            pull_record(&name, &d),
            format!("/docker/registry/v2/_berth/pulled/a/b/c/_revisions/sha256/{hex}")
        );
        assert_eq!(
            upload_data(&name, "u1"),
            "/docker/registry/v2/repositories/a/b/c/_uploads/u1/data"
        );
    }
}
