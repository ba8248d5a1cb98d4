//! An in-process OTLP/gRPC collector (tonic `LogsServiceServer` + `TraceServiceServer` on
//! 127.0.0.1:0) that records what it receives, with the request metadata, and can be told to fail:
//! a status for the next N calls, a stall, or down until further notice.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

/// What the next call of a signal does.
#[derive(Clone, Debug)]
pub enum Fault {
    Fail(Status),
    Stall(Duration),
}

#[derive(Default)]
pub struct State {
    pub logs: Mutex<Vec<(MetadataMap, ExportLogsServiceRequest)>>,
    pub traces: Mutex<Vec<(MetadataMap, ExportTraceServiceRequest)>>,
    pub metrics: Mutex<Vec<(MetadataMap, ExportMetricsServiceRequest)>>,
    /// Every call, accepted or not: (signal, when).
    pub attempts: Mutex<Vec<(&'static str, Instant)>>,
    /// Refuse requests larger than this, as the Collector's gRPC server does.
    pub max_request_bytes: Mutex<Option<usize>>,
    log_faults: Mutex<VecDeque<Fault>>,
    trace_faults: Mutex<VecDeque<Fault>>,
    down: Mutex<bool>,
}

#[derive(Clone)]
struct Svc(Arc<State>);

impl Svc {
    async fn gate(&self, signal: &'static str) -> Result<(), Status> {
        self.0.attempts.lock().unwrap().push((signal, Instant::now()));
        if *self.0.down.lock().unwrap() {
            return Err(Status::unavailable("collector down (test)"));
        }
        let faults = if signal == "logs" { &self.0.log_faults } else { &self.0.trace_faults };
        let fault = faults.lock().unwrap().pop_front();
        match fault {
            Some(Fault::Fail(s)) => Err(s),
            Some(Fault::Stall(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Svc {
    /// grpc-go's answer to a request over its limit (the Collector's).
    fn size_gate(&self, len: usize) -> Result<(), Status> {
        match *self.0.max_request_bytes.lock().unwrap() {
            Some(max) if len > max => {
                Err(Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {max})")))
            }
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.gate("logs").await?;
        let (meta, _, msg) = req.into_parts();
        self.size_gate(prost::Message::encoded_len(&msg))?;
        self.0.logs.lock().unwrap().push((meta, msg));
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.gate("traces").await?;
        let (meta, _, msg) = req.into_parts();
        self.size_gate(prost::Message::encoded_len(&msg))?;
        self.0.traces.lock().unwrap().push((meta, msg));
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let (meta, _, msg) = req.into_parts();
        self.0.metrics.lock().unwrap().push((meta, msg));
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

pub struct FakeCollector {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
    /// Keeps a private runtime alive when started from synchronous code.
    _runtime: Option<tokio::runtime::Runtime>,
}

/// Serves `state` on `listener` until the sender is used or dropped.
fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let svc = Svc(state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                LogsServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(64 << 20),
            )
            .add_service(
                TraceServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(64 << 20),
            )
            .add_service(MetricsServiceServer::new(svc).accept_compressed(CompressionEncoding::Gzip))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

impl FakeCollector {
    /// Starts on the current Tokio runtime.
    pub async fn start() -> FakeCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (tx, task) = serve(listener, state.clone());
        FakeCollector { addr, state, stop: Some(tx), serving: Some(task), _runtime: None }
    }

    /// Restarts as a collector process does: the listener and every connection go away (what was
    /// received is kept), nothing listens for `down`, then it serves again on the same address.
    pub async fn restart(&mut self, down: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.serving.take() {
            // A graceful stop waits for open connections; a crashed process does not.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
                abort.abort();
            }
        }
        tokio::time::sleep(down).await;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let (tx, task) = serve(listener, self.state.clone());
        (self.stop, self.serving) = (Some(tx), Some(task));
    }

    /// Starts on a runtime of its own (for synchronous tests).
    pub fn start_blocking() -> FakeCollector {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut fc = rt.block_on(FakeCollector::start());
        fc._runtime = Some(rt);
        fc
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn fail_next(&self, signal: &str, n: usize, status: impl Fn() -> Status) {
        let faults = if signal == "logs" { &self.state.log_faults } else { &self.state.trace_faults };
        let mut q = faults.lock().unwrap();
        for _ in 0..n {
            q.push_back(Fault::Fail(status()));
        }
    }

    pub fn stall_next(&self, signal: &str, d: Duration) {
        let faults = if signal == "logs" { &self.state.log_faults } else { &self.state.trace_faults };
        faults.lock().unwrap().push_back(Fault::Stall(d));
    }

    /// Refuses requests over `max` bytes (`None`: no limit of its own).
    pub fn set_max_request_bytes(&self, max: Option<usize>) {
        *self.state.max_request_bytes.lock().unwrap() = max;
    }

    pub fn set_down(&self, down: bool) {
        *self.state.down.lock().unwrap() = down;
    }

    /// Every log record received, in arrival order.
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.state
            .logs
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, r)| {
                r.resource_logs.iter().flat_map(|rl| rl.scope_logs.iter().flat_map(|sl| sl.log_records.clone()))
            })
            .collect()
    }

    /// (resource attributes, record) pairs received.
    pub fn records_with_resource(&self) -> Vec<(Vec<opentelemetry_proto::tonic::common::v1::KeyValue>, LogRecord)> {
        let mut out = Vec::new();
        for (_, req) in self.state.logs.lock().unwrap().iter() {
            for rl in &req.resource_logs {
                let res = rl.resource.clone().unwrap_or_default().attributes;
                for sl in &rl.scope_logs {
                    for rec in &sl.log_records {
                        out.push((res.clone(), rec.clone()));
                    }
                }
            }
        }
        out
    }

    pub fn span_count(&self) -> usize {
        self.state
            .traces
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| {
                r.resource_spans
                    .iter()
                    .map(|rs| rs.scope_spans.iter().map(|ss| ss.spans.len()).sum::<usize>())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Names of the metrics received over OTLP.
    pub fn metric_names(&self) -> Vec<String> {
        self.state
            .metrics
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, r)| {
                r.resource_metrics
                    .iter()
                    .flat_map(|rm| rm.scope_metrics.iter().flat_map(|sm| sm.metrics.iter().map(|m| m.name.clone())))
            })
            .collect()
    }

    /// `service.name` of each pushed metrics resource, with the value of `header` on its request.
    pub fn metric_pushes(&self, header: &str) -> Vec<(Option<String>, Option<String>)> {
        let metrics = self.state.metrics.lock().unwrap();
        metrics
            .iter()
            .flat_map(|(meta, r)| {
                let h = meta.get(header).and_then(|v| v.to_str().ok()).map(str::to_owned);
                r.resource_metrics.iter().map(move |rm| {
                    let service = rm.resource.as_ref().and_then(|res| str_attr(&res.attributes, "service.name"));
                    (service, h.clone())
                })
            })
            .collect()
    }

    /// Waits (polling) until at least `n` log records arrived.
    pub fn wait_log_records(&self, n: usize, timeout: Duration) -> Vec<LogRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let recs = self.log_records();
            if recs.len() >= n || Instant::now() > deadline {
                return recs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The string value of attribute `key`.
pub fn str_attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    attrs.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    })
}
