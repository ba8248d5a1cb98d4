//! The admin server under hostile clients: thousands of idle connections and a slowloris must not
//! keep the kubelet's probes from an answer, nor grow the agent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use restart_watcher::admin::{self, ADMIN_HEADER_READ_TIMEOUT, ADMIN_MAX_CONNECTIONS, Readiness};
use restart_watcher::metrics::SelfTelemetry;
use tokio_util::sync::CancellationToken;

async fn server() -> (SocketAddr, CancellationToken) {
    let telemetry = Arc::new(SelfTelemetry::new().unwrap());
    let stop = CancellationToken::new();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (bound, _task) = admin::serve(addr, telemetry, Readiness::default(), stop.clone()).await.unwrap();
    (bound, stop)
}

/// GET `path` on a new connection: the status code, waiting as long as it takes.
fn get(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Whether the server has closed `s` (a read gives end of file or an error).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_limit_close_the_oldest_and_the_probes_are_answered() {
    let (addr, stop) = server().await;
    let held = tokio::task::spawn_blocking(move || {
        let mut idle: Vec<TcpStream> = (0..1_000).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // The probes get their answer with a thousand idle connections open.
        assert_eq!(get(addr, "/livez"), 200);
        assert_eq!(get(addr, "/metrics"), 200);
        // The server holds at most its limit: the others were closed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let open = idle.iter_mut().map(closed_by_server).filter(|closed| !closed).count();
            if open <= ADMIN_MAX_CONNECTIONS {
                break;
            }
            assert!(Instant::now() < deadline, "{open} connections still open");
            std::thread::sleep(Duration::from_millis(200));
        }
        idle
    })
    .await
    .unwrap();
    drop(held);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_closed() {
    let (addr, stop) = server().await;
    tokio::task::spawn_blocking(move || {
        let mut slow = TcpStream::connect(addr).unwrap();
        write!(slow, "GET /livez HTTP/1.1\r\nHost: agent\r\n").unwrap();
        let started = Instant::now();
        while !closed_by_server(&mut slow) {
            assert!(started.elapsed() < ADMIN_HEADER_READ_TIMEOUT * 12, "the slow client is never closed");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(started.elapsed() >= ADMIN_HEADER_READ_TIMEOUT / 2, "closed for its slowness, not at once");
        assert_eq!(get(addr, "/livez"), 200);
    })
    .await
    .unwrap();
    stop.cancel();
}

#[test]
fn the_connection_budget_leaves_the_reserve_of_descriptors_to_the_agent() {
    assert_eq!(admin::connection_budget(1_048_576), ADMIN_MAX_CONNECTIONS);
    assert_eq!(admin::connection_budget(admin::FD_RESERVE + 20), 20);
    assert_eq!(admin::connection_budget(10), 4, "a few always");
}
