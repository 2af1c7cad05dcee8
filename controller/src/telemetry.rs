//! Logs: human-readable by default, JSON lines with `--log-format json`.
//! The level comes from `--log-level`, else RUST_LOG, else info.
//!
//! Lines go to stderr from a thread of their own: a slow or blocked stderr
//! (a full pipe, a stalled log collector) must never delay a route. If it
//! falls more than the buffer behind, lines are dropped rather than the
//! controller stopping for them.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Lines waiting for stderr before new ones are dropped.
const BUFFERED_LINES: usize = 16_384;

/// Starts logging. `level` is a level (`debug`) or a filter in RUST_LOG's
/// syntax (`info,nativeroute=debug`); it was checked by [`parse_level`].
/// The lines still buffered are written when the guard is dropped: keep it
/// until the process ends.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(format: LogFormat, level: Option<&EnvFilter>) -> WorkerGuard {
    let filter = match level {
        Some(level) => level.clone(),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // The queue is allocated whole at start: tracing-appender's default of
    // 128,000 lines is about 4 MiB, for bursts a cold start no longer makes
    // (its per-node lines are at debug).
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colour only for a person at a terminal, never into a log file.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

/// Checks a `--log-level` value.
pub fn parse_level(text: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(text).map_err(|err| {
        format!("{text:?} is not a log level (error, warn, info, debug, trace) or a RUST_LOG filter: {err}")
    })
}
