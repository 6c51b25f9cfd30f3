//! A fault-injecting HTTP proxy between Berth and an S3 store, run by the test on 127.0.0.1
//! (hyper on both sides, so requests go upstream byte for byte: the `Host` header and
//! `Content-Length` the SigV4 signature covers are kept). Switched at runtime between
//! forwarding, S3 error answers, delayed answers, connection resets in the middle of a
//! request body, and a closed listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub mod bench;

/// Marks every error body the proxy writes, so a test can tell if one reached a client.
pub const MARK: &str = "berth-fault-proxy";

/// What the proxy does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward.
    Pass,
    /// Answer 503 `SlowDown` (S3's throttling answer) without forwarding.
    SlowDown,
    /// Answer 500 `InternalError` without forwarding.
    InternalError,
    /// Forward, and hold each response for this long before answering.
    Delay(Duration),
    /// Forward, but reset the connection (RST) once this many bytes of a request body went
    /// upstream; requests with smaller bodies pass.
    ResetAfter(u64),
    /// Forward, but break each response body after this many bytes.
    CutResponse(u64),
    /// Listener closed and open connections dropped: connections are refused.
    Down,
    /// Answer a batch delete (`POST ?delete`) with 200 and a `<DeleteResult>` whose every
    /// entry is an `<Error>` (code `ServiceUnavailable`), deleting nothing: what Garage
    /// answers when its metadata database is locked under load.
    DeleteRefused,
}

struct State {
    upstream: SocketAddr,
    /// The fault, and for how many more requests it applies (`None`: until changed).
    fault: Mutex<(Fault, Option<usize>)>,
    /// Faults for the next requests whose "METHOD path?query" contains a text, and for how
    /// many more such requests each applies.
    targeted: Mutex<Vec<(String, Fault, usize)>>,
    /// "METHOD path?query" of every request received.
    seen: Mutex<Vec<String>>,
    /// Requests answered with a fault (errors, delays, resets).
    faulted: AtomicUsize,
    /// Bumped to drop every open connection.
    kill: watch::Sender<u64>,
}

impl State {
    /// The fault for one request, counting it down.
    fn take(&self, method: &http::Method, uri: &http::Uri) -> Fault {
        let line = format!("{method} {uri}");
        self.seen.lock().expect("lock").push(line.clone());
        let mut targeted = self.targeted.lock().expect("lock");
        if let Some(i) = targeted.iter().position(|(text, _, _)| line.contains(text)) {
            let fault = targeted[i].1;
            targeted[i].2 -= 1;
            if targeted[i].2 == 0 {
                targeted.remove(i);
            }
            return fault;
        }
        drop(targeted);
        let mut fault = self.fault.lock().expect("lock");
        let current = fault.0;
        if let Some(left) = fault.1.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                *fault = (Fault::Pass, None);
            }
        }
        current
    }
}

/// The running proxy; stopped when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl FaultProxy {
    /// A proxy in pass-through mode to `endpoint` (`http://127.0.0.1:PORT`).
    pub async fn start(endpoint: &str) -> FaultProxy {
        let upstream: SocketAddr = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("endpoint is http://IP:PORT");
        let (kill, _) = watch::channel(0);
        let state = Arc::new(State {
            upstream,
            fault: Mutex::new((Fault::Pass, None)),
            targeted: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            faulted: AtomicUsize::new(0),
            kill,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        FaultProxy {
            addr,
            state,
            accept: Mutex::new(Some(accept)),
        }
    }

    /// The URL Berth's `regionendpoint` is set to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` until the next change.
    pub fn set(&self, fault: Fault) {
        self.apply(fault, None);
    }

    /// Applies `fault` to the next `n` requests whose "METHOD path?query" contains `text`
    /// (beside any other such targeted fault), before the fault set for all requests.
    pub fn set_on(&self, text: &str, fault: Fault, n: usize) {
        assert_ne!(fault, Fault::Down, "Down is not for single requests");
        assert!(n > 0);
        self.state
            .targeted
            .lock()
            .expect("lock")
            .push((text.to_owned(), fault, n));
    }

    /// Applies `fault` to the next `n` requests, then passes through.
    pub fn set_for(&self, fault: Fault, n: usize) {
        assert_ne!(fault, Fault::Down, "Down is not counted in requests");
        self.apply(fault, Some(n));
    }

    fn apply(&self, fault: Fault, count: Option<usize>) {
        *self.state.fault.lock().expect("lock") = (fault, count);
        let mut accept = self.accept.lock().expect("lock");
        if fault == Fault::Down {
            if let Some(task) = accept.take() {
                // Dropping the task closes the listener.
                task.abort();
            }
            self.state.kill.send_modify(|g| *g += 1);
        } else if accept.is_none() {
            let listener = rebind(self.addr);
            *accept = Some(tokio::spawn(accept_loop(listener, self.state.clone())));
        }
    }

    /// "METHOD path?query" of every request received so far.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// How many requests got a fault so far.
    pub fn faulted(&self) -> usize {
        self.state.faulted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().expect("lock").take() {
            task.abort();
        }
        self.state.kill.send_modify(|g| *g += 1);
    }
}

/// Listens on `addr` again after [`Fault::Down`] (`SO_REUSEADDR`: the dropped connections
/// may still be in TIME_WAIT).
fn rebind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(addr).expect("rebind the proxy's port");
    socket.listen(128).expect("listen")
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        if let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, state.clone()));
        }
    }
}

