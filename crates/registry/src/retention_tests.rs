//! Retention rules and their precedence, on the filesystem driver in a tempdir so that push
//! times (link modification times) can be set exactly.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_oci::{Digest, Reference, RepoPattern, Tag};
use berth_storage::{paths, FilesystemDriver};
use regex::Regex;
use tempfile::TempDir;

use crate::gc_tests::{blob, descriptor, image, manifest, repo, IMAGE, INDEX};
use crate::retention::{Reason, RetentionPolicy, RetentionReport};
use crate::{Registry, RegistryOptions};

const DAY: u64 = 24 * 3600;

struct Fixture {
    dir: TempDir,
    reg: Arc<Registry>,
    now: SystemTime,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = FilesystemDriver::new(dir.path()).expect("driver");
        let reg = Registry::new(Arc::new(driver), RegistryOptions::default());
        Fixture {
            dir,
            reg,
            now: SystemTime::now(),
        }
    }

    /// Pushes a one-layer image tagged `tag` (unique content per `repo:tag`), pushed `days` ago.
    async fn tag(&self, name: &str, tag: &str, days: f64) -> Digest {
        let digest = self.image(name, Some(tag), &format!("{name}:{tag}")).await;
        self.age_tag(name, tag, days);
        digest
    }

    /// Pushes an image (tagged or by digest) whose layer holds `seed`.
    async fn image(&self, name: &str, tag: Option<&str>, seed: &str) -> Digest {
        let config = blob(&self.reg, name, "{}").await;
        let layer = blob(&self.reg, name, seed).await;
        manifest(&self.reg, name, tag, image(&config, &layer, "")).await
    }

    /// Sets the push time of `tag` to `days` ago.
    fn age_tag(&self, name: &str, tag: &str, days: f64) {
        let tag: Tag = tag.parse().expect("tag");
        self.age(&paths::tag_current_link(&repo(name), &tag), days);
    }

    /// Sets a storage file's modification time to `days` ago.
    fn age(&self, path: &str, days: f64) {
        let full = self.dir.path().join(path.trim_start_matches('/'));
        set_mtime(&full, self.now - Duration::from_secs_f64(days * DAY as f64));
    }

    /// Makes every stored file `days` old (revisions past the untagged grace period).
    fn age_everything(&self, days: f64) {
        let time = self.now - Duration::from_secs_f64(days * DAY as f64);
        walk(self.dir.path(), &mut |p| set_mtime(p, time));
    }

    async fn run(&self, policies: &[RetentionPolicy], dry_run: bool) -> RetentionReport {
        self.reg
            .apply_retention_at(policies, dry_run, self.now)
            .await
            .expect("retention")
    }

    async fn tags(&self, name: &str) -> Vec<String> {
        self.reg.all_tags(&repo(name)).await.expect("tags")
    }

    async fn has_manifest(&self, name: &str, digest: &Digest) -> bool {
        let reference = Reference::Digest(digest.clone());
        self.reg.get_manifest(&repo(name), &reference).await.is_ok()
    }
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

fn policy(repositories: &[&str]) -> RetentionPolicy {
    RetentionPolicy {
        repositories: repositories
            .iter()
            .map(|p| RepoPattern::parse(p).expect("pattern"))
            .collect(),
        keep_last: None,
        older_than: None,
        keep_tags: Vec::new(),
        delete_tags: Vec::new(),
        delete_untagged: false,
    }
}

fn regexes(list: &[&str]) -> Vec<Regex> {
    list.iter().map(|r| Regex::new(r).expect("regex")).collect()
}

fn days(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n * DAY))
}

/// `(repository, tag)` of each deleted tag, sorted.
fn deleted_tags(report: &RetentionReport) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = report
        .deleted
        .iter()
        .filter_map(|d| d.tag.clone().map(|t| (d.repository.clone(), t)))
        .collect();
    tags.sort();
    tags
}

