//! The agent's own logs: structured `tracing` to stderr, never through its own export path.

use crate::config::cli::LogFormat;

/// The log filter given cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("--log / RESTART_WATCHER_LOG: invalid log filter {filter:?}; expected e.g. `info` or `restart_watcher=debug`")]
pub struct LoggingError {
    pub filter: String,
    #[source]
    source: tracing_subscriber::filter::ParseError,
}

/// Network stacks kept quiet, so that their chatter does not drown the agent's messages.
const QUIET_DEPENDENCIES: &str = "h2=warn,hyper=warn,tonic=warn,tower=warn,rustls=warn,kube_client::client::builder=off,\
                                  opentelemetry_sdk=warn,opentelemetry_otlp=warn";

/// Installs the global subscriber: `filter` in `EnvFilter` syntax, text (colored on a terminal)
/// or JSON lines.
pub fn init(filter: &str, format: LogFormat) -> Result<(), LoggingError> {
    let env_filter = tracing_subscriber::EnvFilter::try_new(format!("{filter},{QUIET_DEPENDENCIES}"))
        .map_err(|source| LoggingError { filter: filter.to_owned(), source })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
