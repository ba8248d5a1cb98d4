//! The real collector for the end-to-end export tests: `rotel-agent` from the PyPI package
//! `rotel` (installed by tests/support/install-test-deps.sh), listening on loopback.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rotel {
    child: Child,
    pub grpc_endpoint: String,
    /// Its OTLP/HTTP receiver (base URL; the signal paths are /v1/logs and /v1/traces).
    pub http_endpoint: String,
}

/// Where `rotel-agent` is: $ROTEL_AGENT, else inside the installed `rotel` Python package.
pub fn rotel_agent() -> PathBuf {
    if let Ok(p) = std::env::var("ROTEL_AGENT") {
        return p.into();
    }
    let out = Command::new("python3")
        .args(["-c", "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))"])
        .output()
        .expect("python3");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && std::path::Path::new(&path).exists(),
        "rotel-agent not found: run tests/support/install-test-deps.sh (pip install rotel) or set ROTEL_AGENT"
    );
    path.into()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Rotel {
    /// Starts rotel receiving OTLP/gRPC and forwarding everything over OTLP/gRPC to `upstream`.
    pub fn start(upstream: &str) -> Rotel {
        Rotel::start_with_exporter("otlp", Some(upstream))
    }

    /// Starts rotel with `exporter` (`otlp` to `upstream`, or `blackhole`).
    pub fn start_with_exporter(exporter: &str, upstream: Option<&str>) -> Rotel {
        let (grpc, http) = (free_port(), free_port());
        let mut cmd = Command::new(rotel_agent());
        cmd.args(["start", "--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--exporter", exporter, "--batch-timeout", "100ms"]);
        if let Some(upstream) = upstream {
            cmd.args(["--otlp-exporter-endpoint", upstream, "--otlp-exporter-protocol", "grpc"]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start rotel-agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err() {
            assert!(Instant::now() < deadline, "rotel-agent did not listen on {grpc}");
            std::thread::sleep(Duration::from_millis(50));
        }
        while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
            assert!(Instant::now() < deadline, "rotel-agent did not listen on {http}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Rotel {
            child,
            grpc_endpoint: format!("http://127.0.0.1:{grpc}"),
            http_endpoint: format!("http://127.0.0.1:{http}"),
        }
    }
}

impl Rotel {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
