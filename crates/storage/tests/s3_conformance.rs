//! The S3 driver on real S3 servers (Garage and moto, started on 127.0.0.1 by
//! `scripts/s3-test-servers.sh`): the generic conformance suite, then what only S3 has (part
//! boundaries, presigned URLs, `rootdirectory`, multipart cancel, registry:2's key layout,
//! the startup checks). Without the servers the tests skip, except under `CI=true`.

mod s3_kit;

use std::time::Duration;

use berth_oci::{Digest, RepoName, Tag};
use berth_storage::s3::{S3Driver, MIN_PART_SIZE};
use berth_storage::{conformance, paths, StorageDriver};
use bytes::Bytes;
use futures_util::TryStreamExt;
use s3_kit::{Kind, TestServer};

const P: usize = MIN_PART_SIZE as usize;

async fn read(d: &dyn StorageDriver, path: &str, offset: u64, len: Option<u64>) -> Vec<u8> {
    let stream = d.reader(path, offset, len).await.expect("reader");
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("read");
    chunks.concat()
}

/// Deterministic content that differs at every offset of a part.
fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// Writes `data` through a writer in odd-sized chunks, so writes straddle part boundaries.
async fn write_streamed(d: &dyn StorageDriver, path: &str, data: &[u8]) {
    let mut w = d.writer(path).await.expect("writer");
    for chunk in data.chunks((1 << 20) + 7) {
        w.write(Bytes::copy_from_slice(chunk)).await.expect("write");
    }
    assert_eq!(w.size(), data.len() as u64);
    w.commit().await.expect("commit");
}