fn names(repo: &str, tags: &[&str]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = tags
        .iter()
        .map(|t| (repo.to_owned(), (*t).to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn keep_tags_win_then_delete_tags_then_keep_last_and_older_than() {
    let fx = Fixture::new();
    for (tag, age) in [
        ("latest", 100.0),
        ("v1.0.0", 100.0),
        ("pr-keep", 100.0),
        ("pr-1", 0.1),
        ("pr-2", 50.0),
        ("a1", 1.0),
        ("a2", 2.0),
        ("a3", 2.5),
        ("a4", 10.0),
        ("a5", 40.0),
    ] {
        fx.tag("team/app", tag, age).await;
    }
    let mut p = policy(&["team/*"]);
    p.keep_last = Some(2);
    p.older_than = days(3);
    p.keep_tags = regexes(&[r"^v\d+\.\d+\.\d+$", "^latest$", "^pr-keep$"]);
    p.delete_tags = regexes(&["^pr-"]);
    let report = fx.run(&[p], false).await;
    // pr-* by regex even when new; a1, a2 are the newest two; a3 is third but not old enough.
    assert_eq!(
        deleted_tags(&report),
        names("team/app", &["a4", "a5", "pr-1", "pr-2"])
    );
    let reasons: Vec<String> = report
        .deleted
        .iter()
        .map(|d| d.reason.to_string())
        .collect();
    assert!(
        reasons.contains(&"matches deletetags \"^pr-\"".to_owned()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"not among the newest 2 and older than 3days".to_owned()),
        "{reasons:?}"
    );
    assert_eq!(report.tags_kept, 6);
    assert_eq!(
        fx.tags("team/app").await,
        ["a1", "a2", "a3", "latest", "pr-keep", "v1.0.0"]
    );
}

#[tokio::test]
async fn keep_last_alone_and_older_than_alone() {
    let fx = Fixture::new();
    for (i, age) in [0.5, 1.5, 2.5, 3.5, 4.5].into_iter().enumerate() {
        fx.tag("count/app", &format!("t{i}"), age).await;
        fx.tag("age/app", &format!("t{i}"), age).await;
    }
    // Equal push times: the greater name counts as newer.
    fx.tag("count/tie", "a", 1.0).await;
    fx.tag("count/tie", "b", 1.0).await;
    let mut by_count = policy(&["count/*"]);
    by_count.keep_last = Some(2);
    let mut by_age = policy(&["age/*"]);
    by_age.older_than = days(2);
    let report = fx.run(&[by_count, by_age], false).await;
    let mut expected = names("count/app", &["t2", "t3", "t4"]);
    expected.extend(names("age/app", &["t2", "t3", "t4"]));
    expected.extend(names("count/tie", &[]));
    expected.sort();
    assert_eq!(deleted_tags(&report), expected);

    let mut one = policy(&["count/tie"]);
    one.keep_last = Some(1);
    let report = fx.run(&[one], false).await;
    assert_eq!(deleted_tags(&report), names("count/tie", &["a"]));
}

#[tokio::test]
async fn without_age_rules_only_delete_tags_delete() {
    let fx = Fixture::new();
    for tag in ["old", "pr-3", "x"] {
        fx.tag("r", tag, 400.0).await;
    }
    let mut p = policy(&["r"]);
    p.delete_tags = regexes(&["^pr-"]);
    let report = fx.run(&[p], false).await;
    assert_eq!(deleted_tags(&report), names("r", &["pr-3"]));
    assert_eq!(fx.tags("r").await, ["old", "x"]);
}

#[tokio::test]
async fn first_matching_policy_applies_and_unmatched_repositories_are_left_alone() {
    let fx = Fixture::new();
    for name in ["team-a/app", "team-a/app/sub", "library/x/y", "other"] {
        fx.tag(name, "new", 1.0).await;
        fx.tag(name, "old", 9.0).await;
    }
    let mut everything = policy(&["team-a/*"]);
    everything.keep_last = Some(0);
    let mut newest = policy(&["library/**", "team-a/**"]);
    newest.keep_last = Some(1);
    let report = fx.run(&[everything, newest], false).await;
    let mut expected = names("team-a/app", &["new", "old"]);
    expected.extend(names("team-a/app/sub", &["old"]));
    expected.extend(names("library/x/y", &["old"]));
    expected.sort();
    assert_eq!(deleted_tags(&report), expected);
    assert_eq!(report.repositories, 3);
    assert_eq!(fx.tags("other").await, ["new", "old"]);
    assert!(fx.tags("team-a/app").await.is_empty());
}

#[tokio::test]
async fn delete_untagged_keeps_index_children_referrers_and_recent_pushes() {
    let fx = Fixture::new();
    let name = "multi";
    // A tagged index whose platform images are untagged.
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        children.push(fx.image(name, None, arch).await);
    }
    let index_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{},{}]}}"#,
        descriptor(IMAGE, &children[0], 1),
        descriptor(IMAGE, &children[1], 1)
    );
    let index = manifest(&fx.reg, name, Some("latest"), index_body).await;
    // A signature of the index (kept) and of an expired image (deleted with it).
    let config = blob(&fx.reg, name, "{}").await;
    let subject = |d: &Digest| {
        format!(
            r#","artifactType":"application/example.sig","subject":{}"#,
            descriptor(IMAGE, d, 1)
        )
    };
    let sig_layer = blob(&fx.reg, name, "signature").await;
    let signature = manifest(
        &fx.reg,
        name,
        None,
        image(&config, &sig_layer, &subject(&index)),
    )
    .await;
    let expired = fx.image(name, Some("expired"), "expired image").await;
    let old_sig_layer = blob(&fx.reg, name, "old signature").await;
    let old_signature = manifest(
        &fx.reg,
        name,
        None,
        image(&config, &old_sig_layer, &subject(&expired)),
    )
    .await;
    let lonely = fx.image(name, None, "pushed by digest long ago").await;
    fx.age_everything(30.0);
    // Pushed by digest a minute ago: a push in progress, kept for the grace period.
    let recent = fx.image(name, None, "pushed by digest just now").await;

    let mut p = policy(&["multi"]);
    p.delete_tags = regexes(&["^expired$"]);
    p.delete_untagged = true;
    let report = fx.run(&[p], false).await;
    let mut gone: Vec<Digest> = report
        .deleted
        .iter()
        .filter(|d| d.tag.is_none())
        .map(|d| d.digest.clone())
        .collect();
    gone.sort_by_key(|d| d.to_string());
    let mut expected = vec![expired.clone(), old_signature.clone(), lonely.clone()];
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(gone, expected);
    assert!(report
        .deleted
        .iter()
        .all(|d| d.tag.is_some() || d.reason == Reason::Untagged));
    for kept in [&index, &children[0], &children[1], &signature, &recent] {
        assert!(fx.has_manifest(name, kept).await, "{kept} was removed");
    }
    for removed in &expected {
        assert!(
            !fx.has_manifest(name, removed).await,
            "{removed} is still there"
        );
    }
    let referrers = fx
        .reg
        .referrers(&repo(name), &index, None)
        .await
        .expect("referrers");
    assert_eq!(referrers.len(), 1);
    assert_eq!(fx.tags(name).await, ["latest"]);
}

