//! The plugin driver: a router reached through an executable of the
//! operator's, which speaks JSON on stdin and stdout, one request per run
//! (docs/drivers/plugin.md; `plugins/iproute2-example` is a working one).
//!
//! Each list or apply starts the command (an argv, never a shell), writes
//! one request, and reads one answer. A plugin that cannot be started,
//! exits non-zero, overruns the timeout or answers something that is not
//! the protocol's JSON fails the whole call ([`DriverError::Plugin`], with
//! the end of its stderr); a change it reports as failed fails alone
//! ([`ChangeError::Refused`](crate::ChangeError::Refused)).
//!
//! A run still going when the leadership term ends is killed, with every
//! process it started, and its changes are reported as fenced.
//!
//! Ownership is the plugin's business, since only it knows how its router
//! marks routes: it must list and change only its own. The driver checks
//! what it can: routes listed outside the pool are ignored.
//!
//! Layout: `protocol` is the JSON both ways, `run` is one run of the
//! command (pipes, size limits, timeout, process group).

mod protocol;
mod run;

use std::time::Duration;

use async_trait::async_trait;

use crate::fence::all_fenced;
use crate::{Change, ChangeOutcome, DriverError, Fence, Ownership, RouterDriver, RouterRoutes};

/// Which command, how long it may take, which routes are nativeroute's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRouter {
    /// The router's name from the config, for logs and errors; also sent to
    /// the plugin.
    pub name: String,
    /// The program and its arguments, run as they are (no shell).
    pub command: Vec<String>,
    /// How long one run may take before it is killed and the call fails.
    pub timeout: Duration,
    /// The pool and route tag are sent to the plugin with every request.
    pub ownership: Ownership,
}

impl PluginRouter {
    /// A suggestion for the config's default: long enough for a plugin that
    /// logs in to a router and commits a large batch.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

/// A driver for one router reached through a plugin executable.
pub struct PluginDriver {
    router: PluginRouter,
    /// The command as it appears in errors and logs.
    command_line: String,
}

impl PluginDriver {
    /// Nothing is started until the first call: a plugin runs once per request.
    pub fn new(router: PluginRouter) -> Self {
        let command_line = command_line(&router.command);
        Self {
            router,
            command_line,
        }
    }

    pub fn config(&self) -> &PluginRouter {
        &self.router
    }

    /// Runs the plugin once with `request`, then reads its stdout with
    /// `read`; `Ok(None)` when the fence stopped it.
    async fn call<T>(
        &self,
        op: &'static str,
        request: Result<Vec<u8>, String>,
        read: impl FnOnce(&[u8]) -> Result<T, String>,
        fence: &Fence,
    ) -> Result<Option<T>, DriverError> {
        let request = request.map_err(|message| self.failure(op, message))?;
        let answer = run::run(&self.router.command, &request, self.router.timeout, fence).await;
        let (result, stderr) = match answer {
            Ok(answer) => (read(&answer.stdout).map(Some), answer.stderr),
            Err(failure) if failure.fenced => (Ok(None), failure.stderr),
            Err(failure) => (Err(failure.message), failure.stderr),
        };
        if !stderr.text().is_empty() {
            tracing::debug!(
                router = %self.router.name,
                command = %self.command_line,
                op,
                stderr = stderr.text(),
                "plugin stderr"
            );
        }
        result.map_err(|message| self.failure(op, format!("{message}{}", stderr.suffix())))
    }

    fn failure(&self, op: &str, message: String) -> DriverError {
        DriverError::Plugin {
            router: self.router.name.clone(),
            command: self.command_line.clone(),
            message: format!("{op}: {message}"),
        }
    }
}

#[async_trait]
impl RouterDriver for PluginDriver {
    fn router(&self) -> &str {
        &self.router.name
    }

    async fn list(&mut self) -> Result<RouterRoutes, DriverError> {
        let request = protocol::list_request(&self.router);
        let read = |stdout: &[u8]| protocol::read_list(stdout, &self.router);
        self.call("list", request, read, &Fence::never())
            .await?
            .ok_or_else(|| self.failure("list", "stopped by a fence".to_owned()))
    }

    async fn apply_fenced(
        &mut self,
        changes: &[Change],
        fence: &Fence,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if fence.is_raised() {
            return Ok(all_fenced(changes));
        }
        let request = protocol::apply_request(&self.router, changes);
        let read = |stdout: &[u8]| protocol::read_results(stdout, changes);
        // Killed half-way, the plugin may have made some of the changes:
        // the next leader's fresh list shows which.
        Ok(self
            .call("apply", request, read, fence)
            .await?
            .unwrap_or_else(|| all_fenced(changes)))
    }

    fn describe(&self) -> String {
        format!(
            "plugin: {} (JSON on stdin/stdout, one request per run, timeout {})",
            self.command_line,
            run::humanize(self.router.timeout)
        )
    }
}

/// The argv as one line, quoting the arguments a reader could not otherwise
/// tell apart (empty, or with spaces or quotes in them).
fn command_line(command: &[String]) -> String {
    if command.is_empty() {
        return "(no command)".to_owned();
    }
    command
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && !arg
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\');
            if plain {
                arg.clone()
            } else {
                format!("{arg:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_quotes_only_what_needs_it() {
        let argv = |args: &[&str]| args.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&argv(&["/usr/local/bin/x", "--router", "tor a", ""])),
            r#"/usr/local/bin/x --router "tor a" """#
        );
        assert_eq!(command_line(&[]), "(no command)");
    }
}
