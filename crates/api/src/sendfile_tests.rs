//! The zero-copy path under the same hyper server stack as `berth serve` (hyper-util's auto
//! builder with upgrades, over a [`ZeroCopyStream`]), read back by a plain HTTP/1.1 client.

use std::convert::Infallible;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use http::{header, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{cached, file_body, FileSender, ZeroCopyStream, CHUNK, SENT_FROM_FILES};

/// Content that differs at every offset, so a range sent from the wrong place shows.
fn content(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn stored(data: &[u8]) -> (tempfile::TempDir, Arc<File>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data");
    let mut file = File::create(&path).expect("create");
    file.write_all(data).expect("write");
    file.sync_all().expect("sync");
    (dir, Arc::new(File::open(&path).expect("open")))
}

/// Serves `GET /file/OFFSET/LEN` from `file` with [`file_body`] and `GET /text` as ordinary
/// bytes, each with its `Content-Length`, as the blob endpoint answers.
async fn server(file: Arc<File>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (stream, sender) = ZeroCopyStream::new(tcp);
            let file = file.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(sender.clone());
                let (parts, _) = req.into_parts();
                let path: Vec<String> = parts.uri.path().split('/').map(str::to_owned).collect();
                let (body, len) = match path.as_slice() {
                    [_, f, offset, len] if f == "file" => {
                        let (offset, len) = (
                            offset.parse().expect("offset"),
                            len.parse().expect("length"),
                        );
                        let sender = FileSender::of(&parts).expect("an HTTP/1 request");
                        (file_body(sender, file.clone(), offset, len), len)
                    }
                    _ => (Body::from("ordinary bytes"), 14),
                };
                let mut response = Response::new(body);
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, len.into());
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            tokio::spawn(conn);
        }
    });
    addr
}

/// One GET on a kept-alive connection: the body, read by its `Content-Length`.
async fn get(conn: &mut BufReader<TcpStream>, path: &str) -> Vec<u8> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.get_mut()
        .write_all(request.as_bytes())
        .await
        .expect("send");
    let mut len = None;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.expect("head");
        assert!(!line.is_empty(), "connection closed before the head ended");
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = Some(v.trim().parse::<usize>().expect("length"));
        }
    }
    let mut body = vec![0; len.expect("a Content-Length")];
    conn.read_exact(&mut body).await.expect("body");
    body
}

/// Whole files, ranges across chunk boundaries and ordinary bodies between them arrive byte
/// for byte on one kept-alive connection, and the file bytes went out with `sendfile`.
#[tokio::test]
async fn file_ranges_and_ordinary_bodies_arrive_byte_for_byte() {
    let data = content(2 * CHUNK + 12_345);
    let (_dir, file) = stored(&data);
    let addr = server(file).await;
    let mut conn = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    let before = SENT_FROM_FILES.load(Ordering::Relaxed);

    let whole = get(&mut conn, &format!("/file/0/{}", data.len())).await;
    assert!(whole == data, "the whole file differs");
    assert_eq!(get(&mut conn, "/text").await, b"ordinary bytes");
    let (offset, len) = (CHUNK - 7, CHUNK + 100);
    let range = get(&mut conn, &format!("/file/{offset}/{len}")).await;
    assert!(range == data[offset..offset + len], "the range differs");
    assert_eq!(get(&mut conn, "/file/5/1").await, &data[5..6]);
    assert_eq!(get(&mut conn, "/text").await, b"ordinary bytes");

    let sent = SENT_FROM_FILES.load(Ordering::Relaxed) - before;
    assert!(
        sent >= (data.len() + len + 1) as u64,
        "only {sent} bytes went out with sendfile"
    );
}

/// A chunk whose pages are not in the page cache is read into it first (so the connection's
/// thread never waits for the disk), and comes out the same.
#[tokio::test]
async fn chunks_not_in_the_page_cache_are_loaded_first() {
    let data = content(CHUNK + 4096);
    let (_dir, file) = stored(&data);
    assert!(cached(&file, 0, data.len()));
    rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    assert!(
        !cached(&file, 0, data.len()),
        "the test's files must be on a filesystem that can drop cached pages (not tmpfs)"
    );
    let addr = server(file.clone()).await;
    let mut conn = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    let whole = get(&mut conn, &format!("/file/0/{}", data.len())).await;
    assert!(whole == data, "the file read past the page cache differs");
    assert!(cached(&file, 0, data.len()), "loaded into the page cache");
}

/// A placeholder that is not the next registered range (another connection's, or the right
/// one at the wrong offset) fails the write instead of sending anything.
#[tokio::test]
async fn a_placeholder_out_of_order_fails_the_write() {
    let (_dir, file) = stored(&content(1000));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (tcp, _) = listener.accept().await.expect("accept");
    let (mut stream, sender) = ZeroCopyStream::new(tcp);

    let foreign = FileSender::default()
        .register(&file, 0, 100)
        .expect("register");
    assert!(stream.write(&foreign).await.is_err(), "nothing registered");
    let own = sender.register(&file, 0, 100).expect("register");
    assert!(stream.write(&own[10..]).await.is_err(), "wrong offset");
    assert_eq!(stream.write(&own).await.expect("in order"), 100);
    drop((stream, sender));

    let mut received = Vec::new();
    let mut client = client;
    client.read_to_end(&mut received).await.expect("read");
    assert_eq!(
        received,
        content(1000)[..100],
        "only the registered range went out"
    );
}

/// A file shorter than the size the response announced (damaged storage) ends the connection
/// after what it has, instead of hanging or padding the body.
#[tokio::test]
async fn a_file_shorter_than_announced_ends_the_connection() {
    let data = content(CHUNK + 10);
    let (_dir, file) = stored(&data);
    let addr = server(file).await;
    let mut conn = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    let request = format!(
        "GET /file/0/{} HTTP/1.1\r\nHost: test\r\n\r\n",
        data.len() + 100
    );
    conn.get_mut()
        .write_all(request.as_bytes())
        .await
        .expect("send");
    let mut received = Vec::new();
    // Ok at the end of the stream, or a reset: either way it ends.
    let _read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut received),
    )
    .await
    .expect("the connection ends");
    let body_at = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    assert!(
        received[body_at..] == data[..],
        "what the file has, then the end"
    );
}
