//! Several `berth serve` nodes on one bucket (docs/scale-out.md), each request sent to the node
//! the test picks: uploads whose steps land on different nodes, a node killed mid-upload, what
//! one node writes seen by the others within the documented bounds, the jobs lease (moto, which
//! honours create-only writes) and `cluster.jobsnode` (Garage, which does not), the cluster-wide
//! read-only switch, and tokens issued by one node accepted by another. The garbage collection
//! soak with two collectors is in `cluster_soak.rs`; the compat kit through haproxy in
//! `scripts/cluster.sh`. Servers are started on 127.0.0.1 by `scripts/s3-test-servers.sh`;
//! without them the tests skip, except under `CI=true`.
#![allow(missing_docs, clippy::unwrap_used)]

mod cluster_kit;
mod common;
#[path = "../../storage/tests/s3_kit/mod.rs"]
mod s3_kit;

use cluster_kit::*;

/// POST on one node, a PATCH on each of the others, the closing PUT on the first, the manifest
/// on the second, pulls from all: no step needs the node that took the previous one. The nodes
/// have different `http.secret`s: Berth keeps upload state in the storage, not in the URL, so
/// the secret does not matter (registry:2 would refuse the session on the second node).
async fn chunked_push_across_nodes(kind: Kind, root: &str) {
    let Some(mut c) = Cluster::new(kind, root) else {
        return;
    };
    for (name, secret) in [("n1", "one"), ("n2", "two"), ("n3", "three")] {
        c.start_with_secret(name, secret);
    }
    // Over 5 MiB so that S3 multipart parts are real on the store's side too.
    let blob: Vec<u8> = (0..6 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let third = blob.len() / 3;
    let r = c
        .node(0)
        .send("POST", "/v2/team/app/blobs/uploads/", &[], Vec::new())
        .await;
    r.assert_status(202);
    let mut url = location(&r);
    url = patch(c.node(1), &url, 0, &blob[..third]).await;
    url = patch(c.node(2), &url, third, &blob[third..2 * third]).await;
    // The session's progress, asked of the first node, which saw no chunk.
    let status = c.node(0).get(&url).await;
    status.assert_status(204);
    assert_eq!(status.header("range"), format!("0-{}", 2 * third - 1));
    url = patch(c.node(1), &url, 2 * third, &blob[2 * third..]).await;
    let digest = sha256(&blob);
    let r = c
        .node(0)
        .send("PUT", &with_digest(&url, &digest), &[], Vec::new())
        .await;
    r.assert_status(201);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    c.node(2).push_blob("team/app", config).await;
    let body = manifest(config, &[&blob]);
    let manifest_digest = put_manifest(c.node(1), "team/app", "v1", &body).await;
    for i in 0..3 {
        let pulled = c.node(i).get(&format!("/v2/team/app/blobs/{digest}")).await;
        pulled.assert_status(200);
        assert!(pulled.body == blob, "blob from node {i}");
        let m = get_manifest(c.node(i), "team/app", "v1").await;
        m.assert_status(200);
        assert_eq!(m.header("docker-content-digest"), manifest_digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_push_with_each_step_on_another_node_on_garage() {
    chunked_push_across_nodes(Kind::Garage, "/cluster-chunked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_push_with_each_step_on_another_node_on_moto() {
    chunked_push_across_nodes(Kind::Moto, "/cluster-chunked").await;
}

/// A PATCH streaming into node A when A is killed with SIGKILL: the client asks node B where
/// the session stands, resumes there, and finishes on node C. Nothing of the cut PATCH counts,
/// and nothing partial is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_resumes_on_another_node_after_kill_9() {
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-kill") else {
        return;
    };
    c.start_all(&["a", "b", "c"], "", "", "");
    let blob: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i * 7 % 253) as u8).collect();
    let first = 1024 * 1024;
    let r = c
        .node(0)
        .send("POST", "/v2/kill/app/blobs/uploads/", &[], Vec::new())
        .await;
    r.assert_status(202);
    let url = patch(c.node(0), &location(&r), 0, &blob[..first]).await;

    // The second chunk: half of it sent, then the sender stalls, and node A dies.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let body = reqwest::Body::wrap_stream(chunks);
    let target = c.node(0).abs(&url);
    let range = format!("{first}-{}", blob.len() - 1);
    let cut = tokio::spawn(async move {
        reqwest::Client::new()
            .patch(target)
            .header("content-type", "application/octet-stream")
            .header("content-range", range)
            .body(body)
            .send()
            .await
    });
    tx.send(Ok(blob[first..first + 512 * 1024].to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill(0);
    assert!(
        cut.await.unwrap().is_err(),
        "the cut PATCH cannot have succeeded"
    );
    drop(tx);

    let status = c.node(1).get(&url).await;
    status.assert_status(204);
    assert_eq!(
        status.header("range"),
        format!("0-{}", first - 1),
        "only the whole first chunk counts"
    );
    let url = patch(c.node(1), &url, first, &blob[first..]).await;
    let digest = sha256(&blob);
    let wrong = c.node(2).get(&format!("/v2/kill/app/blobs/{digest}")).await;
    wrong.assert_status(404);
    let r = c
        .node(2)
        .send("PUT", &with_digest(&url, &digest), &[], Vec::new())
        .await;
    r.assert_status(201);
    let pulled = c.node(1).get(&format!("/v2/kill/app/blobs/{digest}")).await;
    pulled.assert_status(200);
    assert!(pulled.body == blob);
}

/// What one node writes, the others serve within the documented bounds (docs/scale-out.md:
/// tag and digest resolution cached 1 s, the first `_catalog` page 1 s): a new tag, a moved
/// tag, a deleted manifest, a new repository in `_catalog`, a referrer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_node_are_served_by_every_node_within_bounds() {
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-visibility") else {
        return;
    };
    c.start_all(&["a", "b", "c"], "", "", "");
    let bound = Duration::from_secs(3);
    // Warm the other nodes' caches with a first version.
    let (_, v1) = c.node(0).push_image("vis/app", "latest", "one").await;
    for i in 1..3 {
        let n = c.node(i);
        within(bound, "first push seen", async || {
            get_manifest(n, "vis/app", "latest")
                .await
                .header("docker-content-digest")
                == v1
        })
        .await;
    }
    // Move the tag on node A.
    let (_, v2) = c.node(0).push_image("vis/app", "latest", "two").await;
    let mut slowest = Duration::ZERO;
    for i in 1..3 {
        let n = c.node(i);
        slowest = slowest.max(
            within(bound, "moved tag seen", async || {
                get_manifest(n, "vis/app", "latest")
                    .await
                    .header("docker-content-digest")
                    == v2
            })
            .await,
        );
    }
    eprintln!("moved tag seen by every node after {slowest:?}");
    // A new repository appears in every node's catalog.
    c.node(0).push_image("vis/other", "1", "three").await;
    for i in 1..3 {
        let n = c.node(i);
        within(bound, "catalog lists the new repository", async || {
            n.get("/v2/_catalog").await.text().contains("vis/other")
        })
        .await;
    }
    // A referrer pushed on B is listed by C.
    let subject = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": v2, "size": get_manifest(c.node(0), "vis/app", &v2).await.body.len()});
    let empty = b"{}";
    c.node(1).push_blob("vis/app", empty).await;
    let referrer = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2}],
        "subject": subject,
    })
    .to_string();
    let sbom = put_manifest(
        c.node(1),
        "vis/app",
        &sha256(referrer.as_bytes()),
        &referrer,
    )
    .await;
    let n = c.node(2);
    within(bound, "referrer listed", async || {
        n.get(&format!("/v2/vis/app/referrers/{v2}"))
            .await
            .text()
            .contains(&sbom)
    })
    .await;
    // Delete the old manifest on A: B answers 404 within the bound.
    c.node(0)
        .delete(&format!("/v2/vis/app/manifests/{v1}"))
        .await
        .assert_status(202);
    let n = c.node(1);
    within(bound, "deleted manifest gone", async || {
        get_manifest(n, "vis/app", &v1).await.status == 404
    })
    .await;
}