async fn conformance_on(kind: Kind) {
    let Some(server) = TestServer::start(kind) else {
        return;
    };
    let driver = server.driver("conformance");
    // As at startup: the probe decides whether create-only writes are atomic here (moto: yes,
    // so the suite checks that one of many racing creators wins; Garage: no).
    let honoured = driver.probe_conditional_writes().await.expect("probe");
    assert_eq!(driver.create_is_atomic(), honoured);
    conformance::run_all(&driver).await;
    conformance::many_keys(&server.driver("/many/"), 2_100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_conforms() {
    conformance_on(Kind::Garage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_conforms() {
    conformance_on(Kind::Moto).await;
}

async fn s3_specifics_on(kind: Kind) {
    let Some(server) = TestServer::start(kind) else {
        return;
    };
    part_boundaries(&server.driver("parts")).await;
    reads_at_and_past_the_end(&server.driver("ends")).await;
    server_side_copy_of_a_multipart_object(&server.driver("copy")).await;
    cancel_aborts_the_multipart_upload(&server).await;
    presigned_urls(&server).await;
    root_directory_is_respected(&server).await;
    registry2_key_layout(&server).await;
    startup_checks(&server).await;
    conditional_write_probe(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_s3_specifics() {
    s3_specifics_on(Kind::Garage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_s3_specifics() {
    s3_specifics_on(Kind::Moto).await;
}

/// Objects around the part size: single PUTs up to one part, multipart above, each read back
/// whole and across the part boundary.
async fn part_boundaries(d: &S3Driver) {
    for (i, size) in [0, 1, P - 1, P, P + 1, 3 * P + 1].into_iter().enumerate() {
        let path = format!("/size/{size}");
        let data = content(size, i as u8);
        write_streamed(d, &path, &data).await;
        assert_eq!(
            d.stat(&path).await.expect("stat").size,
            size as u64,
            "{path}"
        );
        assert!(
            read(d, &path, 0, None).await == data,
            "{path} read back differs"
        );
        if size > P {
            let around = read(d, &path, P as u64 - 3, Some(6)).await;
            let end = (P + 3).min(size);
            assert_eq!(around, data[P - 3..end], "{path} across the part boundary");
        }
    }
    // An empty object by put_content as well as by writer.
    d.put_content("/size/empty-put", Bytes::new())
        .await
        .expect("put");
    assert_eq!(
        d.get_content("/size/empty-put").await.expect("get").len(),
        0
    );
}

async fn reads_at_and_past_the_end(d: &S3Driver) {
    d.put_content("/f", Bytes::from_static(b"0123456789"))
        .await
        .expect("put");
    assert!(read(d, "/f", 10, None).await.is_empty(), "at the end");
    assert!(read(d, "/f", 12, Some(4)).await.is_empty(), "past the end");
    assert!(read(d, "/f", 3, Some(0)).await.is_empty(), "zero length");
    d.put_content("/empty", Bytes::new()).await.expect("put");
    assert!(
        read(d, "/empty", 0, Some(10)).await.is_empty(),
        "ranged empty"
    );
    assert!(d
        .reader("/missing", 5, Some(1))
        .await
        .err()
        .expect("missing")
        .is_not_found());
}

async fn server_side_copy_of_a_multipart_object(d: &S3Driver) {
    let data = content(2 * P + 5, 9);
    write_streamed(d, "/src", &data).await;
    d.copy("/src", "/dst").await.expect("copy");
    assert!(read(d, "/dst", 0, None).await == data, "copy differs");
    d.move_file("/dst", "/moved").await.expect("move");
    assert!(d.stat("/dst").await.expect_err("moved").is_not_found());
    assert_eq!(
        d.stat("/moved").await.expect("stat").size,
        data.len() as u64
    );
}

/// A cancelled (or dropped) multipart writer leaves no object, also where one existed before.
async fn cancel_aborts_the_multipart_upload(server: &TestServer) {
    let d = server.driver("cancel");
    let mut w = d.writer("/big").await.expect("writer");
    w.write(Bytes::from(content(2 * P + 1, 1)))
        .await
        .expect("write");
    w.cancel().await.expect("cancel");
    assert!(d.stat("/big").await.expect_err("nothing").is_not_found());
    d.put_content("/kept", Bytes::from_static(b"old"))
        .await
        .expect("put");
    let mut w = d.writer("/kept").await.expect("writer");
    w.write(Bytes::from(content(P + 1, 2)))
        .await
        .expect("write");
    drop(w);
    assert_eq!(d.get_content("/kept").await.expect("kept"), "old");
    assert!(
        d.walk("/")
            .try_collect::<Vec<_>>()
            .await
            .expect("walk")
            .len()
            == 1
    );
}

async fn presigned_urls(server: &TestServer) {
    let d = server.driver("presign");
    d.put_content("/blob", Bytes::from_static(b"presigned content"))
        .await
        .expect("put");
    let client = reqwest::Client::new();
    let url = d
        .redirect_url("/blob")
        .await
        .expect("sign")
        .expect("on by default");
    let answer = client.get(&url).send().await.expect("GET");
    assert_eq!(answer.status(), 200, "{url}");
    assert_eq!(answer.bytes().await.expect("body"), "presigned content");

    let short = d
        .presign("/blob", Duration::from_secs(1))
        .await
        .expect("sign");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let status = client.get(&short).send().await.expect("GET").status();
    if server.kind == Kind::Moto && status == 200 {
        // moto does not check signatures (nor their expiry) unless configured to.
        eprintln!("moto served an expired presigned URL (it checks no signatures)");
    } else {
        // AWS answers 403 AccessDenied, Garage 400.
        assert!(
            matches!(status.as_u16(), 400 | 403),
            "an expired URL is refused: {status}"
        );
    }

    let mut options = server.options("presign");
    options.redirect = false;
    let no_redirect = S3Driver::new(&options).expect("driver");
    assert_eq!(no_redirect.redirect_url("/blob").await.expect("none"), None);
}

/// Keys land under `rootdirectory` and nowhere else, with registry:2's trimming of slashes.
async fn root_directory_is_respected(server: &TestServer) {
    let rooted = server.driver("/tenant/a/");
    rooted
        .put_content("/docker/registry/v2/x", Bytes::from_static(b"x"))
        .await
        .expect("put");
    let mut w = rooted
        .writer("/docker/registry/v2/big")
        .await
        .expect("writer");
    w.write(Bytes::from(content(P + 1, 3)))
        .await
        .expect("write");
    w.commit().await.expect("commit");
    assert_eq!(
        rooted.key_of("/docker/registry/v2/x").expect("key"),
        "tenant/a/docker/registry/v2/x"
    );
    let bucket = server.driver("");
    let mut keys: Vec<String> = bucket
        .walk("/tenant")
        .map_ok(|(p, _)| p)
        .try_collect()
        .await
        .expect("walk");
    keys.sort();
    assert_eq!(
        keys,
        [
            "/tenant/a/docker/registry/v2/big",
            "/tenant/a/docker/registry/v2/x"
        ]
    );
    let everywhere: Vec<String> = bucket
        .walk("/")
        .map_ok(|(p, _)| p)
        .try_collect()
        .await
        .expect("walk");
    assert_eq!(
        everywhere
            .iter()
            .filter(|p| p.ends_with("/docker/registry/v2/x"))
            .count(),
        1,
        "{everywhere:?}"
    );
    // The rooted driver sees its own tree only.
    assert_eq!(rooted.list("/").await.expect("list"), ["docker"]);
    rooted.delete("/").await.expect("delete all");
    assert!(bucket
        .walk("/tenant")
        .try_collect::<Vec<_>>()
        .await
        .expect("walk")
        .is_empty());
}

/// The paths of `paths.rs` are the object keys registry:2's s3 driver uses.
async fn registry2_key_layout(server: &TestServer) {
    let d = server.driver("");
    let digest: Digest = format!("sha256:{}", "ab".repeat(32))
        .parse()
        .expect("digest");
    let repo: RepoName = "library/alpine".parse().expect("name");
    let tag: Tag = "3.20".parse().expect("tag");
    let link = Bytes::from(digest.to_string());
    d.put_content(&paths::blob_data(&digest), Bytes::from_static(b"layer"))
        .await
        .expect("blob");
    d.put_content(&paths::layer_link(&repo, &digest), link.clone())
        .await
        .expect("layer link");
    d.put_content(&paths::tag_current_link(&repo, &tag), link)
        .await
        .expect("tag link");
    let hex = "ab".repeat(32);
    let mut keys: Vec<String> = d
        .walk("/docker")
        .map_ok(|(p, _)| d.key_of(&p).expect("key"))
        .try_collect()
        .await
        .expect("walk");
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("docker/registry/v2/blobs/sha256/ab/{hex}/data"),
            format!("docker/registry/v2/repositories/library/alpine/_layers/sha256/{hex}/link"),
            "docker/registry/v2/repositories/library/alpine/_manifests/tags/3.20/current/link"
                .to_owned(),
        ]
    );
    let mut names = d.list(paths::ROOT).await.expect("list");
    names.sort();
    assert_eq!(names, ["blobs", "repositories"]);
    let dir = d.stat(&paths::repo_dir(&repo)).await.expect("stat dir");
    assert!(dir.is_dir && dir.size == 0);
}

async fn startup_checks(server: &TestServer) {
    server
        .driver("")
        .check_bucket()
        .await
        .expect("bucket answers");
    server
        .driver("/no/such/prefix")
        .check_bucket()
        .await
        .expect("empty prefix");

    let mut missing = server.options("");
    missing.bucket = "no-such-bucket".into();
    let e = S3Driver::new(&missing)
        .expect("driver")
        .check_bucket()
        .await
        .expect_err("missing");
    assert_eq!(e.key, "bucket", "{e}");

    let mut unreachable = server.options("");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    unreachable.endpoint = Some(format!("http://127.0.0.1:{port}"));
    unreachable.max_retries = 0;
    let e = S3Driver::new(&unreachable)
        .expect("driver")
        .check_bucket()
        .await
        .expect_err("down");
    assert_eq!(e.key, "regionendpoint", "{e}");

    if server.kind == Kind::Garage {
        // moto accepts any credentials.
        let mut wrong = server.options("");
        wrong.secret_key = Some("0".repeat(64));
        let e = S3Driver::new(&wrong)
            .expect("driver")
            .check_bucket()
            .await
            .expect_err("refused");
        assert_eq!(e.key, "accesskey", "{e}");
    }
}

async fn conditional_write_probe(server: &TestServer) {
    let d = server.driver("probe-root");
    assert_eq!(d.conditional_writes(), None);
    let honoured = d.probe_conditional_writes().await.expect("probe");
    assert_eq!(d.conditional_writes(), Some(honoured));
    eprintln!("{:?} honours conditional writes: {honoured}", server.kind);
    if server.kind == Kind::Moto {
        assert!(honoured, "moto honours If-None-Match");
    }
    let left: Vec<_> = d.walk("/").try_collect().await.expect("walk");
    assert!(left.is_empty(), "the probe object is deleted: {left:?}");
}
