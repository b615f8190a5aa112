//! The API cannot be exhausted before authentication: bodies are read only after the head is authenticated, and
//! under a budget; idle connections and connections past the caps are closed.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{PeakRss, TestApp, rss};

const TEN_MB: usize = 10 * 1024 * 1024;

/// A TC3 request head for `secret_id` with a signature of the right shape (not the right value).
fn head(api: std::net::SocketAddr, secret_id: &str, length: usize) -> String {
    let now = fnlb::clock::now_ms() / 1000;
    let date = fnlb::clock::utc_date(now);
    format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\
         X-TC-Action: ListFunctions\r\nX-TC-Version: 2018-04-16\r\nX-TC-Timestamp: {now}\r\n\
         Authorization: TC3-HMAC-SHA256 Credential={secret_id}/{date}/scf/tc3_request, \
         SignedHeaders=content-type;host, Signature={}\r\n\r\n",
        "0".repeat(64)
    )
}

/// Reads what the server answers until it has the whole head and `want` in it, or the deadline.
async fn answer_contains(stream: &mut TcpStream, want: &str, deadline: Duration) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + deadline;
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains(want) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_only_after_the_head_is_authenticated_and_within_a_budget() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(&temp.path().join("data"), &["--api-max-body-in-flight", &TEN_MB.to_string()]);
    let before = rss(app.pid());

    // An unknown SecretId is refused from the head alone: the 10 MB body is never waited for.
    let refused: Vec<_> = (0..100)
        .map(|_| {
            let api = app.api_addr;
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(api).await.unwrap();
                stream.write_all(head(api, "AKIDnobody0000000000", TEN_MB).as_bytes()).await.unwrap();
                answer_contains(&mut stream, "AuthFailure.SecretIdNotFound", Duration::from_secs(10)).await
            })
        })
        .collect();
    for r in refused {
        assert!(r.await.unwrap(), "an unknown SecretId is answered before its body is sent");
    }

    // A known SecretId with a forged signature sends whole bodies, on many connections at once: the bodies being
    // read at once stay within the budget, and the memory with them.
    let peak = PeakRss::watch(app.pid());
    let secret_id = app.credentials.secret_id.clone();
    let senders: Vec<_> = (0..40)
        .map(|_| {
            let (api, secret_id) = (app.api_addr, secret_id.clone());
            tokio::spawn(async move {
                // From an address of its own: its wrong signatures make that address wait (docs/security.md).
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(([127, 0, 0, 3], 0).into()).unwrap();
                let mut stream = socket.connect(api).await.unwrap();
                stream.write_all(head(api, &secret_id, TEN_MB).as_bytes()).await.unwrap();
                let chunk = vec![b' '; 256 * 1024];
                for _ in 0..TEN_MB / chunk.len() {
                    if stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                answer_contains(&mut stream, "\"Code\"", Duration::from_secs(30)).await
            })
        })
        .collect();
    let started = Instant::now();
    for s in senders {
        assert!(s.await.unwrap(), "every body is answered (a signature failure, a busy budget, or a wait)");
    }
    let grew = peak.stop().saturating_sub(before);
    assert!(grew < 120 * 1024 * 1024, "fnlb grew by {} MB reading 40 bodies of 10 MB", grew / (1024 * 1024));
    assert!(started.elapsed() < Duration::from_secs(60));
    // The memory of the burst is given back.
    crate::harness::eventually("the burst's memory is given back", Duration::from_secs(20), || async {
        let now = rss(app.pid());
        (now.saturating_sub(before) < 32 * 1024 * 1024).then_some(())
    })
    .await;
    // The API still answers.
    app.scf("ListFunctions", serde_json::json!({})).await.unwrap();
}

#[tokio::test]
async fn idle_connections_and_connections_past_the_caps_are_closed() {
    let temp = tempfile::tempdir().unwrap();
    let args = ["--api-header-timeout", "3", "--api-max-connections-per-client", "4"];
    let app = TestApp::start_in(&temp.path().join("data"), &args);
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(TcpStream::connect(app.api_addr).await.unwrap());
    }
    // The fifth from the same address is closed at once.
    let mut fifth = TcpStream::connect(app.api_addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_millis(1500), fifth.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "a connection past the per-client cap is closed at once");
    // The four that send nothing are open a moment later, and closed by the header timeout.
    for stream in &mut open {
        let still = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        assert!(still.is_err(), "an idle connection stays open within its header timeout");
    }
    for stream in &mut open {
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "an idle connection is closed after its header timeout");
    }
    // Their places are given back.
    app.scf("ListFunctions", serde_json::json!({})).await.unwrap();
}
