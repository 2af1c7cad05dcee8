//! An interactive terminal on a router's CLI: send one line, read until the
//! CLI shows its prompt again, and hand back what it answered in between.
//! Network operating systems are made for people at terminals, so this is
//! how their CLIs are driven; one line is answered before the next is sent,
//! so an error is seen on the line that caused it.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::redact::redact;
use super::session::SshTarget;
use crate::DriverError;

/// Colour, cursor and title sequences some CLIs write even to a vt100.
static ESCAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")
        .expect("the escape pattern is a valid regex")
});

/// The most a single answer may hold before the router is considered to
/// be looping.
const MAX_ANSWER: usize = 64 << 20;

pub struct Terminal {
    channel: Channel<Msg>,
    target: SshTarget,
    /// Output received and not yet returned.
    pending: Vec<u8>,
}

impl Terminal {
    pub(super) fn new(channel: Channel<Msg>, target: SshTarget) -> Self {
        Terminal {
            channel,
            target,
            pending: Vec::new(),
        }
    }

    /// Reads until the last line of the output is a prompt; returns the
    /// cleaned output before the prompt.
    pub async fn read_to_prompt(&mut self, prompt: &Regex) -> Result<String, DriverError> {
        let timeout = self.target.timeouts.command;
        match tokio::time::timeout(timeout, self.read_until(prompt)).await {
            Ok(answer) => answer,
            Err(_) => {
                let seen = clean(&String::from_utf8_lossy(&self.pending));
                let tail: String = seen
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join(" | ");
                Err(self.error(
                    "waiting for the CLI prompt",
                    format!(
                        "no prompt within {timeout:?}; last output: {:?}",
                        redact(&tail)
                    ),
                ))
            }
        }
    }

    async fn read_until(&mut self, prompt: &Regex) -> Result<String, DriverError> {
        loop {
            if let Some(answer) = self.take_answer(prompt) {
                return Ok(answer);
            }
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    self.pending.extend_from_slice(&data);
                    if self.pending.len() > MAX_ANSWER {
                        return Err(self.error(
                            "reading the CLI's answer",
                            format!("more than {MAX_ANSWER} bytes without a prompt"),
                        ));
                    }
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    let seen = clean(&String::from_utf8_lossy(&self.pending));
                    return Err(self.error(
                        "reading the CLI's answer",
                        format!(
                            "the router closed the terminal; last output: {:?}",
                            redact(seen.trim())
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }

    /// The answer, if the output so far ends in a prompt.
    fn take_answer(&mut self, prompt: &Regex) -> Option<String> {
        let text = clean(&String::from_utf8_lossy(&self.pending));
        let (before, last_line) = match text.rfind('\n') {
            Some(at) => (&text[..at], &text[at + 1..]),
            None => ("", text.as_str()),
        };
        if !prompt.is_match(last_line) {
            return None;
        }
        let answer = before.to_owned();
        self.pending.clear();
        Some(answer)
    }

    /// Drops whatever the CLI sends until it has been quiet for `quiet`
    /// (bounded by the command timeout).
    pub async fn discard_until_quiet(&mut self, quiet: Duration) -> Result<(), DriverError> {
        let timeout = self.target.timeouts.command;
        let drained = tokio::time::timeout(timeout, async {
            loop {
                match tokio::time::timeout(quiet, self.channel.wait()).await {
                    Err(_) => return Ok(()),
                    Ok(Some(ChannelMsg::Eof | ChannelMsg::Close) | None) => {
                        return Err(self.error(
                            "waiting for the CLI to settle",
                            "the router closed the terminal after login".to_owned(),
                        ));
                    }
                    Ok(Some(_)) => {}
                }
            }
        })
        .await;
        self.pending.clear();
        drained.unwrap_or_else(|_| {
            Err(self.error(
                "waiting for the CLI to settle",
                format!("it kept writing for {timeout:?} after login"),
            ))
        })
    }

    /// Sends `line` and returns the CLI's answer to it, without the echo of
    /// the line and without the prompt.
    pub async fn send(&mut self, line: &str, prompt: &Regex) -> Result<String, DriverError> {
        tracing::debug!(router = %self.target.router, sent = %redact(line), "cli");
        self.channel
            .data_bytes(format!("{line}\n").into_bytes())
            .await
            .map_err(|err| self.error("sending a line", err.to_string()))?;
        let answer = self.read_to_prompt(prompt).await?;
        let answer = without_echo(&answer, line);
        if !answer.trim().is_empty() {
            tracing::debug!(router = %self.target.router, answer = %redact(answer.trim()), "cli");
        }
        Ok(answer.to_owned())
    }

    /// Ends the terminal. Closing the channel ends the CLI session on every
    /// vendor, wherever it was, without vendor-specific logout lines.
    pub async fn close(mut self) {
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
        // Drain briefly, so the router sees an orderly close.
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while self.channel.wait().await.is_some() {}
        })
        .await;
    }

    fn error(&self, operation: &'static str, message: String) -> DriverError {
        DriverError::Session {
            router: self.target.router.clone(),
            operation,
            message,
        }
    }
}

/// Terminal output as text: no escape sequences, no carriage returns, no
/// backspaced characters.
fn clean(raw: &str) -> String {
    let text = ESCAPES.replace_all(raw, "");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\0' | '\x07' => {}
            '\x08' => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// The answer without the terminal's echo of the line sent.
fn without_echo<'a>(answer: &'a str, line: &str) -> &'a str {
    let (first, rest) = answer.split_once('\n').unwrap_or((answer, ""));
    if first.trim_end().ends_with(line.trim()) {
        rest
    } else {
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::{clean, without_echo};

    #[test]
    fn escapes_and_carriage_returns_are_removed() {
        assert_eq!(
            clean("\x1b[9999B\x1b[1;32mrouter\x1b[0m# show\r\n"),
            "router# show\n"
        );
        assert_eq!(clean("ab\x08c"), "ac");
    }

    #[test]
    fn the_echo_is_dropped_only_when_it_is_the_line_sent() {
        assert_eq!(
            without_echo("ip route x\n% Invalid input\n", "ip route x"),
            "% Invalid input\n"
        );
        assert_eq!(
            without_echo("% Invalid input\n", "ip route x"),
            "% Invalid input\n"
        );
    }
}
