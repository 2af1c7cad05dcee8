//! Listing and applying through a vendor's CLI, the same for every vendor:
//! the lines come from the [`Vendor`], every error is mapped back to the
//! change whose line caused it, and the changes after a stop are reported
//! as not attempted.

use super::SshRouter;
use super::session::{Connection, SshTarget};
use super::terminal::Terminal;
use super::vendor::{ApplyOptions, BatchReport, Dialogue, Vendor};
use crate::{Change, ChangeError, ChangeOutcome, DriverError, ForeignRoute, RouterRoutes};

/// The lines of a batch, each with the change it belongs to (`None` for
/// entering configuration, commit and the like).
struct Script {
    lines: Vec<String>,
    owners: Vec<Option<usize>>,
    /// The first line after the commit (`lines.len()` when none follows):
    /// the batch has taken effect before it.
    committed_at: usize,
}

impl Script {
    fn new() -> Self {
        Script {
            lines: Vec::new(),
            owners: Vec::new(),
            committed_at: 0,
        }
    }

    fn push(&mut self, lines: Vec<String>, owner: Option<usize>) {
        self.owners.extend(std::iter::repeat_n(owner, lines.len()));
        self.lines.extend(lines);
    }
}

pub(super) async fn list(
    connection: &Connection,
    target: &SshTarget,
    router: &SshRouter,
) -> Result<RouterRoutes, DriverError> {
    let vendor = router.vendor.profile();
    let commands = vendor.list(router.cli());
    let output = match vendor.dialogue() {
        Dialogue::Batch => {
            let mut output = String::new();
            for command in &commands {
                let run = connection.exec(target, command, "").await?;
                if run.status != Some(0) {
                    return Err(output_error(
                        target,
                        "listing routes",
                        format!(
                            "{command:?} exited with {}: {}",
                            describe_status(run.status),
                            last_lines(&run.stderr, &run.stdout)
                        ),
                    ));
                }
                output.push_str(&run.stdout);
                output.push('\n');
            }
            output
        }
        Dialogue::Prompted => {
            let mut terminal = open_terminal(connection, target, vendor).await?;
            let mut output = String::new();
            for command in &commands {
                let answer = terminal.send(command, vendor.prompt()).await?;
                if let Some(error) = vendor.error_in(&answer) {
                    terminal.close().await;
                    return Err(output_error(
                        target,
                        "listing routes",
                        format!("{command:?} was refused: {error}"),
                    ));
                }
                output.push_str(&answer);
                output.push('\n');
            }
            terminal.close().await;
            output
        }
    };
    vendor
        .parse_routes(&output, &router.ownership)
        .map_err(|message| output_error(target, "listing routes", message))
}

pub(super) async fn apply(
    connection: &Connection,
    target: &SshTarget,
    router: &SshRouter,
    changes: &[Change],
    session_name: String,
) -> Result<Vec<ChangeOutcome>, DriverError> {
    let vendor = router.vendor.profile();
    let options = ApplyOptions {
        save: router.save_config,
        commit_confirm: router.commit_confirm,
        session_name,
    };
    let mut script = Script::new();
    script.push(vendor.begin(&options), None);
    for (index, change) in changes.iter().enumerate() {
        script.push(vendor.render(change, &router.ownership), Some(index));
    }
    script.push(vendor.finish(&options), None);
    script.committed_at = script.lines.len();
    script.push(vendor.after_commit(&options), None);
    match vendor.dialogue() {
        Dialogue::Batch => apply_batch(connection, target, router, changes, &script).await,
        Dialogue::Prompted => {
            apply_prompted(connection, target, vendor, &options, changes, &script).await
        }
    }
}

