//! Listing and applying through a vendor's CLI, the same for every vendor:
//! the lines come from the [`Vendor`], every error is mapped back to the
//! change whose line caused it, and the changes after a stop are reported
//! as not attempted. `prompted` drives a terminal line by line; `exec`
//! hands a batch CLI the whole script on one exec.
//!
//! The fence is checked before every line typed and before every exec: once
//! the leadership term has ended nothing more is sent (but the vendor's way
//! of abandoning a batch), and the changes not sent are reported as fenced.

mod exec;
mod prompted;

use super::SshRouter;
use super::redact::redact;
use super::session::{Connection, SshTarget};
use super::terminal::Terminal;
use super::vendor::{ApplyOptions, BatchReport, Dialogue, Vendor};
use crate::{Change, ChangeError, ChangeOutcome, DriverError, Fence, RouterRoutes};

/// The lines of a batch, each with the change it belongs to (`None` for
/// entering configuration, commit and the like).
struct Script {
    lines: Vec<String>,
    owners: Vec<Option<usize>>,
    /// The first line after entering configuration.
    begun_at: usize,
    /// The first line of the vendor's `finish` (commit, or leaving
    /// configuration): every change's lines come before it.
    finish_at: usize,
    /// The first line after the commit (`lines.len()` when none follows):
    /// the batch has taken effect before it.
    committed_at: usize,
}

impl Script {
    /// The vendor's lines around `rendered`: each change's index and lines.
    fn new(
        vendor: &dyn Vendor,
        options: &ApplyOptions,
        rendered: impl IntoIterator<Item = (usize, Vec<String>)>,
    ) -> Self {
        let mut script = Script {
            lines: Vec::new(),
            owners: Vec::new(),
            begun_at: 0,
            finish_at: 0,
            committed_at: 0,
        };
        script.push(vendor.begin(options), None);
        script.begun_at = script.lines.len();
        for (index, lines) in rendered {
            script.push(lines, Some(index));
        }
        script.finish_at = script.lines.len();
        script.push(vendor.finish(options), None);
        script.committed_at = script.lines.len();
        script.push(vendor.after_commit(options), None);
        script
    }

    /// Whether any line belongs to a change.
    fn changes_anything(&self) -> bool {
        self.owners.iter().any(Option::is_some)
    }

    fn push(&mut self, lines: Vec<String>, owner: Option<usize>) {
        self.owners.extend(std::iter::repeat_n(owner, lines.len()));
        self.lines.extend(lines);
    }

    /// Whether every line of change `index` comes before line `at`.
    fn sent_before(&self, index: usize, at: usize) -> bool {
        self.owners
            .iter()
            .rposition(|owner| *owner == Some(index))
            .is_none_or(|last| last < at)
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
                let answer = ask(&mut terminal, vendor, command, target.timeouts.command).await?;
                if let Some(error) = refusal(vendor, &answer) {
                    terminal.close().await;
                    return Err(output_error(
                        target,
                        "listing routes",
                        format!("{command:?} was refused: {error}"),
                    ));
                }
                // A running config can be tens of MiB: the first answer
                // becomes the output rather than being copied into it.
                if output.is_empty() {
                    output = answer;
                } else {
                    output.push_str(&answer);
                }
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
    fence: &Fence,
) -> Result<Vec<ChangeOutcome>, DriverError> {
    let vendor = router.vendor.profile();
    let options = ApplyOptions {
        save: router.save_config,
        commit_confirm: router.commit_confirm,
        session_name,
    };
    let rendered = changes
        .iter()
        .map(|change| vendor.render(change, &router.ownership))
        .enumerate();
    let script = Script::new(vendor, &options, rendered);
    match vendor.dialogue() {
        Dialogue::Batch => {
            let run = exec::Run {
                connection,
                target,
                router,
                options: &options,
                changes,
                fence,
            };
            run.apply(&script).await
        }
        Dialogue::Prompted => {
            let run = prompted::Run {
                target,
                vendor,
                options: &options,
                changes,
                script: &script,
                fence,
                ownership: &router.ownership,
            };
            run.apply(connection).await
        }
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
                    outcomes[*index] = Err(refused(changes[*index].route().dst, &error.message));
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
                    reason: redact(&reason).into_owned(),
                });
            }
        }
    }
    Ok(outcomes)
}