/// moto honours create-only writes: the jobs lease elects exactly one runner of three; when it
/// is killed (no release), another takes over once its term runs out; a clean stop hands over
/// at once. `berth cluster status` names the holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_lease_elects_one_runner_and_fails_over() {
    let Some(mut c) = Cluster::new(Kind::Moto, "/cluster-lease") else {
        return;
    };
    c.start_all(&["a", "b", "c"], "leaseduration: 3s", "", "");
    let runners = async |c: &Cluster| {
        let mut names = Vec::new();
        for i in c.running() {
            if runs_jobs(c.node(i)).await {
                names.push(i);
            }
        }
        names
    };
    let first = runners(&c).await;
    assert_eq!(first.len(), 1, "one runner of three: {first:?}");
    let status = text(&berth(&["cluster", "status", &c.config("a")], &[]).stdout);
    let name = ["a", "b", "c"][first[0]];
    assert!(
        status.contains(&format!("held by node {name} ")),
        "{status}"
    );
    assert!(
        status.contains("create-only writes honoured by the store: true"),
        "{status}"
    );

    let killed_at = Instant::now();
    c.kill(first[0]);
    let limit = Duration::from_secs(10);
    loop {
        let now = runners(&c).await;
        assert!(now.len() <= 1, "two runners at once: {now:?}");
        if now.len() == 1 {
            eprintln!(
                "node {} took over {:?} after kill -9",
                now[0],
                killed_at.elapsed()
            );
            break;
        }
        assert!(
            killed_at.elapsed() < limit,
            "no runner {limit:?} after the runner was killed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A clean stop (SIGTERM) releases the lease: the last node takes over within a renewal
    // period (a third of the lease), not a whole lease.
    let second = runners(&c).await[0];
    let stopped_at = Instant::now();
    let reg = c.nodes[second].take().unwrap();
    drop(reg);
    let last = c.running()[0];
    let n = c.node(last);
    let took = within(
        Duration::from_secs(3),
        "the last node runs the jobs",
        async || runs_jobs(n).await,
    )
    .await;
    eprintln!(
        "handed over {took:?} after a clean stop ({:?} after SIGTERM)",
        stopped_at.elapsed()
    );
}

/// Garage ignores create-only writes, so no lease: `cluster.jobsnode` names the runner. Without
/// it every node runs the jobs and says why at startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobsnode_names_the_runner_where_the_store_cannot_elect() {
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-jobsnode") else {
        return;
    };
    c.start_all(&["a", "b", "c"], "jobsnode: b", "", "");
    let mut runs = Vec::new();
    for i in 0..3 {
        runs.push(runs_jobs(c.node(i)).await);
    }
    assert_eq!(runs, [false, true, false]);
    let i = c.start("d", "", "", "");
    assert!(
        runs_jobs(c.node(i)).await,
        "without jobsnode a node on Garage runs the jobs"
    );
    let logs = c.node(i).server.logs(Duration::from_millis(200)).join("\n");
    assert!(logs.contains("set cluster.jobsnode"), "{logs}");
}

