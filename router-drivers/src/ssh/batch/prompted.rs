//! A batch typed into a terminal, one line at a time, each answered by a
//! prompt before the next is sent: an error stops the batch on the line
//! that caused it, and the fence is looked at before every line.

use std::time::Duration;

use super::{Script, ask, open_terminal, output_error, refusal, refused};
use crate::ssh::redact::redact;
use crate::ssh::session::{Connection, SshTarget};
use crate::ssh::terminal::Terminal;
use crate::ssh::vendor::{ApplyOptions, Vendor};
use crate::{Change, ChangeError, ChangeOutcome, DriverError, Fence, Ownership};

/// One batch, and everything needed to type it.
pub(super) struct Run<'a> {
    pub(super) target: &'a SshTarget,
    pub(super) vendor: &'a dyn Vendor,
    pub(super) options: &'a ApplyOptions,
    pub(super) changes: &'a [Change],
    pub(super) script: &'a Script,
    pub(super) fence: &'a Fence,
    pub(super) ownership: &'a Ownership,
}

/// Where typing the script stopped.
enum Stop {
    /// Every line was answered without an error.
    Done,
    /// The router refused line `at`.
    Refused { at: usize, error: String },
    /// The term ended before line `at` was sent.
    Fenced { at: usize },
    /// Someone else holds the configuration, as the answer to line `at`
    /// says: nothing of ours went in.
    Held { at: usize, message: String },
    /// Line `at` of the finish or after it got no answer in time.
    NoAnswer { at: usize, error: DriverError },
}

