//! Connection limits: a slow request head and an idle connection are cut after their
//! timeouts; connections beyond `server.max_connections` wait until one closes; a request
//! in flight at shutdown is still answered.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, INGEST_KEY, OpenedStore, TestApp};
use crate::on_both_stores;
use crate::refusals::raw_exchange;

/// A minute: long enough for any machine, so only a hang trips it (not a speed check).
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap()
}

/// Sends `GET path` on a kept-alive connection and reads its one response (head and body).
async fn get_on(conn: &mut TcpStream, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
    read_response(conn).await
}

async fn read_response(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole response: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return text;
                }
            }
        }
    })
    .await
    .expect("a response")
}

async fn a_client_that_sends_half_a_request_line_is_disconnected_after_the_header_read_timeout(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.header_read_timeout_secs = 1).await;
    let reply = raw_exchange(&app, b"GET /healthz HT").await;
    assert_eq!(reply, "", "closed without an answer");
    // Trickling the head a byte every 5 ms does not reset the clock either: the server closes,
    // and writing fails soon after.
    let mut conn = connect(&app).await;
    let mut closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ".iter().cycle().take(4000) {
        if conn.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(closed, "a head trickled for 20 s was not cut");
    // The service still answers complete requests.
    assert!(get_on(&mut connect(&app).await, "/healthz").await.starts_with("HTTP/1.1 200"));
    app.stop().await;
}

async fn an_idle_connection_is_closed_after_the_idle_timeout(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.idle_timeout_secs = 1).await;
    let mut conn = connect(&app).await;
    assert!(get_on(&mut conn, "/healthz").await.starts_with("HTTP/1.1 200"));
    // Kept alive after the answer, then closed once idle.
    let mut rest = Vec::new();
    tokio::time::timeout(HANG_GUARD, conn.read_to_end(&mut rest)).await.expect("closed when idle").unwrap();
    assert!(rest.is_empty());
    // A connection that never sends anything is closed too.
    let mut silent = connect(&app).await;
    tokio::time::timeout(HANG_GUARD, silent.read_to_end(&mut rest)).await.expect("closed when silent").unwrap();
    assert!(rest.is_empty());
    app.stop().await;
}

async fn connections_beyond_the_cap_wait_in_the_backlog_until_one_closes(backend: Backend) {
    // Started without the harness's readiness wait, whose HTTP client would keep a pooled
    // connection (a slot) open: this test holds every connection itself.
    let app = OpenedStore::open(backend, |s| s.server.max_connections = 2).await.start().await;
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    assert!(get_on(&mut first, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get_on(&mut second, "/healthz").await.starts_with("HTTP/1.1 200"));

    // The third connection is queued by the OS, not refused, and not served yet.
    let mut third = connect(&app).await;
    third.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    // A round trip on a served connection: had the third been accepted, its answer (sent
    // first) would be here by now. A correct cap never fails this check.
    assert!(get_on(&mut first, "/healthz").await.starts_with("HTTP/1.1 200"));
    let mut peek = [0u8; 1];
    assert!(
        matches!(third.try_read(&mut peek), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the third connection was served while two were open"
    );

    drop(first);
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"), "served once a slot freed");
    drop(second);
    app.stop().await;
}

async fn a_request_in_flight_when_shutdown_begins_is_answered_before_the_server_stops(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (store, state, addr) = (app.store.clone(), app.state.clone(), app.base.trim_start_matches("http://").to_string());
    let body = serde_json::json!({"user_id": "late", "item_id": "i", "kind": "view"}).to_string();
    let mut conn = connect(&app).await;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {INGEST_KEY}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes once the handler reads the body: the request is in flight.
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(HANG_GUARD, conn.read_exact(&mut byte)).await.expect("100 Continue").unwrap();
        got.push(byte[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&got));

    let stopping = tokio::spawn(app.stop());
    // Shutdown has begun once the listener is gone (new connections are refused).
    tokio::time::timeout(HANG_GUARD, async {
        while !state.is_draining() || TcpStream::connect(&addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the listener closes");
    conn.write_all(body.as_bytes()).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 202"), "the in-flight request is answered");
    let _stopped = tokio::time::timeout(HANG_GUARD, stopping).await.expect("the server stops").unwrap();
    assert_eq!(store.count_events().await.unwrap(), 1, "and its event committed");
}

on_both_stores!(
    a_request_in_flight_when_shutdown_begins_is_answered_before_the_server_stops,
    a_client_that_sends_half_a_request_line_is_disconnected_after_the_header_read_timeout,
    an_idle_connection_is_closed_after_the_idle_timeout,
    connections_beyond_the_cap_wait_in_the_backlog_until_one_closes,
);
