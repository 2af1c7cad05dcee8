//! What the router's terminal sends back for a typed line, as SSH channel
//! messages. Message boundaries matter: a driver that reads one message and
//! looks for its prompt there behaves differently when a router (RouterOS,
//! notably) sends the echo, a prompt redraw and the reply separately.

use anyhow::bail;

use super::lines::Ending;

/// How the router's terminal differs from a plain line-echoing one. The
/// default is the plain one: it takes any line ending, echoes the line with
/// "\r\n" in the same message as the reply, and never wraps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TerminalBehaviour {
    /// The only line ending the router acts on: "\r\n", "\r" or "\n"; `None`
    /// takes any. A line with another ending is off script. With "\r\n", a
    /// "\r" at the end of what the client sent waits for the next byte,
    /// since SSH may cut a "\r\n" in two; a client that really ended its
    /// line with a bare "\r" then waits for its prompt until it gives up,
    /// and the mismatch is recorded when its connection ends.
    pub enter: Option<&'static str>,
    /// Sent after the echo of every line that follows the script and before
    /// its reply, each as its own message; `{line}` stands for the typed
    /// line and `{prompt}` for [`prompt`](Self::prompt). RouterOS, for
    /// one, redraws its prompt and the command:
    /// `["\r{prompt}", "\r{prompt}{line}\r\n"]`.
    pub after_echo: Vec<String>,
    /// What `{prompt}` stands for in `after_echo`.
    pub prompt: String,
    /// The terminal's width: the echo, and each `after_echo` chunk with a
    /// `{line}` in it, get a "\r\n" before any character past that many on
    /// one screen line. The echo's count starts at the typed line, not at
    /// the prompt already on screen; a chunk's starts at its beginning and
    /// again after every "\r" or "\n". Escape sequences count as
    /// characters.
    pub wrap_at: Option<usize>,
}

impl TerminalBehaviour {
    /// Rejects settings no terminal has, which would otherwise turn every
    /// line into a mismatch or every character into a line.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if let Some(enter) = self.enter
            && !matches!(enter, "\r\n" | "\r" | "\n")
        {
            bail!(
                "the terminal's enter is {enter:?}; a router takes \"\\r\\n\", \"\\r\" or \"\\n\""
            );
        }
        if self.wrap_at == Some(0) {
            bail!("the terminal wraps at 0 characters; give it a width of at least 1");
        }
        Ok(())
    }

    /// Whether a "\r" that ends a chunk must wait for the next byte: only
    /// where "\r\n" is required, so that a correct client never waits.
    pub(super) fn waits_after_cr(&self) -> bool {
        self.enter == Some("\r\n")
    }

    /// The ending the router takes, when `ending` is not it.
    pub(super) fn refuses(&self, ending: Ending) -> Option<&'static str> {
        self.enter.filter(|&enter| enter != ending.as_str())
    }

    /// The messages for a line that follows the script: echo, redraws,
    /// reply.
    pub(super) fn answer(&self, line: &str, reply: &str) -> Vec<String> {
        let redraws = self
            .after_echo
            .iter()
            .map(|chunk| self.render(chunk, line))
            .collect();
        self.messages(line, redraws, reply)
    }

    /// The messages for a line the router does not act on: the echo and
    /// `tail`, without redraws.
    pub(super) fn echo_then(&self, line: &str, tail: &str) -> Vec<String> {
        self.messages(line, Vec::new(), tail)
    }

    fn messages(&self, line: &str, redraws: Vec<String>, tail: &str) -> Vec<String> {
        let echo = format!("{}\r\n", self.wrap(line));
        // The plain terminal sends one message, as it always has, so that
        // the transcripts written against it keep their meaning.
        if self.after_echo.is_empty() && self.wrap_at.is_none() {
            return vec![echo + tail];
        }
        // An empty message would be a packet no router sends.
        std::iter::once(echo)
            .chain(redraws)
            .chain(std::iter::once(tail.to_owned()))
            .filter(|message| !message.is_empty())
            .collect()
    }

    fn render(&self, chunk: &str, line: &str) -> String {
        // Split on `{line}` first, so that a `{prompt}` typed by the client
        // stays as typed.
        let rendered = chunk
            .split("{line}")
            .map(|part| part.replace("{prompt}", &self.prompt))
            .collect::<Vec<_>>()
            .join(line);
        if chunk.contains("{line}") {
            self.wrap(&rendered)
        } else {
            rendered
        }
    }

    fn wrap(&self, text: &str) -> String {
        match self.wrap_at {
            Some(width) if width > 0 => wrap(text, width),
            _ => text.to_owned(),
        }
    }
}