/// Serves one connection until it ends, a reset is asked for, or all connections are killed;
/// the last two close it with an RST.
async fn serve(tcp: TcpStream, state: Arc<State>) {
    let _ = tcp.set_nodelay(true);
    // A second handle on the socket, to set SO_LINGER 0 after hyper let go of its own.
    let Ok(std) = tcp.into_std() else { return };
    let Ok(twin) = std.try_clone() else { return };
    let Ok(tcp) = TcpStream::from_std(std) else {
        return;
    };
    let reset = Arc::new(Notify::new());
    let mut kill = state.kill.subscribe();
    let service = {
        let reset = reset.clone();
        hyper::service::service_fn(move |req| handle(state.clone(), reset.clone(), req))
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::select! {
        _ = conn => return,
        () = reset.notified() => {}
        _ = kill.changed() => {}
    }
    let _ = socket2::SockRef::from(&twin).set_linger(Some(Duration::ZERO));
    drop(twin);
}

async fn handle(
    state: Arc<State>,
    reset: Arc<Notify>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let fault = state.take(req.method(), req.uri());
    match fault {
        Fault::Pass | Fault::ResetAfter(_) | Fault::CutResponse(_) => {}
        Fault::Delay(_)
        | Fault::SlowDown
        | Fault::InternalError
        | Fault::Down
        | Fault::DeleteRefused => {
            state.faulted.fetch_add(1, Ordering::Relaxed);
        }
    }
    let path = req.uri().path().to_owned();
    match fault {
        Fault::SlowDown => {
            return Ok(s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
                &path,
            ))
        }
        Fault::InternalError => {
            return Ok(s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
                &path,
            ))
        }
        Fault::Down => {
            // A request that raced the switch: its connection goes with the rest.
            reset.notify_one();
            return Ok(s3_error(StatusCode::BAD_GATEWAY, "Down", "down", &path));
        }
        Fault::DeleteRefused => return Ok(delete_refused(req).await),
        Fault::Pass | Fault::Delay(_) | Fault::ResetAfter(_) | Fault::CutResponse(_) => {}
    }
    let limit = match fault {
        Fault::ResetAfter(k) => Some(k),
        _ => None,
    };
    let (parts, body) = req.into_parts();
    let body = Body::from_stream(cut(
        Body::new(body).into_data_stream(),
        limit,
        reset,
        state.clone(),
    ));
    let forwarded = Request::from_parts(parts, body);
    let response = match send(state.upstream, forwarded).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(s3_error(
                StatusCode::BAD_GATEWAY,
                "ProxyError",
                &e.to_string(),
                &path,
            ))
        }
    };
    match fault {
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::CutResponse(limit) => {
            let (parts, body) = response.into_parts();
            let body = Body::from_stream(cut(
                Body::new(body).into_data_stream(),
                Some(limit),
                Arc::new(Notify::new()),
                state,
            ));
            return Ok(Response::from_parts(parts, body));
        }
        _ => {}
    }
    Ok(response.map(Body::new))
}

/// One request upstream over a fresh connection.
async fn send(
    upstream: SocketAddr,
    req: Request<Body>,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// The request body forwarded up to `limit` bytes; past that the connection to Berth is
/// reset and the upstream request fails, so the store never sees a complete body.
fn cut(
    body: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
    limit: Option<u64>,
    reset: Arc<Notify>,
    state: Arc<State>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut sent = 0u64;
    let mut done = false;
    body.map(|chunk| chunk.map_err(std::io::Error::other))
        .flat_map(move |chunk| {
            let mut out: Vec<Result<Bytes, std::io::Error>> = Vec::new();
            match (chunk, limit) {
                _ if done => {}
                (Ok(mut bytes), Some(limit)) => {
                    let room = limit.saturating_sub(sent);
                    if (bytes.len() as u64) <= room {
                        sent += bytes.len() as u64;
                        out.push(Ok(bytes));
                    } else {
                        out.push(Ok(bytes.split_to(room as usize)));
                        state.faulted.fetch_add(1, Ordering::Relaxed);
                        reset.notify_one();
                        done = true;
                        out.push(Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "injected reset",
                        )));
                    }
                }
                (chunk, _) => out.push(chunk),
            }
            futures_util::stream::iter(out)
        })
}

/// An S3 error answer (the XML body S3 sends), marked with [`MARK`].
/// A 200 answer to a batch delete that refuses every key it names.
async fn delete_refused(req: Request<Incoming>) -> Response<Body> {
    let body = axum::body::to_bytes(Body::new(req.into_body()), 1 << 20)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let errors: String = text
        .split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split("</Key>").next())
        .map(|key| {
            format!(
                "<Error><Key>{key}</Key><Code>ServiceUnavailable</Code>\
                 <Message>database is locked ({MARK})</Message></Error>"
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{errors}</DeleteResult>"
    );
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

fn s3_error(status: StatusCode, code: &str, message: &str, resource: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message} ({MARK})</Message><Resource>{resource}</Resource>\
         <RequestId>{MARK}</RequestId></Error>"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}
