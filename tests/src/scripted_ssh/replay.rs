//! The script's progress, shared by every shell of every connection: which
//! step comes next, what the clients sent and where they left the script.

use super::{Script, Step};

/// What a shell sends back for one line, and whether it then closes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) output: String,
    pub(super) close: bool,
}

/// Sent instead of a prompt when the client leaves the script, so that it
/// fails at once instead of waiting for a prompt that never comes.
const UNEXPECTED_LINE: &str = "% scripted server: unexpected line\r\n";

#[derive(Debug)]
pub(super) struct Replay {
    script: Script,
    next: usize,
    shell_opened: bool,
    received: Vec<String>,
    mismatches: Vec<String>,
}

impl Replay {
    pub(super) fn new(script: Script) -> Self {
        Self {
            script,
            next: 0,
            shell_opened: false,
            received: Vec::new(),
            mismatches: Vec::new(),
        }
    }

    pub(super) fn greeting(&self) -> &str {
        &self.script.greeting
    }

    pub(super) fn received(&self) -> &[String] {
        &self.received
    }

    pub(super) fn mismatches(&self) -> &[String] {
        &self.mismatches
    }

    pub(super) fn finished(&self) -> bool {
        self.next == self.script.steps.len()
    }

    pub(super) fn mismatch(&mut self, problem: String) {
        self.mismatches.push(problem);
    }

    /// A shell started: it takes the next step if that is a `NewShell`. The
    /// very first shell needs none, so a script may begin with a line.
    pub(super) fn open_shell(&mut self) {
        let first = !std::mem::replace(&mut self.shell_opened, true);
        match self.script.steps.get(self.next) {
            Some(Step::NewShell) => {
                self.next += 1;
                self.run_hooks();
            }
            _ if first => {}
            Some(Step::Line { expect, .. }) => {
                let problem = format!("step {}: expected {expect:?}, got a new shell", self.next);
                self.mismatch(problem);
            }
            Some(Step::Call(_)) => {
                let problem = format!("step {}: a hook where a new shell came", self.next);
                self.mismatch(problem);
            }
            None => self.mismatch("a new shell after the script ended".to_owned()),
        }
    }

    /// Runs the hooks that follow the step just taken.
    fn run_hooks(&mut self) {
        while let Some(Step::Call(hook)) = self.script.steps.get(self.next) {
            hook.run();
            self.next += 1;
        }
    }

    /// A line the client typed: the terminal echoes it, then the next step's
    /// reply follows if it is the expected line.
    pub(super) fn line(&mut self, line: &str) -> Answer {
        self.received.push(line.to_owned());
        let mut output = format!("{line}\r\n");
        let problem = match self.script.steps.get(self.next) {
            Some(Step::Line { expect, reply }) if matches_expected(expect, line) => {
                output.push_str(reply);
                // A scripted logout with nothing to say ends the session;
                // one that prints a prompt (leaving config mode) does not.
                let close = reply.is_empty() && is_logout(line);
                self.next += 1;
                self.run_hooks();
                return Answer { output, close };
            }
            // Clients commonly leave a shell this way when they are done.
            _ if is_logout(line) => {
                return Answer {
                    output,
                    close: true,
                };
            }
            Some(Step::Line { expect, .. }) => {
                format!("step {}: expected {expect:?}, got {line:?}", self.next)
            }
            Some(Step::NewShell) => {
                format!("step {}: expected a new shell, got {line:?}", self.next)
            }
            Some(Step::Call(_)) => {
                format!(
                    "step {}: a hook where a line was expected, got {line:?}",
                    self.next
                )
            }
            None => format!("after the script ended, got {line:?}"),
        };
        self.mismatch(problem);
        output.push_str(UNEXPECTED_LINE);
        Answer {
            output,
            close: true,
        }
    }
}

/// Whether `line` is `expect`, each `{word}` in it standing for one word.
fn matches_expected(expect: &str, line: &str) -> bool {
    let mut parts = expect.split("{word}");
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    for part in parts {
        let word_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        if word_len == 0 {
            return false;
        }
        match rest[word_len..].strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

fn is_logout(line: &str) -> bool {
    matches!(line.trim(), "exit" | "quit" | "logout")
}

#[cfg(test)]
mod tests {
    use super::{Answer, Replay, UNEXPECTED_LINE};
    use crate::scripted_ssh::{Script, Step};

    fn replay(steps: Vec<Step>) -> Replay {
        Replay::new(Script {
            greeting: "Router#".to_owned(),
            steps,
        })
    }

    fn line(expect: &str, reply: &str) -> Step {
        Step::Line {
            expect: expect.to_owned(),
            reply: reply.to_owned(),
        }
    }

    #[test]
    fn a_word_placeholder_takes_one_word_and_nothing_else() {
        use super::matches_expected;
        let expect = "configure session {word} commit";
        assert!(matches_expected(
            expect,
            "configure session nativeroute-1111-7 commit"
        ));
        assert!(!matches_expected(expect, "configure session  commit"));
        assert!(!matches_expected(expect, "configure session a b commit"));
        assert!(!matches_expected(expect, "configure session x commit now"));
        assert!(matches_expected("abort", "abort"));
        assert!(!matches_expected("abort", "abort all"));
    }

    #[test]
    fn expected_line_is_echoed_then_answered() {
        let mut replay = replay(vec![Step::NewShell, line("show clock", "12:00\r\nRouter#")]);
        replay.open_shell();
        let answer = replay.line("show clock");
        assert_eq!(answer.output, "show clock\r\n12:00\r\nRouter#");
        assert!(!answer.close);
        assert!(replay.finished());
        assert!(replay.mismatches().is_empty());
    }

    #[test]
    fn off_script_line_is_a_mismatch_that_closes() {
        let mut replay = replay(vec![line("end", "Router#")]);
        replay.open_shell();
        let answer = replay.line("write memory");
        assert_eq!(
            answer,
            Answer {
                output: format!("write memory\r\n{UNEXPECTED_LINE}"),
                close: true
            }
        );
        assert_eq!(
            replay.mismatches(),
            [r#"step 0: expected "end", got "write memory""#]
        );
        assert!(!replay.finished());
    }

    #[test]
    fn unscripted_exit_closes_without_mismatch() {
        let mut replay = replay(vec![]);
        replay.open_shell();
        assert!(replay.line("exit").close);
        assert!(replay.mismatches().is_empty());
        assert_eq!(replay.received(), ["exit"]);
    }

    #[test]
    fn scripted_exit_with_a_prompt_keeps_the_shell() {
        let mut replay = replay(vec![line("exit", "Router#"), line("exit", "")]);
        replay.open_shell();
        assert!(!replay.line("exit").close);
        assert!(replay.line("exit").close);
        assert!(replay.finished());
    }

    #[test]
    fn a_hook_runs_before_the_reply_to_the_line_before_it_leaves() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let mut replay = replay(vec![
            line("a", "#"),
            Step::call(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            line("b", "#"),
        ]);
        replay.open_shell();
        assert_eq!(calls.load(Ordering::SeqCst), 0, "ran before its line");
        let answer = replay.line("a");
        assert_eq!(answer.output, "a\r\n#");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        replay.line("b");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "ran twice");
        assert!(replay.finished());
        assert!(replay.mismatches().is_empty());
    }

    #[test]
    fn second_shell_needs_a_new_shell_step() {
        let mut replay = replay(vec![line("a", "#"), Step::NewShell, line("b", "#")]);
        replay.open_shell();
        replay.open_shell();
        assert_eq!(
            replay.mismatches(),
            [r#"step 0: expected "a", got a new shell"#]
        );
    }
}