/// `berth cluster read-only on` switches every node within the poll interval; writes are
/// refused with registry:2's read-only answer (405 UNSUPPORTED), pulls go on; `off` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_read_only_switches_every_node() {
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-read-only") else {
        return;
    };
    c.start_all(&["a", "b", "c"], "pollinterval: 500ms", "", "");
    c.node(0).push_image("ro/app", "1", "before").await;
    let out = berth(
        &[
            "cluster",
            "read-only",
            "on",
            "--reason",
            "backup",
            &c.config("a"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for i in 0..3 {
        let n = c.node(i);
        within(Duration::from_secs(3), "node refuses writes", async || {
            n.send("POST", "/v2/ro/app/blobs/uploads/", &[], Vec::new())
                .await
                .status
                == 405
        })
        .await;
        n.send("POST", "/v2/ro/app/blobs/uploads/", &[], Vec::new())
            .await
            .assert_error(405, "UNSUPPORTED");
        get_manifest(n, "ro/app", "1").await.assert_status(200);
    }
    let status = text(&berth(&["cluster", "status", &c.config("b")], &[]).stdout);
    assert!(status.contains("read-only: on (reason: backup"), "{status}");
    let logs = c.node(2).server.logs(Duration::from_millis(100)).join("\n");
    assert!(logs.contains("cluster-wide read-only mode is on"), "{logs}");
    let out = berth(&["cluster", "read-only", "off", &c.config("c")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for i in 0..3 {
        let n = c.node(i);
        within(
            Duration::from_secs(3),
            "node accepts writes again",
            async || {
                n.send("POST", "/v2/ro/app/blobs/uploads/", &[], Vec::new())
                    .await
                    .status
                    == 202
            },
        )
        .await;
    }
}

/// The built-in token server on shared storage: a node without the provisioned key refuses to
/// start (it would otherwise sign with a key of its own); with the same key, a token issued by
/// node A is accepted by node C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_by_one_node_is_accepted_by_another() {
    let Some(mut c) = Cluster::new(Kind::Garage, "/cluster-token") else {
        return;
    };
    let key = c.dir.path().join("signing.pem");
    let htpasswd = c.dir.path().join("htpasswd");
    common::auth::add_user(&htpasswd, "alice", "wonderland");
    let auth =
        common::auth::builtin_token_auth("berth-cluster", &htpasswd, &key, "admins: [alice]");
    // No key yet: the node refuses to start and says how to make one.
    let path = c.dir.path().join("nokey.yml");
    std::fs::write(&path, c.yaml("nokey", "", "", &auth)).unwrap();
    let out = berth(&["serve", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("signingkey") && err.contains("openssl genpkey"),
        "{err}"
    );
    assert!(!key.exists(), "no key was created");

    common::auth::Key::generate().write(&key);
    let a = c.start("a", "", "", &auth);
    let cc = c.start("c", "", "", &auth);
    let token = common::auth::token(
        &c.node(a).url,
        Some(("alice", "wonderland")),
        &["repository:tok/app:pull,push"],
    )
    .await;
    let r = c
        .node(cc)
        .send(
            "POST",
            "/v2/tok/app/blobs/uploads/",
            &[("authorization", &format!("Bearer {token}"))],
            Vec::new(),
        )
        .await;
    r.assert_status(202);
    let r = c
        .node(cc)
        .send("POST", "/v2/tok/app/blobs/uploads/", &[], Vec::new())
        .await;
    r.assert_status(401);
}
