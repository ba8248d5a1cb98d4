//! The `otlp-json` exporter's encoding: OTLP/JSON as the OpenTelemetry Collector's file exporter
//! writes it (lowerCamelCase keys, hex trace and span ids, 64-bit integers as strings), one
//! `ExportLogsServiceRequest` or `ExportTraceServiceRequest` per line.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// One line of OTLP/JSON for a logs request.
pub fn logs_line(req: &ExportLogsServiceRequest) -> serde_json::Result<String> {
    serde_json::to_string(req)
}

/// One line of OTLP/JSON for a traces request.
pub(crate) fn traces_line(req: &ExportTraceServiceRequest) -> serde_json::Result<String> {
    serde_json::to_string(req)
}