/// Breaks screen lines longer than `width`, as a dumb terminal does: only
/// when another character comes, so a line exactly `width` long is left
/// alone.
fn wrap(text: &str, width: usize) -> String {
    let mut wrapped = String::with_capacity(text.len());
    let mut column = 0;
    for character in text.chars() {
        if matches!(character, '\r' | '\n') {
            column = 0;
        } else {
            if column == width {
                wrapped.push_str("\r\n");
                column = 0;
            }
            column += 1;
        }
        wrapped.push(character);
    }
    wrapped
}

#[cfg(test)]
mod tests {
    use super::TerminalBehaviour;
    use crate::scripted_ssh::lines::Ending;

    const PROMPT: &str = "[admin@MikroTik] > ";

    fn routeros() -> TerminalBehaviour {
        TerminalBehaviour {
            enter: Some("\r\n"),
            after_echo: vec!["\r{prompt}".to_owned(), "\r{prompt}{line}\r\n".to_owned()],
            prompt: PROMPT.to_owned(),
            wrap_at: None,
        }
    }

    #[test]
    fn the_plain_terminal_sends_echo_and_reply_as_one_message() {
        let plain = TerminalBehaviour::default();
        assert_eq!(
            plain.answer("show clock", "12:00\r\nRouter#"),
            ["show clock\r\n12:00\r\nRouter#"]
        );
        assert_eq!(plain.echo_then("exit", ""), ["exit\r\n"]);
    }

    #[test]
    fn redraws_go_between_echo_and_reply_each_as_its_own_message() {
        assert_eq!(
            routeros().answer("/ip route print", "Flags: X\r\n[admin@MikroTik] > "),
            [
                "/ip route print\r\n",
                "\r[admin@MikroTik] > ",
                "\r[admin@MikroTik] > /ip route print\r\n",
                "Flags: X\r\n[admin@MikroTik] > ",
            ]
        );
    }

    #[test]
    fn a_refused_line_gets_its_echo_without_redraws() {
        assert_eq!(
            routeros().echo_then("/quit", "% off\r\n"),
            ["/quit\r\n", "% off\r\n"]
        );
    }

    #[test]
    fn an_empty_reply_sends_no_empty_message() {
        assert_eq!(routeros().answer("/quit", "").len(), 3);
    }

    #[test]
    fn a_typed_placeholder_is_not_substituted() {
        let terminal = routeros();
        assert_eq!(
            terminal.answer("{prompt}", "")[2],
            format!("\r{PROMPT}{{prompt}}\r\n")
        );
    }

    #[test]
    fn the_echo_wraps_at_the_terminal_width_from_the_start_of_the_line() {
        let terminal = TerminalBehaviour {
            wrap_at: Some(4),
            ..TerminalBehaviour::default()
        };
        assert_eq!(
            terminal.answer("abcdefghij", "#"),
            ["abcd\r\nefgh\r\nij\r\n", "#"]
        );
        // Exactly the width: nothing comes after the last column.
        assert_eq!(terminal.echo_then("abcd", ""), ["abcd\r\n"]);
    }

    #[test]
    fn a_redraw_with_the_line_wraps_counting_the_prompt_and_restarting_at_cr() {
        let terminal = TerminalBehaviour {
            wrap_at: Some(10),
            after_echo: vec!["\r{prompt}".to_owned(), "\r{prompt}{line}\r\n".to_owned()],
            prompt: "[a@R] > ".to_owned(),
            enter: None,
        };
        assert_eq!(
            terminal.answer("/ip route print", "[a@R] > "),
            [
                "/ip route \r\nprint\r\n",
                // No {line}: left as it is.
                "\r[a@R] > ",
                "\r[a@R] > /i\r\np route pr\r\nint\r\n",
                "[a@R] > ",
            ]
        );
    }

    #[test]
    fn only_the_required_ending_is_taken() {
        let terminal = routeros();
        assert_eq!(terminal.refuses(Ending::CrLf), None);
        assert_eq!(terminal.refuses(Ending::Lf), Some("\r\n"));
        assert_eq!(terminal.refuses(Ending::Cr), Some("\r\n"));
        assert_eq!(TerminalBehaviour::default().refuses(Ending::Cr), None);
        assert!(terminal.waits_after_cr());
        let enter_cr = TerminalBehaviour {
            enter: Some("\r"),
            ..TerminalBehaviour::default()
        };
        assert!(!enter_cr.waits_after_cr());
    }

    #[test]
    fn settings_no_terminal_has_are_rejected() {
        for terminal in [
            TerminalBehaviour {
                enter: Some("\n\r"),
                ..TerminalBehaviour::default()
            },
            TerminalBehaviour {
                wrap_at: Some(0),
                ..TerminalBehaviour::default()
            },
        ] {
            assert!(terminal.check().is_err(), "{terminal:?} was accepted");
        }
        assert!(routeros().check().is_ok());
    }
}
