//! The script's progress, shared by every shell of every connection: which
//! step comes next, what the clients sent and where they left the script.

use super::lines::TypedLine;
use super::terminal::TerminalBehaviour;
use super::{Script, Step};

/// What a shell sends back for one line, and whether it then closes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Answer {
    /// Each one SSH channel data message, in order.
    pub(super) messages: Vec<String>,
    pub(super) close: bool,
}

/// Sent instead of a prompt when the client leaves the script, so that it
/// fails at once instead of waiting for a prompt that never comes.
const UNEXPECTED_LINE: &str = "% scripted server: unexpected line\r\n";

#[derive(Debug)]
pub(super) struct Replay {
    script: Script,
    terminal: TerminalBehaviour,
    next: usize,
    shell_opened: bool,
    received: Vec<String>,
    mismatches: Vec<String>,
}

impl Replay {
    pub(super) fn new(script: Script, terminal: TerminalBehaviour) -> Self {
        Self {
            script,
            terminal,
            next: 0,
            shell_opened: false,
            received: Vec::new(),
            mismatches: Vec::new(),
        }
    }

    pub(super) fn greeting(&self) -> &str {
        &self.script.greeting
    }

    pub(super) fn terminal(&self) -> &TerminalBehaviour {
        &self.terminal
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
    /// reply follows if it is the expected line with the ending the router
    /// takes.
    pub(super) fn line(&mut self, typed: &TypedLine) -> Answer {
        let line = typed.text.as_str();
        self.received.push(line.to_owned());
        // Checked first: the real router would not have taken the line at
        // all, so neither a match nor a logout counts.
        let problem = match self.terminal.refuses(typed.ending) {
            Some(takes) => format!(
                "step {}: {line:?} ended with {:?}, the router takes {takes:?}",
                self.next,
                typed.ending.as_str()
            ),
            None => match self.follow(line) {
                Ok(answer) => return answer,
                Err(problem) => problem,
            },
        };
        self.mismatch(problem);
        Answer {
            messages: self.terminal.echo_then(line, UNEXPECTED_LINE),
            close: true,
        }
    }

    /// Takes the next step for a line with the right ending, or says how
    /// the line leaves the script.
    fn follow(&mut self, line: &str) -> Result<Answer, String> {
        let problem = match self.script.steps.get(self.next) {
            Some(Step::Line { expect, reply }) if matches_expected(expect, line) => {
                let messages = self.terminal.answer(line, reply);
                // A scripted logout with nothing to say ends the session;
                // one that prints a prompt (leaving config mode) does not.
                let close = reply.is_empty() && is_logout(line);
                self.next += 1;
                self.run_hooks();
                return Ok(Answer { messages, close });
            }
            // Clients commonly leave a shell this way when they are done.
            _ if is_logout(line) => {
                return Ok(Answer {
                    messages: self.terminal.echo_then(line, ""),
                    close: true,
                });
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
        Err(problem)
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
    use crate::scripted_ssh::lines::{Ending, TypedLine};
    use crate::scripted_ssh::{Script, Step, TerminalBehaviour};

    fn replay(steps: Vec<Step>) -> Replay {
        replay_on(TerminalBehaviour::default(), steps)
    }

    fn replay_on(terminal: TerminalBehaviour, steps: Vec<Step>) -> Replay {
        let script = Script {
            greeting: "Router#".to_owned(),
            steps,
        };
        Replay::new(script, terminal)
    }

    /// A line as typed with "\r\n", which every terminal takes.
    fn typed(text: &str) -> TypedLine {
        ended(text, Ending::CrLf)
    }

    fn ended(text: &str, ending: Ending) -> TypedLine {
        TypedLine {
            text: text.to_owned(),
            ending,
        }
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
        let answer = replay.line(&typed("show clock"));
        assert_eq!(answer.messages, ["show clock\r\n12:00\r\nRouter#"]);
        assert!(!answer.close);
        assert!(replay.finished());
        assert!(replay.mismatches().is_empty());
    }

    #[test]
    fn off_script_line_is_a_mismatch_that_closes() {
        let mut replay = replay(vec![line("end", "Router#")]);
        replay.open_shell();
        let answer = replay.line(&typed("write memory"));
        assert_eq!(
            answer,
            Answer {
                messages: vec![format!("write memory\r\n{UNEXPECTED_LINE}")],
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
        assert!(replay.line(&typed("exit")).close);
        assert!(replay.mismatches().is_empty());
        assert_eq!(replay.received(), ["exit"]);
    }

    #[test]
    fn scripted_exit_with_a_prompt_keeps_the_shell() {
        let mut replay = replay(vec![line("exit", "Router#"), line("exit", "")]);
        replay.open_shell();
        assert!(!replay.line(&typed("exit")).close);
        assert!(replay.line(&typed("exit")).close);
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
        let answer = replay.line(&typed("a"));
        assert_eq!(answer.messages, ["a\r\n#"]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        replay.line(&typed("b"));
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

    #[test]
    fn a_line_with_an_ending_the_router_does_not_take_is_a_mismatch_that_closes() {
        let crlf = TerminalBehaviour {
            enter: Some("\r\n"),
            ..TerminalBehaviour::default()
        };
        let mut replay = replay_on(crlf, vec![line("a", "#"), line("b", "#"), line("c", "#")]);
        replay.open_shell();
        assert!(!replay.line(&typed("a")).close);
        let answer = replay.line(&ended("b", Ending::Lf));
        assert_eq!(
            answer,
            Answer {
                messages: vec![format!("b\r\n{UNEXPECTED_LINE}")],
                close: true
            }
        );
        assert_eq!(
            replay.mismatches(),
            [r#"step 1: "b" ended with "\n", the router takes "\r\n""#]
        );
        assert_eq!(replay.received(), ["a", "b"]);
    }

    #[test]
    fn a_logout_with_the_wrong_ending_is_a_mismatch_too() {
        let cr = TerminalBehaviour {
            enter: Some("\r"),
            ..TerminalBehaviour::default()
        };
        let mut replay = replay_on(cr, vec![]);
        replay.open_shell();
        assert!(replay.line(&ended("exit", Ending::CrLf)).close);
        assert_eq!(
            replay.mismatches(),
            [r#"step 0: "exit" ended with "\r\n", the router takes "\r""#]
        );
    }

    #[test]
    fn any_ending_is_taken_by_default() {
        let mut replay = replay(vec![line("a", "#"), line("b", "#"), line("c", "#")]);
        replay.open_shell();
        for (text, ending) in [("a", Ending::Cr), ("b", Ending::Lf), ("c", Ending::CrLf)] {
            assert!(!replay.line(&ended(text, ending)).close);
        }
        assert!(replay.finished());
        assert!(replay.mismatches().is_empty());
    }

    #[test]
    fn a_matched_line_is_answered_with_the_terminals_messages() {
        let routeros = TerminalBehaviour {
            enter: Some("\r\n"),
            after_echo: vec!["\r{prompt}".to_owned(), "\r{prompt}{line}\r\n".to_owned()],
            prompt: "> ".to_owned(),
            wrap_at: None,
        };
        let mut replay = replay_on(routeros, vec![line("/ip route print", "Flags\r\n> ")]);
        replay.open_shell();
        assert_eq!(
            replay.line(&typed("/ip route print")).messages,
            [
                "/ip route print\r\n",
                "\r> ",
                "\r> /ip route print\r\n",
                "Flags\r\n> "
            ]
        );
    }
}
