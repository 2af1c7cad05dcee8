//! One run of a plugin: start it (argv, no shell), write the request on its
//! stdin and close it, read its stdout and stderr to the end while it works,
//! and wait for it to exit, all within the router's timeout.
//!
//! The plugin runs in a process group of its own, so that a timeout, the
//! end of the leadership term, or the controller dropping the call, kills
//! whatever it started too: a shell script's `sleep` or `ssh` would
//! otherwise hold the pipes open, and live on.

use std::io::ErrorKind;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

use crate::Fence;

/// More than this on stdout is no answer nativeroute will read.
pub(super) const STDOUT_LIMIT: usize = 64 << 20;
/// The end of stderr that is kept: errors are near the end.
const STDERR_KEPT_BYTES: usize = 64 << 10;
/// Lines of stderr that go into an error message, and at most how many
/// characters of them.
const STDERR_LINES: usize = 20;
const STDERR_CHARS: usize = 4000;
/// How long a killed plugin gets to be reaped before we stop waiting.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// What a plugin that exited successfully wrote.
pub(super) struct Answer {
    pub stdout: Vec<u8>,
    pub stderr: Stderr,
}

/// Why a run failed, and what the plugin said on stderr meanwhile.
pub(super) struct Failure {
    pub message: String,
    pub stderr: Stderr,
    /// The fence was raised while it ran: it was killed for that, not for
    /// anything it did.
    pub fenced: bool,
}

/// The last lines of a plugin's stderr, trimmed.
#[derive(Default)]
pub(super) struct Stderr(String);

impl Stderr {
    fn from_tail(bytes: &[u8], clipped: bool) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.trim().lines().collect();
        let shown = lines.len().min(STDERR_LINES);
        let mut tail = lines[lines.len() - shown..].join("\n");
        let chars = tail.chars().count();
        if chars > STDERR_CHARS {
            tail = tail.chars().skip(chars - STDERR_CHARS).collect();
        }
        if clipped || shown < lines.len() || chars > STDERR_CHARS {
            tail.insert_str(0, "…\n");
        }
        Self(tail)
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// For the end of an error message: the stderr, or nothing if it was empty.
    pub fn suffix(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{}", self.0)
        }
    }
}

/// Runs `command` once with `request` on its stdin; kills it if `fence`
/// is raised before it has finished.
pub(super) async fn run(
    command: &[String],
    request: &[u8],
    timeout: Duration,
    fence: &Fence,
) -> Result<Answer, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure {
            message: "no command is configured".to_owned(),
            stderr: Stderr::default(),
            fenced: false,
        });
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Failure {
            message: not_started(program, &error),
            stderr: Stderr::default(),
            fenced: false,
        })?;
    let mut group = ProcessGroup::of(&child);

    // Outside the exchange, so that what it said before a timeout is kept.
    let mut tail = Tail::default();
    let mut fenced = false;
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, exchange(&mut child, request, &mut tail)) => outcome,
        () = fence.raised() => {
            fenced = true;
            Ok(Err("stopped: this controller's leadership term ended; it was killed".to_owned()))
        }
    };
    let result = match outcome {
        Ok(Ok((status, stdout))) if status.success() => Ok(stdout),
        Ok(Ok((status, _))) => Err(format!("failed ({status})")),
        Ok(Err(message)) => Err(message),
        Err(_) => Err(format!(
            "did not finish within its timeout of {}; it was killed",
            humanize(timeout)
        )),
    };
    if result.is_ok() {
        group.disarm();
    } else {
        group.kill();
        // Reap it, so that no zombie is left; SIGKILL makes that quick.
        let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
    }
    let stderr = tail.into_stderr();
    match result {
        Ok(stdout) => Ok(Answer { stdout, stderr }),
        Err(message) => Err(Failure {
            message,
            stderr,
            fenced,
        }),
    }
}