async fn apply_batch(
    connection: &Connection,
    target: &SshTarget,
    router: &SshRouter,
    changes: &[Change],
    script: &Script,
) -> Result<Vec<ChangeOutcome>, DriverError> {
    let vendor = router.vendor.profile();
    let mut stdin = script.lines.join("\n");
    stdin.push('\n');
    let command = vendor.batch_command(router.cli());
    let run = connection.exec(target, &command, &stdin).await?;
    let report = vendor
        .batch_report(&run.stdout, &run.stderr, run.status, script.lines.len())
        .map_err(|message| output_error(target, "applying a batch", message))?;
    let outcomes = outcomes_of(target, changes, script, &report)?;
    let all_taken = outcomes.iter().all(Result::is_ok);
    if router.save_config
        && all_taken
        && let Some(save) = vendor.save_command(router.cli())
    {
        let saved = connection.exec(target, &save, "").await?;
        if saved.status != Some(0) {
            // The routes are in place; only the startup config lags, and
            // the next batch saves again.
            tracing::warn!(
                router = %target.router,
                command = %save,
                output = %last_lines(&saved.stderr, &saved.stdout),
                "saving the configuration failed"
            );
        }
    }
    Ok(outcomes)
}

/// Whether a foreign route holds what `change` would write: any route to
/// the destination of an add (Junos would merge next hops into one
/// stanza), the destination and new next hop of a replace.
pub(super) fn foreign_in_the_way(change: &Change, foreign: &[ForeignRoute]) -> bool {
    match *change {
        Change::Add(route) => foreign.iter().any(|f| f.dst == route.dst),
        Change::Replace { route, .. } => foreign
            .iter()
            .any(|f| f.dst == route.dst && f.via == Some(route.via)),
        Change::Remove(_) => false,
    }
}

/// Maps a batch report onto the changes: a failed line fails its change; a
/// stop leaves every later change not attempted.
fn outcomes_of(
    target: &SshTarget,
    changes: &[Change],
    script: &Script,
    report: &BatchReport,
) -> Result<Vec<ChangeOutcome>, DriverError> {
    let mut outcomes: Vec<ChangeOutcome> = vec![Ok(()); changes.len()];
    for error in &report.errors {
        match script.owners.get(error.line) {
            Some(Some(index)) => {
                if outcomes[*index].is_ok() {
                    outcomes[*index] = Err(ChangeError::Refused {
                        dst: changes[*index].route().dst,
                        message: error.message.clone(),
                    });
                }
            }
            Some(None) => {
                return Err(output_error(
                    target,
                    "applying a batch",
                    format!(
                        "the router refused {:?}: {}",
                        script.lines[error.line], error.message
                    ),
                ));
            }
            None => {
                return Err(output_error(
                    target,
                    "applying a batch",
                    format!(
                        "the router reported an error on line {} of a {}-line batch: {}",
                        error.line + 1,
                        script.lines.len(),
                        error.message
                    ),
                ));
            }
        }
    }
    if report.stopped
        && let Some(first) = report.errors.iter().map(|e| e.line).min()
    {
        let reason = report
            .errors
            .iter()
            .find(|e| e.line == first)
            .map(|e| e.message.clone())
            .unwrap_or_default();
        // A change's lines are contiguous: any owner after the stop other
        // than the failing change's own lies wholly after it.
        let stopped_in = script.owners.get(first).copied().flatten();
        for owner in script.owners.iter().skip(first + 1) {
            if let Some(index) = *owner
                && Some(index) != stopped_in
                && outcomes[index].is_ok()
            {
                outcomes[index] = Err(ChangeError::NotAttempted {
                    dst: changes[index].route().dst,
                    reason: reason.clone(),
                });
            }
        }
    }
    Ok(outcomes)
}