/// The first contact of `nativeroute check` with a prompted CLI: the
/// prompt at login, each line of the terminal setup (paging off), and
/// entering and leaving configuration without a change, each a step of its
/// own; every line typed must come back as its echo. A step that fails
/// ends the probe. Batch CLIs have nothing to try beyond the list.
pub(super) async fn probe(
    connection: &Connection,
    target: &SshTarget,
    router: &SshRouter,
    options: &ApplyOptions,
) -> Result<Vec<crate::ProbeStep>, DriverError> {
    use crate::ProbeStep;
    let vendor = router.vendor.profile();
    if vendor.dialogue() == Dialogue::Batch {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    let mut terminal = connection.terminal(target).await?;
    terminal.set_enter(vendor.enter());
    let login = terminal
        .read_login(vendor.prompt(), &vendor.login_questions())
        .await;
    let prompt_step = |result| ProbeStep {
        what: "prompt recognised",
        result,
    };
    if let Err(error) = login {
        steps.push(prompt_step(Err(error.to_string())));
        terminal.close().await;
        return Ok(steps);
    }
    steps.push(prompt_step(Ok(format!(
        "the CLI's prompt after login is one the {vendor} profile knows",
        vendor = vendor.name()
    ))));
    let settle = vendor.login_settle();
    if !settle.is_zero() {
        terminal.discard_until_quiet(settle).await?;
    }
    let groups = [
        ("terminal set up (paging off)", vendor.terminal_setup()),
        (
            "configuration entered and left without a change",
            vendor.configuration_probe(options),
        ),
        (
            "a command that changes nothing answered",
            vendor
                .harmless_command()
                .map(str::to_owned)
                .into_iter()
                .collect(),
        ),
    ];
    let mut echoed = 0;
    for (what, lines) in groups {
        if lines.is_empty() {
            continue;
        }
        let mut result = Ok(format!("{lines:?} accepted"));
        // Whether a line was taken: only then is there a mode to leave.
        let mut taken = false;
        for line in &lines {
            let answer = match ask(&mut terminal, vendor, line, target.timeouts.command).await {
                Ok(answer) => answer,
                Err(error) => {
                    result = Err(format!("{line:?}: {error}"));
                    break;
                }
            };
            echoed += 1;
            if let Some(message) = vendor.held_by_others(&answer) {
                result = Err(format!(
                    "{line:?}: configuration held by someone else: {message}"
                ));
                break;
            }
            if let Some(error) = refusal(vendor, &answer) {
                result = Err(format!("{line:?} was refused: {error}"));
                break;
            }
            taken = true;
        }
        let failed = result.is_err();
        steps.push(ProbeStep { what, result });
        if failed {
            // Leave configuration if the probe got in; answers do not
            // matter, the terminal is closed right after.
            if taken {
                for line in vendor.abort(options) {
                    if ask(&mut terminal, vendor, &line, target.timeouts.command)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
            break;
        }
    }
    if echoed > 0 {
        steps.push(ProbeStep {
            what: "echo seen",
            result: Ok(format!(
                "each of the {echoed} lines typed came back as its echo"
            )),
        });
    }
    terminal.close().await;
    Ok(steps)
}

/// Types `line` and returns the answer, the vendor's way: up to the next
/// prompt after its echo, or up to an end marker where prompts cannot be
/// trusted. `timeout` bounds a line that is not marked.
async fn ask(
    terminal: &mut Terminal,
    vendor: &dyn Vendor,
    line: &str,
    timeout: std::time::Duration,
) -> Result<String, DriverError> {
    match vendor.end_marker() {
        Some(marker) => terminal.send_marked(line, vendor.prompt(), marker).await,
        None => terminal.send_within(line, vendor.prompt(), timeout).await,
    }
}

async fn open_terminal(
    connection: &Connection,
    target: &SshTarget,
    vendor: &dyn Vendor,
) -> Result<Terminal, DriverError> {
    let mut terminal = connection.terminal(target).await?;
    terminal.set_enter(vendor.enter());
    terminal
        .read_login(vendor.prompt(), &vendor.login_questions())
        .await?;
    let settle = vendor.login_settle();
    if !settle.is_zero() {
        terminal.discard_until_quiet(settle).await?;
    }
    for line in vendor.terminal_setup() {
        let answer = ask(&mut terminal, vendor, &line, target.timeouts.command).await?;
        if let Some(error) = refusal(vendor, &answer) {
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

/// An answer nativeroute cannot use. Its message often quotes the router
/// (the end of a failed `show running-config`), so it is redacted here,
/// before it reaches a log or an Event.
fn output_error(target: &SshTarget, operation: &'static str, message: String) -> DriverError {
    DriverError::Output {
        router: target.router.clone(),
        operation,
        message: redact(&message).into_owned(),
    }
}

fn describe_status(status: Option<u32>) -> String {
    status.map_or_else(
        || "no exit status".to_owned(),
        |code| format!("status {code}"),
    )
}

/// The end of a command's output, for an error message or a log, with
/// credentials masked.
fn last_lines(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<_> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| redact(line.trim()))
        .collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// The refusal in a terminal's `answer`, if any, with credentials masked
/// line by line before the vendor joins its lines into one message.
fn refusal(vendor: &dyn Vendor, answer: &str) -> Option<String> {
    let raw = vendor.error_in(answer)?;
    Some(
        vendor
            .error_in(&redact(answer))
            .unwrap_or_else(|| redact(&raw).into_owned()),
    )
}

/// What the router said against one change, with credentials masked.
fn refused(dst: ipnet::IpNet, message: &str) -> ChangeError {
    ChangeError::Refused {
        dst,
        message: redact(message).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn the_end_of_a_failed_command_is_quoted_with_credentials_masked() {
        let stdout = "!\nline vty 0 4\n password 7 0822455D0A16\nend\n";
        let quoted = last_lines("", stdout);
        assert_eq!(quoted, "! | line vty 0 4 | password <redacted> | end");
        let stderr = "% Error: flash full\nsnmp-server community s3cret RO\n";
        assert!(!last_lines(stderr, stdout).contains("s3cret"));
    }
}