impl Run<'_> {
    pub(super) async fn apply(
        &self,
        connection: &Connection,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        let mut terminal = open_terminal(connection, self.target, self.vendor).await?;
        let outcomes = match self.drop_stale_sessions(&mut terminal).await {
            Ok(()) => self.type_lines(&mut terminal, 0).await,
            Err(error) => Err(error),
        };
        let outcomes = match outcomes {
            Ok(Stop::Done) => Ok(vec![Ok(()); self.changes.len()]),
            Ok(Stop::Refused { at, error }) => self.refused(&mut terminal, at, error).await,
            Ok(Stop::Fenced { at }) => Ok(self.fenced(&mut terminal, at).await),
            Ok(Stop::Held { at, message }) => {
                // Refused at entering configuration, there is nothing to
                // leave; at the commit, our own edits are dropped.
                if at >= self.script.begun_at {
                    self.abandon(&mut terminal).await;
                }
                Err(DriverError::HeldByOthers {
                    router: self.target.router.clone(),
                    message: redact(&message).into_owned(),
                })
            }
            Ok(Stop::NoAnswer { at, error }) => self.no_answer(at, error),
            Err(error) => Err(error),
        };
        // Closed, not dropped: russh sends no close for a dropped channel.
        terminal.close().await;
        outcomes
    }

    /// Types the script from line `from` on, until its end, a refusal or
    /// the fence. A refusal after the commit is only a warning: the changes
    /// have taken effect by then.
    async fn type_lines(&self, terminal: &mut Terminal, from: usize) -> Result<Stop, DriverError> {
        for (at, line) in self.script.lines.iter().enumerate().skip(from) {
            if self.fence.is_raised() {
                return Ok(Stop::Fenced { at });
            }
            let answer = match ask(terminal, self.vendor, line, self.timeout_for(at)).await {
                Ok(answer) => answer,
                Err(error @ DriverError::NoAnswer { .. }) if at >= self.script.finish_at => {
                    return Ok(Stop::NoAnswer { at, error });
                }
                Err(error) => return Err(error),
            };
            if let Some(message) = self.vendor.held_by_others(&answer) {
                return Ok(Stop::Held { at, message });
            }
            let Some(error) = refusal(self.vendor, &answer) else {
                continue;
            };
            if self.vendor.already_done(line, &answer) {
                tracing::debug!(router = %self.target.router, line, answer = %redact(&error), "already done");
                continue;
            }
            if at >= self.script.committed_at {
                warn_after_commit(self.target, line, &error);
                continue;
            }
            return Ok(Stop::Refused { at, error });
        }
        Ok(Stop::Done)
    }

    /// How long line `at` may take: a commit or a save may take longer
    /// than a command, as the vendor says.
    fn timeout_for(&self, at: usize) -> Duration {
        let timeouts = &self.target.timeouts;
        let command = timeouts.command;
        if at >= self.script.committed_at {
            timeouts
                .commit
                .unwrap_or_else(|| command.max(self.vendor.save_timeout()))
        } else if at >= self.script.finish_at {
            timeouts
                .commit
                .unwrap_or_else(|| command.max(self.vendor.commit_timeout()))
        } else {
            command
        }
    }

    /// Configuration sessions an earlier batch of ours left pending (a
    /// connection that broke mid-batch) count against the router's limit
    /// until they expire a day later: they are dropped before a batch
    /// opens one more. Only ours, by name; a refusal here is only logged.
    async fn drop_stale_sessions(&self, terminal: &mut Terminal) -> Result<(), DriverError> {
        let Some(query) = self.vendor.pending_sessions_query() else {
            return Ok(());
        };
        let command = self.target.timeouts.command;
        let shown = ask(terminal, self.vendor, query, command).await?;
        for line in self.vendor.drop_stale_sessions(&shown, self.ownership) {
            if self.fence.is_raised() {
                break;
            }
            tracing::info!(router = %self.target.router, line, "dropping a configuration session of ours left pending");
            let answer = ask(terminal, self.vendor, &line, command).await?;
            if let Some(error) = refusal(self.vendor, &answer) {
                tracing::warn!(router = %self.target.router, line, error, "the router refused to drop a pending session");
            }
        }
        Ok(())
    }

    /// A line of the finish, or after it, got no answer in time. Where the
    /// finish is a commit, its outcome is unknown: the error goes up, and
    /// the driver reads the router again to settle each change. Elsewhere
    /// every change had been answered and taken already.
    fn no_answer(&self, at: usize, error: DriverError) -> Result<Vec<ChangeOutcome>, DriverError> {
        let committing = self.vendor.transactional() && at < self.script.committed_at;
        if committing && self.options.commit_confirm.is_some() {
            // A confirmed commit that got no answer is not confirmed by us:
            // whatever it took, the router rolls back by itself, so a read
            // now would show changes that are about to go. Every change
            // failed; the next sync reads the router and settles them.
            let message = format!(
                "{error}; a confirmed commit left unconfirmed is rolled back by the router"
            );
            return Ok(self.every_change(|dst| refused(dst, &message)));
        }
        if committing {
            return Err(error);
        }
        tracing::warn!(
            router = %self.target.router,
            line = %self.script.lines[at],
            error = %error,
            "no answer after the changes took effect; they stand"
        );
        Ok(vec![Ok(()); self.changes.len()])
    }

    async fn refused(
        &self,
        terminal: &mut Terminal,
        at: usize,
        error: String,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        let line = &self.script.lines[at];
        let Some(failed) = self.script.owners[at] else {
            // A line of our own (entering configuration, the commit).
            self.abandon(terminal).await;
            let message = format!("the router refused {line:?}: {error}");
            if self.vendor.transactional() {
                // Nothing was committed: every change failed with it.
                return Ok(self.every_change(|dst| refused(dst, &message)));
            }
            return Err(output_error(self.target, "applying a batch", message));
        };
        let transactional = self.vendor.transactional();
        if transactional {
            self.abandon(terminal).await;
        } else {
            // The lines before the error took effect: leave configuration
            // (and save) as after a whole batch, unless the term ended.
            match self.type_lines(terminal, self.script.finish_at).await? {
                Stop::Fenced { at } if at == self.script.finish_at => self.abandon(terminal).await,
                Stop::Done | Stop::Fenced { .. } => {}
                Stop::Refused { at, error } => {
                    warn_after_commit(self.target, &self.script.lines[at], &error);
                }
                Stop::Held { message, .. } => {
                    warn_after_commit(self.target, "the finish", &message);
                }
                Stop::NoAnswer { at, error } => {
                    warn_after_commit(self.target, &self.script.lines[at], &error.to_string());
                }
            }
        }
        let reason = redact(&format!("{} was refused: {error}", self.changes[failed])).into_owned();
        Ok(self
            .changes
            .iter()
            .enumerate()
            .map(|(index, change)| {
                let dst = change.route().dst;
                if index == failed {
                    Err(refused(dst, &error))
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

    /// The term ended before line `at`: nothing more is typed but the
    /// vendor's way of abandoning a batch, and the changes that did not take
    /// effect are fenced. The next leader lists afresh and settles them.
    async fn fenced(&self, terminal: &mut Terminal, at: usize) -> Vec<ChangeOutcome> {
        if at >= self.script.committed_at {
            // Only the save and leaving configuration were left.
            tracing::warn!(
                router = %self.target.router,
                "the leadership term ended after the commit: the changes stand, the configuration is not saved"
            );
            return vec![Ok(()); self.changes.len()];
        }
        if at > self.script.finish_at {
            // A confirmed commit waits for its confirmation (Junos `commit
            // confirmed`, EOS `commit timer`): left unconfirmed, the router
            // rolls it back by itself, so nothing more is typed.
            tracing::warn!(
                router = %self.target.router,
                "the leadership term ended before the commit was confirmed: the router rolls it back"
            );
        } else {
            tracing::warn!(
                router = %self.target.router,
                line = at,
                lines = self.script.lines.len(),
                "the leadership term ended during a batch: abandoning it"
            );
            self.abandon(terminal).await;
        }
        let transactional = self.vendor.transactional();
        self.changes
            .iter()
            .enumerate()
            .map(|(index, change)| {
                if !transactional && self.script.sent_before(index, at) {
                    Ok(())
                } else {
                    Err(ChangeError::Fenced {
                        dst: change.route().dst,
                    })
                }
            })
            .collect()
    }

    fn every_change(&self, error: impl Fn(ipnet::IpNet) -> ChangeError) -> Vec<ChangeOutcome> {
        self.changes
            .iter()
            .map(|change| Err(error(change.route().dst)))
            .collect()
    }

    /// Sends the vendor's abort lines; their answers do not matter, since
    /// the terminal is closed right after.
    async fn abandon(&self, terminal: &mut Terminal) {
        for line in self.vendor.abort(self.options) {
            let command = self.target.timeouts.command;
            if ask(terminal, self.vendor, &line, command).await.is_err() {
                break;
            }
        }
    }
}

/// A save or a leave that failed after the changes took effect: they stay
/// applied (and the next batch saves again), so this is no change's failure.
fn warn_after_commit(target: &SshTarget, line: &str, error: &str) {
    tracing::warn!(
        router = %target.router,
        line,
        error = %redact(error),
        "the router refused a line after the changes took effect; they stand"
    );
}
