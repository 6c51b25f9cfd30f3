//! The S3 writer's memory stays flat: 32 concurrent 100 MiB writes to Garage must not grow this
//! process's peak RSS by more than 256 MiB (one part filling per writer, plus the driver's
//! shared in-flight budget), however large the objects are. Its own test binary, so no other
//! test shares the process's peak. Skips without Garage, except under `CI=true`.

mod s3_kit;

use berth_storage::StorageDriver;
use bytes::Bytes;
use futures_util::future::try_join_all;
use s3_kit::{Kind, TestServer};

const WRITERS: usize = 32;
const OBJECT: usize = 100 << 20;
const CHUNK: usize = 256 << 10;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_writes_keep_memory_flat() {
    let Some(server) = TestServer::start(Kind::Garage) else {
        return;
    };
    let d = server.driver("memory");
    let before = status_kib("VmRSS:");
    let writes = (0..WRITERS).map(|i| {
        let d = &d;
        async move {
            let mut w = d.writer(&format!("/w/{i}")).await?;
            for n in 0..OBJECT / CHUNK {
                // A fresh buffer per chunk, as request bodies arrive: the writer holds what
                // it has not sent yet, nothing is shared between writers.
                let chunk = vec![(i + n) as u8; CHUNK];
                w.write(Bytes::from(chunk)).await?;
            }
            w.commit().await
        }
    });
    try_join_all(writes).await.expect("writes");
    let growth_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    eprintln!(
        "peak RSS grew by {growth_mib} MiB for {WRITERS} concurrent {} MiB writes",
        OBJECT >> 20
    );
    for i in [0, WRITERS - 1] {
        let info = d.stat(&format!("/w/{i}")).await.expect("stat");
        assert_eq!(info.size, OBJECT as u64);
    }
    assert!(growth_mib <= 256, "peak RSS grew by {growth_mib} MiB");
}