#[tokio::test]
async fn dry_run_reports_what_the_real_run_deletes_and_changes_nothing() {
    let fx = Fixture::new();
    for r in 0..3 {
        let name = format!("svc/app{r}");
        for t in 0..12u32 {
            fx.tag(&name, &format!("build-{t}"), f64::from(t) * 1.5)
                .await;
        }
        fx.tag(&name, "pr-7", 0.0).await;
        fx.tag(&name, "stable", 90.0).await;
        fx.image(&name, None, "untagged").await;
    }
    fx.age_everything(60.0);
    for r in 0..3 {
        for t in 0..12u32 {
            fx.age_tag(
                &format!("svc/app{r}"),
                &format!("build-{t}"),
                f64::from(t) * 1.5,
            );
        }
    }
    let mut p = policy(&["svc/*"]);
    p.keep_last = Some(3);
    p.older_than = days(7);
    p.keep_tags = regexes(&["^stable$"]);
    p.delete_tags = regexes(&["^pr-"]);
    p.delete_untagged = true;
    let policies = [p];
    let before: Vec<Vec<String>> =
        futures_util::future::join_all((0..3).map(|r| fx.tags_owned(format!("svc/app{r}")))).await;
    let dry = fx.run(&policies, true).await;
    let after_dry: Vec<Vec<String>> =
        futures_util::future::join_all((0..3).map(|r| fx.tags_owned(format!("svc/app{r}")))).await;
    assert_eq!(before, after_dry, "the dry run changed tags");
    let real = fx.run(&policies, false).await;
    assert_eq!(dry.deleted, real.deleted);
    assert!(real.notes.is_empty(), "{:?}", real.notes);
    // Per repository: build-5 .. build-11 (older than 7 days, beyond the newest 3) and pr-7
    // go; their 8 images and the untagged one become unreachable.
    assert_eq!(real.tags_deleted(), 3 * 8);
    assert_eq!(real.manifests_deleted(), 3 * 9);
    assert_eq!(
        fx.tags("svc/app0").await,
        ["build-0", "build-1", "build-2", "build-3", "build-4", "stable"]
    );
    let again = fx.run(&policies, true).await;
    assert!(again.deleted.is_empty(), "{:?}", again.deleted);
}

