//! An interactive terminal on a router's CLI: send one line, read until the
//! CLI shows its prompt again, and hand back what it answered in between.
//! Network operating systems are made for people at terminals, so this is
//! how their CLIs are driven; one line is answered before the next is sent,
//! so an error is seen on the line that caused it.

use std::time::Duration;

use regex::Regex;
use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::redact::redact;
use super::screen::Screen;
use super::session::SshTarget;
use crate::DriverError;

/// The most a single answer may hold before the router is considered to
/// be looping.
const MAX_ANSWER: usize = 64 << 20;

pub struct Terminal {
    channel: Channel<Msg>,
    target: SshTarget,
    /// Output received and not yet returned, cleaned as it came.
    screen: Screen,
}

impl Terminal {
    pub(super) fn new(channel: Channel<Msg>, target: SshTarget) -> Self {
        Terminal {
            channel,
            target,
            screen: Screen::default(),
        }
    }

    /// Reads until the last line of the output is a prompt; returns the
    /// cleaned output before the prompt.
    pub async fn read_to_prompt(&mut self, prompt: &Regex) -> Result<String, DriverError> {
        let timeout = self.target.timeouts.command;
        match tokio::time::timeout(timeout, self.read_until(prompt)).await {
            Ok(answer) => answer,
            Err(_) => {
                let seen = self.screen.seen();
                let mut tail: Vec<_> = seen.lines().rev().take(3).map(redact).collect();
                tail.reverse();
                Err(self.error(
                    "waiting for the CLI prompt",
                    format!(
                        "no prompt within {timeout:?}; last output: {:?}",
                        tail.join(" | ")
                    ),
                ))
            }
        }
    }

    async fn read_until(&mut self, prompt: &Regex) -> Result<String, DriverError> {
        loop {
            if let Some(answer) = self.screen.take_answer(prompt) {
                return Ok(answer);
            }
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    self.screen.push(&data);
                    if self.screen.received() > MAX_ANSWER {
                        return Err(self.error(
                            "reading the CLI's answer",
                            format!("more than {MAX_ANSWER} bytes without a prompt"),
                        ));
                    }
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    let seen = self.screen.seen();
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
        self.screen.clear();
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
        let mut answer = self.read_to_prompt(prompt).await?;
        drop_echo(&mut answer, line);
        if !answer.trim().is_empty() {
            tracing::debug!(router = %self.target.router, answer = %redact(answer.trim()), "cli");
        }
        Ok(answer)
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

/// The answer without the terminal's echo of the line sent.
fn drop_echo(answer: &mut String, line: &str) {
    let (first, rest) = answer.split_once('\n').unwrap_or((answer, ""));
    if first.trim_end().ends_with(line.trim()) {
        let echo = answer.len() - rest.len();
        answer.drain(..echo);
    }
}

#[cfg(test)]
mod tests {
    use super::drop_echo;

    fn without_echo(answer: &str, line: &str) -> String {
        let mut answer = answer.to_owned();
        drop_echo(&mut answer, line);
        answer
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
        assert_eq!(without_echo("ip route x", "ip route x"), "");
    }
}
