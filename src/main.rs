//! The `restart-watcher` binary: parse the configuration, set up logging, run, map the outcome to
//! an exit code. Everything else lives in the library.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use restart_watcher::app::{self, ReplayOptions};
use restart_watcher::cli::{Cli, Command, ExporterKind, LogFormat, ReplayArgs};
use restart_watcher::export::Exporter;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("restart-watcher: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("restart-watcher: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("restart-watcher: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) -> Result<()> {
    // The agent's own logs go to stderr, never through its own export path; the network stacks
    // are kept quiet so their chatter does not drown the agent's messages.
    let filter = EnvFilter::try_new(format!("{},h2=warn,hyper=warn,tonic=warn,tower=warn,rustls=warn", cli.log))
        .with_context(|| {
            format!(
                "--log / RESTART_WATCHER_LOG: invalid log filter {:?}; expected e.g. `info` or `restart_watcher=debug`",
                cli.log
            )
        })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay(args).await,
    }
}

async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let (input, source_name): (Box<dyn Read + Send>, String) = if args.input == "-" {
        (Box::new(std::io::stdin()), "stdin".to_owned())
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open the replay input {:?}", args.input))?;
        (Box::new(file), args.input.clone())
    };
    let out: Box<dyn std::io::Write + Send> = Box::new(std::io::stdout());
    let exporter = match args.output.exporter {
        ExporterKind::Console => Exporter::Console { out },
        ExporterKind::OtlpJson => {
            Exporter::OtlpJson { out, signals: args.output.signals(), mapping: args.output.mapping() }
        }
    };
    let opts = ReplayOptions { kinds: args.detection.kind_filter(), ..ReplayOptions::default() };
    let outcome = app::replay(input, source_name, exporter, opts).await;
    let s = outcome.stats;
    tracing::info!(
        values = s.values,
        pod_observations = s.pod_observations,
        lists = s.lists,
        skipped_not_pod = s.skipped_not_pod,
        error_events = s.error_events,
        restarts = s.restarts,
        exported = outcome.export.exported,
        failed = outcome.export.failed,
        "Replay finished."
    );
    if let Some(e) = outcome.error {
        anyhow::bail!(e);
    }
    if let Some(e) = outcome.export.first_error {
        anyhow::bail!("{} restart records could not be exported: {e}", outcome.export.failed);
    }
    Ok(ExitCode::SUCCESS)
}
