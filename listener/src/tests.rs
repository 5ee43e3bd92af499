use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn echo_peer(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    peer.to_string()
}

async fn read_all(req: Request) -> axum::response::Response {
    match req.into_body().collect().await {
        Ok(b) => format!("{} bytes", b.to_bytes().len()).into_response(),
        Err(e) if is_body_timeout(&e) => StatusCode::REQUEST_TIMEOUT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(300)).await;
    "done"
}

fn router() -> Router {
    Router::new()
        .route("/peer", get(echo_peer))
        .route("/body", post(read_all))
        .route("/slow", get(slow))
}

async fn start(
    options: HttpOptions,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(listener.serve(router(), shutdown.clone()));
    (addr, shutdown, task)
}

/// Sends `raw` on a new connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one `200` response with a `content-length` off a keep-alive connection; its body.
async fn read_body(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content-length")
            .parse()
            .unwrap();
        if body.len() >= length {
            return body.to_owned();
        }
    }
}

/// Waits until the server closes `s` and returns how long that took.
async fn time_to_close(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server did not close the connection within 5 s"),
        }
    }
}

#[tokio::test]
async fn every_request_carries_its_peer_address() {
    let (addr, _stop, _task) = start(HttpOptions::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.ends_with(&me.to_string()), "{out}");
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_after_the_header_timeout() {
    let options = HttpOptions {
        header_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let (addr, _stop, _task) = start(options).await;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /peer HTTP/1.1\r\nhos")
        .await
        .unwrap();
    let took = time_to_close(&mut stalled).await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let options = HttpOptions {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let (addr, _stop, _task) = start(options).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let took = time_to_close(&mut idle).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let options = HttpOptions {
        body_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let (addr, _stop, _task) = start(options).await;
    let out = exchange(
        addr,
        "POST /body HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\nconnection: close\r\n\r\nab",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // A complete body is read as usual.
    let out = exchange(
        addr,
        "POST /body HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nab",
    )
    .await;
    assert!(out.ends_with("2 bytes"), "{out}");
}

#[tokio::test]
async fn past_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let options = HttpOptions {
        max_connections: 1,
        ..HttpOptions::default()
    };
    let (addr, _stop, _task) = start(options).await;
    a_second_connection_waits_until_the_first_closes(addr).await;
}

/// With a cap of one connection: a first connection served and kept open (keep-alive) holds
/// the cap, so a second one is not served until the first closes.
async fn a_second_connection_waits_until_the_first_closes(addr: SocketAddr) {
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(first.read(&mut buf).await.unwrap() > 0);
    let second = tokio::spawn(exchange(
        addr,
        "GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished());
    drop(first);
    let out = tokio::time::timeout(Duration::from_secs(3), second)
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let (addr, stop, task) = start(HttpOptions::default()).await;
    let request = tokio::spawn(exchange(
        addr,
        "GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let out = request.await.unwrap();
    assert!(out.ends_with("done"), "{out}");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Serves each part of `listener` split in `parts` on a thread of its own with its own
/// single-threaded runtime; returns the threads, which end once `shutdown` has drained them.
fn serve_split(
    listener: Listener,
    parts: usize,
    router: Router,
    shutdown: &CancellationToken,
) -> Vec<std::thread::JoinHandle<()>> {
    listener
        .split(parts)
        .unwrap()
        .into_iter()
        .map(|part| serve_part(part, router.clone(), shutdown))
        .collect()
}

/// Serves one part of a split listener on a thread of its own, as the proxy's workers do.
fn serve_part(
    part: Detached,
    router: Router,
    shutdown: &CancellationToken,
) -> std::thread::JoinHandle<()> {
    let shutdown = shutdown.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            part.attach().unwrap().serve(router, shutdown).await;
        });
    })
}

async fn thread_of_request() -> String {
    format!("{:?}", std::thread::current().id())
}

/// A bound listener, its address, its shutdown token, and a router whose `/thread` answers
/// with the id of the thread that served the request.
async fn thread_reporting() -> (Listener, SocketAddr, CancellationToken, Router) {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), HttpOptions::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = router().route("/thread", get(thread_of_request));
    (listener, addr, CancellationToken::new(), router)
}

#[tokio::test]
async fn a_split_listener_serves_every_connection_from_each_parts_own_thread_and_drains_them_all() {
    let (listener, addr, shutdown, router) = thread_reporting().await;
    let threads = serve_split(listener, 2, router, &shutdown);
    let requests: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(exchange(
                addr,
                "GET /thread HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            ))
        })
        .collect();
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.unwrap());
    }
    let mut served_by = std::collections::BTreeSet::new();
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        served_by.insert(a.rsplit("\r\n").next().unwrap().to_owned());
    }
    let test_thread = format!("{:?}", std::thread::current().id());
    assert!(!served_by.contains(&test_thread), "{served_by:?}");
    assert!(served_by.len() <= 2, "{served_by:?}");

    // An in-flight request on either part finishes; then every part has stopped accepting.
    let slow = tokio::spawn(exchange(
        addr,
        "GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    let out = slow.await.unwrap();
    assert!(out.ends_with("done"), "{out}");
    tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| t.join().unwrap()))
        .await
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn connections_one_part_accepts_in_a_burst_are_shared_with_the_other_part() {
    let (listener, addr, shutdown, router) = thread_reporting().await;
    let mut parts = listener.split(2).unwrap();
    let second = parts.pop().unwrap();
    // Only the first part is accepting: it takes every connection of the burst.
    let first = serve_part(parts.pop().unwrap(), router.clone(), &shutdown);
    let mut answers = Vec::new();
    // Keep-alive connections, each open until the end: a pool's.
    for _ in 0..16 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /thread HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        answers.push(tokio::spawn(async move {
            let body = read_body(&mut s).await;
            (body, s)
        }));
    }
    // Once all sixteen are placed, the first part has accepted them all.
    let placed = async {
        while second.part.placed() < 16 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), placed)
        .await
        .expect("the first part accepts the burst");
    // The second part starts, and serves what it was handed.
    let second = serve_part(second, router, &shutdown);
    let mut served_by = std::collections::BTreeMap::<String, usize>::new();
    let mut open = Vec::new();
    for answer in answers {
        let (thread, s) = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .unwrap()
            .unwrap();
        *served_by.entry(thread).or_default() += 1;
        open.push(s);
    }
    let counts: Vec<usize> = served_by.values().copied().collect();
    assert_eq!(counts.len(), 2, "both parts serve: {served_by:?}");
    assert!(counts[0].abs_diff(counts[1]) <= 2, "{served_by:?}");
    drop(open);
    shutdown.cancel();
    tokio::task::spawn_blocking(move || {
        first.join().unwrap();
        second.join().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_parts_of_a_split_listener_share_one_connection_cap() {
    let options = HttpOptions {
        max_connections: 1,
        ..HttpOptions::default()
    };
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let _threads = serve_split(listener, 2, router(), &shutdown);
    // Whichever part takes the first connection, the other part's is not served meanwhile.
    a_second_connection_waits_until_the_first_closes(addr).await;
    shutdown.cancel();
}