#[tokio::test]
async fn read_only_refuses_a_real_run_but_not_a_dry_run() {
    let fx = Fixture::new();
    fx.tag("r", "old", 10.0).await;
    let mut p = policy(&["r"]);
    p.older_than = days(1);
    fx.reg.set_read_only(true);
    let dry = fx.run(std::slice::from_ref(&p), true).await;
    assert_eq!(dry.tags_deleted(), 1);
    let real = fx.reg.apply_retention_at(&[p], false, fx.now).await;
    assert!(
        matches!(real, Err(crate::RegistryError::ReadOnly)),
        "{real:?}"
    );
    assert_eq!(fx.tags("r").await, ["old"]);
}

impl Fixture {
    async fn tags_owned(&self, name: String) -> Vec<String> {
        self.tags(&name).await
    }
}

#[tokio::test]
async fn an_interrupted_tag_delete_is_finished_by_the_next_run() {
    let fx = Fixture::new();
    fx.tag("r", "keep", 1.0).await;
    fx.tag("r", "half-deleted", 1.0).await;
    // What a kill between the last link and the directory leaves behind.
    let tag: Tag = "half-deleted".parse().expect("tag");
    let dir = fx
        .dir
        .path()
        .join(paths::tag_dir(&repo("r"), &tag).trim_start_matches('/'));
    std::fs::remove_dir_all(dir.join("index")).expect("remove index");
    std::fs::remove_dir_all(dir.join("current")).expect("remove current");
    assert_eq!(fx.tags("r").await, ["half-deleted", "keep"]);
    let p = policy(&["r"]);
    let dry = fx.run(std::slice::from_ref(&p), true).await;
    assert_eq!(dry.notes.len(), 1, "{:?}", dry.notes);
    assert!(dry.notes[0].contains("would remove"), "{:?}", dry.notes);
    assert_eq!(fx.tags("r").await, ["half-deleted", "keep"]);
    let real = fx.run(&[p], false).await;
    assert!(real.deleted.is_empty());
    assert!(real.notes[0].contains("removed the empty directory of tag half-deleted"));
    assert_eq!(fx.tags("r").await, ["keep"]);
}