/// Feeds the request, drains both pipes and waits for the exit, all at
/// once: a plugin may write a long answer before it has read all of a long
/// request, and each pipe holds only so much.
async fn exchange(
    child: &mut Child,
    request: &[u8],
    tail: &mut Tail,
) -> Result<(ExitStatus, Vec<u8>), String> {
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let write = async {
        write_request(stdin, request)
            .await
            .map_err(|error| format!("cannot write the request to its stdin: {error}"))
    };
    let read_stdout = async {
        let Some(stdout) = stdout else {
            return Ok(Vec::new());
        };
        let mut answer = Vec::new();
        stdout
            .take(STDOUT_LIMIT as u64 + 1)
            .read_to_end(&mut answer)
            .await
            .map_err(|error| format!("cannot read its stdout: {error}"))?;
        if answer.len() > STDOUT_LIMIT {
            return Err(format!(
                "wrote more than {} MiB on stdout; no answer is that long",
                STDOUT_LIMIT >> 20
            ));
        }
        Ok(answer)
    };
    let read_stderr = async {
        tail.read_to_end(stderr).await;
        Ok(())
    };
    let wait = async {
        child
            .wait()
            .await
            .map_err(|error| format!("cannot wait for it to exit: {error}"))
    };
    let ((), stdout, (), status) = tokio::try_join!(write, read_stdout, read_stderr, wait)?;
    Ok((status, stdout))
}

async fn write_request(stdin: Option<ChildStdin>, request: &[u8]) -> std::io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    match stdin.write_all(request).await {
        // It exited, or closed stdin, without reading it all: its exit
        // status and answer say whether that was fine.
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
    // Dropping stdin closes it: the plugin sees the end of the request.
}

/// The end of a plugin's stderr, as read so far.
#[derive(Default)]
struct Tail {
    kept: Vec<u8>,
    clipped: bool,
}

impl Tail {
    async fn read_to_end(&mut self, stderr: Option<impl AsyncRead + Unpin>) {
        let Some(mut stderr) = stderr else {
            return;
        };
        let mut chunk = vec![0; 8192];
        // A read error ends stderr: what was read so far is still worth showing.
        while let Ok(read @ 1..) = stderr.read(&mut chunk).await {
            self.kept.extend_from_slice(&chunk[..read]);
            if self.kept.len() > 2 * STDERR_KEPT_BYTES {
                self.keep_last(STDERR_KEPT_BYTES);
            }
        }
    }

    fn keep_last(&mut self, bytes: usize) {
        if self.kept.len() > bytes {
            self.kept.drain(..self.kept.len() - bytes);
            self.clipped = true;
        }
    }

    fn into_stderr(mut self) -> Stderr {
        self.keep_last(STDERR_KEPT_BYTES);
        Stderr::from_tail(&self.kept, self.clipped)
    }
}

fn not_started(program: &str, error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::NotFound => format!(
            "cannot start {program}: no such file, or the interpreter its #! line names is \
             missing; check `command` in the router's config"
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot start {program}: permission denied; it must be executable (chmod 0755) \
             by the user nativeroute runs as"
        ),
        _ => format!("cannot start {program}: {error}"),
    }
}

pub(super) fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// The plugin's process group, killed when a run fails or is dropped
/// half-way, unless the run finished well.
struct ProcessGroup {
    leader: Option<Pid>,
}

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        let leader = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Self { leader }
    }

    fn disarm(&mut self) {
        self.leader = None;
    }

    fn kill(&mut self) {
        if let Some(leader) = self.leader.take() {
            // ESRCH: every process of the group has exited already. (A
            // group id is not handed out again while any member lives, so
            // this reaches the plugin's processes and no one else's.)
            let _ = killpg(leader, Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_its_last_lines_and_says_when_it_was_cut() {
        let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        let stderr = Stderr::from_tail(text.as_bytes(), false);
        assert!(
            stderr.text().starts_with("…\nline 11\n"),
            "{}",
            stderr.text()
        );
        assert!(stderr.text().ends_with("line 30"));
        let short = Stderr::from_tail(b"  oops\n\n", false);
        assert_eq!(short.text(), "oops");
        assert_eq!(Stderr::from_tail(b"\n", false).suffix(), "");
    }

    #[test]
    fn timeouts_read_as_configured() {
        assert_eq!(humanize(Duration::from_secs(30)), "30s");
        assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
    }
}
