//! The stack an SRE reads restarts in, as real processes on loopback: the collector distribution
//! of `otel-collector/builder-config.yaml` (built by `otel-collector/build.sh`), Jaeger v2 and
//! VictoriaLogs (built by `tests/support/build-go-tools.sh`). Each can be stopped and started again
//! on the same ports (an outage); each is killed when the test ends, even when it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free loopback port. These Go servers take fixed addresses, so the port is picked here and
/// handed to them: a random one below the kernel's ephemeral range that can be bound now. (A port
/// the kernel handed out for port 0 and that was released can go to the next process binding port
/// 0 before the server binds it; below the range no port-0 bind takes it.)
pub fn free_port() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: u16 = range.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(32768);
    (0..1000)
        .map(|_| fastrand::u16(10000..low.max(10001)))
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// The collector binary, built (and cached) from the manifest on first use.
pub fn collector_bin() -> String {
    let out =
        Command::new("otel-collector/build.sh").stderr(Stdio::inherit()).output().expect("run otel-collector/build.sh");
    assert!(out.status.success(), "building the collector failed (see stderr above)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A server process whose output goes to a log file; `stop` and `start` model an outage.
pub struct Server {
    name: &'static str,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
    /// Ports that must accept connections before the server counts as started.
    ports: Vec<u16>,
}

impl Server {
    pub fn new(
        name: &'static str,
        dir: &Path,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        ports: Vec<u16>,
    ) -> Server {
        let log = dir.join(format!("{name}.log"));
        let mut s = Server { name, cmd, env, log, child: None, ports };
        s.start();
        s
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        for port in self.ports.clone() {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("{} exited ({status}) before listening on {port}:\n{}", self.name, self.log_text());
                }
                assert!(Instant::now() < deadline, "{} did not listen on {port}:\n{}", self.name, self.log_text());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGTERM, then waits (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The built collector running `configs` (the shipped files), then a test overlay that moves every
/// listener to a free loopback port, turns off its own telemetry listener and points
/// `k8s_attributes` at `kubeconfig` (the shipped config uses the pod's ServiceAccount).
pub struct Collector {
    pub server: Server,
    /// OTLP/gRPC receiver, as the agent's endpoint (`http://127.0.0.1:PORT`).
    pub grpc_endpoint: String,
    pub http_endpoint: String,
}

impl Collector {
    /// `extra_yaml` is merged last (more pipelines, a `file` exporter...).
    pub fn start(
        dir: &Path,
        configs: &[&str],
        kubeconfig: Option<&Path>,
        env: &[(&str, String)],
        extra_yaml: &str,
    ) -> Collector {
        let (grpc, http, health) = (free_port(), free_port(), free_port());
        let k8s = if kubeconfig.is_some() { "processors:\n  k8s_attributes:\n    auth_type: kubeConfig\n" } else { "" };
        let overlay = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n      http:\n        endpoint: 127.0.0.1:{http}\n\
             extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n\
             service:\n  telemetry:\n    metrics:\n      level: none\n{k8s}"
        );
        std::fs::create_dir_all(dir).unwrap();
        let overlay_path = dir.join("collector-overlay.yaml");
        std::fs::write(&overlay_path, overlay).unwrap();
        let mut cmd = vec![collector_bin()];
        for c in configs {
            cmd.push(format!("--config={}", std::fs::canonicalize(c).unwrap().display()));
        }
        cmd.push(format!("--config={}", overlay_path.display()));
        if !extra_yaml.is_empty() {
            let extra = dir.join("collector-extra.yaml");
            std::fs::write(&extra, extra_yaml).unwrap();
            cmd.push(format!("--config={}", extra.display()));
        }
        let mut envs: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if let Some(k) = kubeconfig {
            envs.push(("KUBECONFIG".into(), k.display().to_string()));
        }
        let server = Server::new("collector", dir, cmd, envs, vec![grpc, http]);
        Collector {
            server,
            grpc_endpoint: format!("http://127.0.0.1:{grpc}"),
            http_endpoint: format!("http://127.0.0.1:{http}"),
        }
    }
}

/// Jaeger v2 (`cmd/jaeger` of `github.com/jaegertracing/jaeger`), receiving OTLP/gRPC.
pub struct Jaeger {
    pub server: Server,
    /// Its OTLP/gRPC receiver (`127.0.0.1:PORT`, as the collector's `JAEGER_OTLP_ENDPOINT`).
    pub otlp_grpc: String,
    /// Its query service (HTTP API, `/api/...`).
    pub query: String,
}

impl Jaeger {
    /// In-memory storage; with `badger_dir`, Badger on disk in that folder instead (spans survive a
    /// stop, for the outage tests).
    pub fn start(dir: &Path, badger_dir: Option<&Path>) -> Jaeger {
        let (otlp, query, query_grpc) = (free_port(), free_port(), free_port());
        let backend = match badger_dir {
            None => "memory:\n          max_traces: 100000".to_owned(),
            Some(d) => format!(
                "badger:\n          directories:\n            keys: {0}/keys\n            values: {0}/values\n          ephemeral: false",
                d.display()
            ),
        };
        let config = format!(
            "service:\n  extensions: [jaeger_storage, jaeger_query]\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: []\n      exporters: [jaeger_storage_exporter]\n  telemetry:\n    metrics:\n      level: none\n    logs:\n      level: info\n\
             extensions:\n  jaeger_query:\n    storage:\n      traces: store\n    http:\n      endpoint: 127.0.0.1:{query}\n    grpc:\n      endpoint: 127.0.0.1:{query_grpc}\n  jaeger_storage:\n    backends:\n      store:\n        {backend}\n\
             receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{otlp}\n\
             exporters:\n  jaeger_storage_exporter:\n    trace_storage: store\n"
        );
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("jaeger.yaml");
        std::fs::write(&path, config).unwrap();
        let bin = crate::cluster::go_tool("jaeger", "jaeger");
        let server =
            Server::new("jaeger", dir, vec![bin, format!("--config={}", path.display())], vec![], vec![otlp, query]);
        Jaeger { server, otlp_grpc: format!("127.0.0.1:{otlp}"), query: format!("127.0.0.1:{query}") }
    }

    /// GET on the query API; the JSON body (`None` on 404).
    pub fn get(&self, path: &str) -> Option<Value> {
        let (code, body) = crate::cluster::http_get(&self.query, path);
        match code {
            200 => Some(serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))),
            404 => None,
            _ => panic!("Jaeger {path}: HTTP {code}: {body}"),
        }
    }

    /// The service names Jaeger lists (`/api/services`).
    pub fn services(&self) -> Vec<String> {
        let v = self.get("/api/services").unwrap();
        v["data"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
    }

    /// The spans of trace `trace_id` (hex), each with its process's service name as `serviceName`.
    pub fn trace_spans(&self, trace_id: &str) -> Vec<Value> {
        let Some(v) = self.get(&format!("/api/traces/{trace_id}")) else { return vec![] };
        let mut out = vec![];
        for t in v["data"].as_array().into_iter().flatten() {
            for s in t["spans"].as_array().into_iter().flatten() {
                let mut s = s.clone();
                let pid = s["processID"].as_str().unwrap_or("").to_owned();
                s["serviceName"] = t["processes"][&pid]["serviceName"].clone();
                s["processTags"] = t["processes"][&pid]["tags"].clone();
                out.push(s);
            }
        }
        out
    }
}

/// A Jaeger span's tag (or a span log's field) value by key.
pub fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a Value> {
    tags.as_array()?.iter().find(|t| t["key"] == key).map(|t| &t["value"])
}

/// VictoriaLogs, receiving OTLP/HTTP logs and answering LogsQL.
pub struct VictoriaLogs {
    pub server: Server,
    pub addr: String,
}

impl VictoriaLogs {
    /// Stores under `dir/vlogs` (kept across a stop).
    pub fn start(dir: &Path) -> VictoriaLogs {
        let port = free_port();
        let bin = crate::cluster::go_tool("victorialogs", "victoria-logs");
        let cmd = vec![
            bin,
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.join("vlogs").display()),
            "-retentionPeriod=100y".into(),
        ];
        let server = Server::new("victorialogs", dir, cmd, vec![], vec![port]);
        VictoriaLogs { server, addr: format!("127.0.0.1:{port}") }
    }

    /// The base URL the collector's `otlp_http` exporter posts to (it appends `/v1/logs`).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}/insert/opentelemetry", self.addr)
    }

    /// Runs a LogsQL query; one JSON object per matching record.
    pub fn query(&self, logsql: &str) -> Vec<Value> {
        let q: String = url_encode(logsql);
        let (code, body) = crate::cluster::http_get(&self.addr, &format!("/select/logsql/query?query={q}"));
        assert_eq!(code, 200, "LogsQL {logsql:?}: {body}");
        body.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// The backends and the built collector exporting to them (logs to VictoriaLogs through the shipped
/// `otlp_http/loki` exporter, traces to Jaeger), with `k8s_attributes` on `kubeconfig`'s cluster.
pub struct Stack {
    pub jaeger: Jaeger,
    pub vlogs: VictoriaLogs,
    pub collector: Collector,
}

impl Stack {
    /// `configs` are the shipped collector configs to run; `badger_dir` as for [`Jaeger::start`].
    pub fn start(
        dir: &Path,
        kubeconfig: &Path,
        badger_dir: Option<&Path>,
        configs: &[&str],
        extra_yaml: &str,
    ) -> Stack {
        let jaeger = Jaeger::start(dir, badger_dir);
        let vlogs = VictoriaLogs::start(dir);
        let collector = Collector::start(
            dir,
            configs,
            Some(kubeconfig),
            &[("LOKI_OTLP_ENDPOINT", vlogs.otlp_endpoint()), ("JAEGER_OTLP_ENDPOINT", jaeger.otlp_grpc.clone())],
            extra_yaml,
        );
        Stack { jaeger, vlogs, collector }
    }
}

/// Percent-encodes a query parameter.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `f` every 200 ms until it returns `Some`, for up to `limit` (a hang guard); panics with
/// `what` and the last value's description otherwise.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                assert!(Instant::now() < deadline, "{what}: not within {limit:?}; last: {last}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
