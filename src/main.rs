//! The `restart-watcher` binary: parse, turn the flags into settings (`config`), dispatch to the
//! library (`app` for a live run, `replay` for a recording), and map the outcome to an exit code:
//! 2 for a bad configuration, 1 for a run that lost records or could not start, 130 for a replay
//! stopped by a signal.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use restart_watcher::app::{self, AppError};
use restart_watcher::config;
use restart_watcher::config::cli::{Cli, Command, ReplayArgs, RunArgs};
use restart_watcher::replay::{self, ReplayEnd};
use tokio_util::sync::CancellationToken;

/// Exit code of a configuration the agent cannot run with.
const EXIT_CONFIG: u8 = 2;
/// Exit code of a replay stopped by a signal before its input ended.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    restart_watcher::memory::limit_arenas();
    let cli = Cli::parse();
    if let Err(e) = restart_watcher::logging::init(&cli.log, cli.log_format) {
        eprintln!("restart-watcher: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("restart-watcher: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(Command::Replay(args)) => replay(*args).await,
            Some(Command::Run(args)) => watch(*args).await,
            Some(Command::CheckConfig(args)) => Ok(check_config(&args)),
            Some(Command::ConfigReference) => {
                print!("{}", config::reference::reference());
                Ok(ExitCode::SUCCESS)
            }
            None => watch(cli.run).await,
        }
    });
    // Everything is flushed and accounted for by now. A replay reader may still be blocked
    // reading a pipe (stopped by a signal): do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("restart-watcher: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints why the configuration cannot work; returns the exit code for it.
fn invalid(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("restart-watcher: invalid configuration: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn check_config(args: &RunArgs) -> ExitCode {
    match config::validate(args) {
        Ok(summary) => {
            println!("configuration OK");
            for (k, v) in summary {
                println!("  {k}: {v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => invalid(&e),
    }
}

/// A signal-stopped token: SIGTERM and SIGINT cancel it.
fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(app::stop_on_signal(stop.clone()));
    stop
}

async fn watch(args: RunArgs) -> Result<ExitCode> {
    // Everything that can be checked without a network is checked first, once.
    let settings = match config::settings(&args) {
        Ok(settings) => settings,
        Err(e) => return Ok(invalid(&e)),
    };
    let report = match app::run(settings, stop_on_signal()).await {
        Ok(report) => report,
        Err(AppError::Config(e)) => return Ok(invalid(&e)),
        Err(AppError::Election(e)) => {
            eprintln!("restart-watcher: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(e) => return Err(e.into()),
    };
    if report.abnormal {
        tracing::error!("A task ended abnormally (see above); the counts are those it reached.");
        return Ok(ExitCode::FAILURE);
    }
    if report.undelivered > 0 || report.failed > 0 {
        tracing::error!(undelivered = report.undelivered, failed = report.failed, "Some records were not delivered.");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let settings = match config::replay_settings(&args) {
        Ok(settings) => settings,
        Err(e) => return Ok(invalid(&e)),
    };
    match replay::run(settings, stop_on_signal()).await {
        Ok(ReplayEnd::Done) => Ok(ExitCode::SUCCESS),
        Ok(ReplayEnd::Interrupted) => Ok(ExitCode::from(EXIT_INTERRUPTED)),
        Err(replay::ReplayRunError::Export(e)) => Ok(invalid(&e)),
        Err(e) => Err(e.into()),
    }
}
