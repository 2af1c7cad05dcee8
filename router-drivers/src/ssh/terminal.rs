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
use super::screen::{NoEcho, Screen};
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
    /// What ends a typed line: most CLIs take "\n"; RouterOS wants "\r\n".
    enter: &'static str,
    /// How many end markers this terminal has asked for (RouterOS).
    markers: u64,
}

/// A question a CLI may ask at login, before its first prompt.
pub struct LoginQuestion {
    /// Matched against the last line of the output.
    pub question: &'static Regex,
    pub reply: LoginReply,
}

pub enum LoginReply {
    /// Enter alone.
    Enter,
    /// One key, without Enter (a `[Y/n]` the CLI reads a key at a time).
    Key(&'static str),
    /// A question nativeroute must not answer (a new password): the login
    /// fails with this explanation.
    Refuse(&'static str),
}

const WAITING_FOR_MARKER: &str = "waiting for the end marker";

/// How many login questions are answered before the CLI is taken to be
/// asking in a loop.
const MAX_LOGIN_QUESTIONS: usize = 4;

/// A command the CLI answers by printing one known line: sent after a
/// line whose answer has no reliable end otherwise.
pub struct EndMarker {
    /// The line typed.
    pub command: String,
    /// The line it prints.
    pub output: String,
}

impl Terminal {
    pub(super) fn new(channel: Channel<Msg>, target: SshTarget) -> Self {
        Terminal {
            channel,
            target,
            screen: Screen::default(),
            enter: "\n",
            markers: 0,
        }
    }

    pub(super) fn set_enter(&mut self, enter: &'static str) {
        self.enter = enter;
    }

    /// Reads to the first prompt after login, answering the questions a
    /// CLI may ask first (a licence to show, Enter to press).
    pub async fn read_login(
        &mut self,
        prompt: &Regex,
        questions: &[LoginQuestion],
    ) -> Result<String, DriverError> {
        let timeout = self.target.timeouts.command;
        for _ in 0..=MAX_LOGIN_QUESTIONS {
            let mut asked = None;
            let greeting = self
                .read_until(timeout, "waiting for the CLI prompt", |screen| {
                    if let Some(found) = questions
                        .iter()
                        .position(|q| screen.last_line_matches(q.question))
                    {
                        asked = Some(found);
                        return Ok(Some(String::new()));
                    }
                    screen.take_answer(prompt)
                })
                .await?;
            let Some(found) = asked else {
                return Ok(greeting);
            };
            let question = self.screen.last_line().trim().to_owned();
            self.screen.clear();
            match questions[found].reply {
                LoginReply::Enter => {
                    tracing::info!(router = %self.target.router, question, "pressing Enter at login");
                    self.write("").await?;
                }
                LoginReply::Key(key) => {
                    tracing::info!(router = %self.target.router, question, key, "answering the CLI at login");
                    self.write_raw(key).await?;
                }
                LoginReply::Refuse(why) => {
                    return Err(
                        self.error("logging in", format!("the CLI asks {question:?}: {why}"))
                    );
                }
            }
        }
        Err(self.error(
            "logging in",
            format!("the CLI asked more than {MAX_LOGIN_QUESTIONS} questions before its prompt"),
        ))
    }

    /// Reads until `done` takes an answer off the screen, within `timeout`.
    async fn read_until(
        &mut self,
        timeout: Duration,
        operation: &'static str,
        mut done: impl FnMut(&mut Screen) -> Result<Option<String>, NoEcho>,
    ) -> Result<String, DriverError> {
        let reading = async {
            loop {
                match done(&mut self.screen) {
                    Ok(Some(answer)) => return Ok(answer),
                    Ok(None) => {}
                    Err(NoEcho) => {
                        return Err(self.error(
                            "reading the CLI's answer",
                            format!(
                                "the CLI did not echo the line sent; last output: {:?}",
                                self.tail()
                            ),
                        ));
                    }
                }
                match self.channel.wait().await {
                    Some(ChannelMsg::Data { data })
                    | Some(ChannelMsg::ExtendedData { data, .. }) => {
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
        };
        match tokio::time::timeout(timeout, reading).await {
            Ok(answer) => answer,
            Err(_) => {
                // Which of the two never came tells an operator where the
                // dialogue broke: the echo (a line ending the CLI does not
                // take) or the prompt after it (a prompt pattern that does
                // not match, or a slow operation).
                let missing = match self.screen.echo_seen() {
                    Ok(false) => "no echo of the line sent",
                    _ if operation == WAITING_FOR_MARKER => "no end marker",
                    _ => "no prompt",
                };
                Err(DriverError::NoAnswer {
                    router: self.target.router.clone(),
                    operation,
                    message: format!(
                        "{missing} within {timeout:?}; last output: {:?}",
                        self.tail()
                    ),
                })
            }
        }
    }

    /// The last lines received, credentials masked, for an error.
    fn tail(&self) -> String {
        let seen = self.screen.seen();
        let mut tail: Vec<_> = seen.lines().rev().take(3).map(redact).collect();
        tail.reverse();
        tail.join(" | ")
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

    /// Sends `line` and returns the CLI's answer to it: what came after its
    /// echo and before the next prompt, within `timeout` (longer than a
    /// command's for a commit or a save).
    pub async fn send_within(
        &mut self,
        line: &str,
        prompt: &Regex,
        timeout: Duration,
    ) -> Result<String, DriverError> {
        self.screen.expect_echo(line);
        self.write(line).await?;
        let answer = self
            .read_until(timeout, "waiting for the CLI prompt", |screen| {
                screen.take_answer(prompt)
            })
            .await?;
        self.log_answer(&answer);
        Ok(answer)
    }

    /// Sends `line`, then, once its echo came, the end marker `marker` asks
    /// for, and returns what came between the echo and the marker's
    /// output, less prompts and echoes drawn again in between. For a CLI
    /// that draws its prompt again and echoes a line twice (RouterOS),
    /// where no prompt can be trusted to end an answer.
    pub async fn send_marked(
        &mut self,
        line: &str,
        prompt: &Regex,
        marker: impl FnOnce(u64) -> EndMarker,
    ) -> Result<String, DriverError> {
        self.markers += 1;
        let marker = marker(self.markers);
        let timeout = self.target.timeouts.command;
        self.screen.expect_echo(line);
        self.write(line).await?;
        self.read_until(timeout, "waiting for the echo", |screen| {
            Ok(screen.echo_seen()?.then(String::new))
        })
        .await?;
        self.write(&marker.command).await?;
        let answer = self
            .read_until(timeout, WAITING_FOR_MARKER, |screen| {
                screen.take_marked_answer(prompt, &marker.output)
            })
            .await?;
        let answer: Vec<&str> = answer
            .lines()
            .filter(|said| {
                let said = said.trim();
                !(prompt.is_match(said)
                    || said.ends_with(line.trim())
                    || said.ends_with(marker.command.trim()))
            })
            .collect();
        let answer = answer.join("\n");
        self.log_answer(&answer);
        Ok(answer)
    }

    async fn write(&mut self, line: &str) -> Result<(), DriverError> {
        tracing::debug!(router = %self.target.router, sent = %redact(line), "cli");
        self.write_raw(&format!("{line}{}", self.enter)).await
    }

    async fn write_raw(&mut self, text: &str) -> Result<(), DriverError> {
        self.channel
            .data_bytes(text.as_bytes().to_vec())
            .await
            .map_err(|err| self.error("sending a line", err.to_string()))
    }

    fn log_answer(&self, answer: &str) {
        if !answer.trim().is_empty() {
            tracing::debug!(router = %self.target.router, answer = %redact(answer.trim()), "cli");
        }
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
