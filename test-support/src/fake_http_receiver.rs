//! An in-process OTLP/HTTP receiver (`POST /v1/logs`, `/v1/traces`, protobuf) on 127.0.0.1:0 that
//! records every request and can be told to misbehave: refuse requests of more than N records
//! with 413, or answer success with a body that is not protobuf.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;

/// What the receiver answers a request it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// The OTLP response, protobuf.
    Protobuf,
    /// `{}`, as a JSON-only receiver or a proxy answers.
    Json,
    /// Bytes that decode as nothing.
    Garbage,
}

#[derive(Debug)]
pub struct Receiver {
    /// Records per request of every request it received, taken or not: (signal, records, status).
    pub requests: Mutex<Vec<(&'static str, usize, u16)>>,
    /// Refuse a request of more records than this with 413.
    pub max_records: Mutex<Option<usize>>,
    pub body: Mutex<Body>,
}

pub struct FakeHttpReceiver {
    pub addr: SocketAddr,
    pub state: Arc<Receiver>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeHttpReceiver {
    pub async fn start() -> FakeHttpReceiver {
        let state = Arc::new(Receiver {
            requests: Mutex::default(),
            max_records: Mutex::default(),
            body: Mutex::new(Body::Protobuf),
        });
        let app =
            Router::new().route("/v1/logs", post(logs)).route("/v1/traces", post(traces)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHttpReceiver { addr, state, _server: server }
    }

    /// The base endpoint (the exporter appends `/v1/logs`, `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Records of `signal` taken (answered 2xx).
    pub fn records_taken(&self, signal: &str) -> usize {
        let requests = self.state.requests.lock().unwrap();
        requests.iter().filter(|(s, _, status)| *s == signal && *status < 300).map(|(_, n, _)| n).sum()
    }

    /// Requests of `signal`, taken or not.
    pub fn requests(&self, signal: &str) -> usize {
        self.state.requests.lock().unwrap().iter().filter(|(s, _, _)| *s == signal).count()
    }
}

fn answer(state: &Receiver, signal: &'static str, records: usize, ok: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let too_many = state.max_records.lock().unwrap().is_some_and(|max| records > max);
    let status = if too_many { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::OK };
    state.requests.lock().unwrap().push((signal, records, status.as_u16()));
    if too_many {
        return (status, b"request too large".to_vec());
    }
    let body = match *state.body.lock().unwrap() {
        Body::Protobuf => ok,
        Body::Json => b"{}".to_vec(),
        Body::Garbage => vec![0xff; 7],
    };
    (status, body)
}

async fn logs(State(state): State<Arc<Receiver>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req = ExportLogsServiceRequest::decode(body).unwrap();
    let records = req.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
    answer(&state, "logs", records, ExportLogsServiceResponse::default().encode_to_vec())
}

async fn traces(State(state): State<Arc<Receiver>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let req = ExportTraceServiceRequest::decode(body).unwrap();
    let spans = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    answer(&state, "traces", spans, ExportTraceServiceResponse::default().encode_to_vec())
}