async fn apply_prompted(
    connection: &Connection,
    target: &SshTarget,
    vendor: &dyn Vendor,
    options: &ApplyOptions,
    changes: &[Change],
    script: &Script,
) -> Result<Vec<ChangeOutcome>, DriverError> {
    let mut terminal = open_terminal(connection, target, vendor).await?;
    let mut failure: Option<(usize, String)> = None;
    for (at, (line, owner)) in script.lines.iter().zip(&script.owners).enumerate() {
        let answer = terminal.send(line, vendor.prompt()).await?;
        let Some(error) = vendor.error_in(&answer) else {
            continue;
        };
        if at >= script.committed_at {
            warn_after_commit(target, line, &error);
            continue;
        }
        match owner {
            Some(index) => {
                failure = Some((*index, error));
                break;
            }
            None => {
                abandon(&mut terminal, vendor, options).await;
                terminal.close().await;
                let message = format!("the router refused {line:?}: {error}");
                if vendor.transactional() {
                    // Nothing was committed: every change failed with it.
                    return Ok(changes
                        .iter()
                        .map(|change| {
                            Err(ChangeError::Refused {
                                dst: change.route().dst,
                                message: message.clone(),
                            })
                        })
                        .collect());
                }
                return Err(output_error(target, "applying a batch", message));
            }
        }
    }
    let Some((failed, error)) = failure else {
        terminal.close().await;
        return Ok(vec![Ok(()); changes.len()]);
    };
    let transactional = vendor.transactional();
    if transactional {
        abandon(&mut terminal, vendor, options).await;
    } else {
        // The lines before the error took effect: leave configuration
        // (and save) as after a whole batch.
        for line in vendor
            .finish(options)
            .into_iter()
            .chain(vendor.after_commit(options))
        {
            let answer = terminal.send(&line, vendor.prompt()).await?;
            if let Some(error) = vendor.error_in(&answer) {
                warn_after_commit(target, &line, &error);
            }
        }
    }
    terminal.close().await;
    let reason = format!("{} was refused: {error}", changes[failed]);
    Ok(changes
        .iter()
        .enumerate()
        .map(|(index, change)| {
            let dst = change.route().dst;
            if index == failed {
                Err(ChangeError::Refused {
                    dst,
                    message: error.clone(),
                })
            } else if index < failed && !transactional {
                Ok(())
            } else {
                Err(ChangeError::NotAttempted {
                    dst,
                    reason: reason.clone(),
                })
            }
        })
        .collect())
}

/// A save or a leave that failed after the changes took effect: they stay
/// applied (and the next batch saves again), so this is no change's failure.
fn warn_after_commit(target: &SshTarget, line: &str, error: &str) {
    tracing::warn!(
        router = %target.router,
        line,
        error,
        "the router refused a line after the changes took effect; they stand"
    );
}

/// Sends the vendor's abort lines; their answers do not matter, since the
/// terminal is closed right after.
async fn abandon(terminal: &mut Terminal, vendor: &dyn Vendor, options: &ApplyOptions) {
    for line in vendor.abort(options) {
        if terminal.send(&line, vendor.prompt()).await.is_err() {
            break;
        }
    }
}

async fn open_terminal(
    connection: &Connection,
    target: &SshTarget,
    vendor: &dyn Vendor,
) -> Result<Terminal, DriverError> {
    let mut terminal = connection.terminal(target).await?;
    terminal.read_to_prompt(vendor.prompt()).await?;
    let settle = vendor.login_settle();
    if !settle.is_zero() {
        terminal.discard_until_quiet(settle).await?;
    }
    for line in vendor.terminal_setup() {
        let answer = terminal.send(&line, vendor.prompt()).await?;
        if let Some(error) = vendor.error_in(&answer) {
            // Closed, not dropped: russh sends no close for a dropped
            // channel, and a shell left open per retry would use up the
            // router's vty lines.
            terminal.close().await;
            return Err(output_error(
                target,
                "setting up the terminal",
                format!("{line:?} was refused: {error}"),
            ));
        }
    }
    Ok(terminal)
}

fn output_error(target: &SshTarget, operation: &'static str, message: String) -> DriverError {
    DriverError::Output {
        router: target.router.clone(),
        operation,
        message,
    }
}

fn describe_status(status: Option<u32>) -> String {
    status.map_or_else(
        || "no exit status".to_owned(),
        |code| format!("status {code}"),
    )
}

/// The end of a command's output, for an error message.
fn last_lines(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
