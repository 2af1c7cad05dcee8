//! What differs between router CLIs, as one trait: how to list routes and
//! read the answer, how to write a change, how to enter and leave
//! configuration, save and commit, and how an error looks. Everything else
//! (the SSH session, the order of lines, mapping errors to changes) is the
//! same for all vendors and lives in `apply` and `list`.
//!
//! Renderers take only typed values ([`Change`] holds `IpNet` and `IpAddr`,
//! the tag is a number, names are constants), so nothing a node supplies can
//! become CLI syntax.

use std::time::Duration;

use regex::Regex;

use super::terminal::{EndMarker, LoginQuestion};
use crate::{Change, Ownership, RouterRoutes};

/// How a CLI is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialogue {
    /// One remote command per operation, the whole batch on its standard
    /// input (FRR's vtysh, iproute2): one round trip for any batch size.
    Batch,
    /// A terminal: one line at a time, each answered by a prompt before the
    /// next is sent, so an error stops the batch on the line that caused it.
    Prompted,
}

/// How a batch is to be finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Write the configuration to startup (where the vendor separates them).
    pub save: bool,
    /// Commit with automatic rollback unless confirmed (Junos, EOS).
    pub commit_confirm: Option<Duration>,
    /// A name for this batch's configuration session (EOS).
    pub session_name: String,
}

/// A line of a batch that the router answered with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 0-based index into the lines sent.
    pub line: usize,
    pub message: String,
}

/// What a batch run reported, per line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub errors: Vec<LineError>,
    /// The CLI stopped at the first error: later lines were not run.
    pub stopped: bool,
}

/// One vendor's CLI.
pub trait Vendor: Send + Sync {
    /// The name used in the config (`vendor: frr`).
    fn name(&self) -> &'static str;

    fn dialogue(&self) -> Dialogue;

    /// The default of `cliCommand` (batch vendors: the program started on
    /// the router).
    fn default_cli(&self) -> &'static str {
        ""
    }

    /// Prompted vendors: the prompt, matched against the last line of the
    /// output (escape sequences and carriage returns removed).
    fn prompt(&self) -> &Regex;

    /// The login name to send for `username` (RouterOS reads terminal
    /// options from a suffix).
    fn login_name(&self, username: &str) -> String {
        username.to_owned()
    }

    /// Prompted vendors: how long the terminal must stay quiet after the
    /// first prompt before the first line is sent. For CLIs that print
    /// their prompt twice at login: a late second prompt would otherwise
    /// be taken as the answer to the first line, and every answer after it
    /// would belong to the line before.
    fn login_settle(&self) -> Duration {
        Duration::ZERO
    }

    /// Prompted vendors: what ends a typed line.
    fn enter(&self) -> &'static str {
        "\n"
    }

    /// Prompted vendors: questions the CLI may ask at login before its
    /// first prompt, and how each is answered.
    fn login_questions(&self) -> Vec<LoginQuestion> {
        Vec::new()
    }

    /// Prompted vendors whose prompt cannot end an answer (drawn again at
    /// any moment): the command that marks the end of the n-th answer.
    fn end_marker(&self) -> Option<fn(u64) -> EndMarker> {
        None
    }

    /// Prompted vendors: how long a commit may take, when longer than a
    /// command (the larger of the two is waited for).
    fn commit_timeout(&self) -> Duration {
        Duration::ZERO
    }

    /// Prompted vendors: how long a save (`write memory`) may take, when
    /// longer than a command.
    fn save_timeout(&self) -> Duration {
        Duration::ZERO
    }

    /// Prompted vendors: whether `answer`, which [`Vendor::error_in`]
    /// calls an error, says that `line` found its work done already (a
    /// route to remove that is gone). Such a line counts as taken.
    fn already_done(&self, line: &str, answer: &str) -> bool {
        let _ = (line, answer);
        false
    }

    /// Prompted vendors: whether `answer` says someone else holds the
    /// configuration (uncommitted edits, an exclusive lock, every session
    /// slot), and what it said. Nothing of ours can go in until they are
    /// done, and nothing of theirs may be discarded: the batch is retried
    /// later, as a whole.
    fn held_by_others(&self, answer: &str) -> Option<String> {
        let _ = answer;
        None
    }

    /// Prompted vendors with configuration sessions that outlive a broken
    /// connection (EOS): the command that shows them.
    fn pending_sessions_query(&self) -> Option<&'static str> {
        None
    }

    /// The lines that drop the sessions in `shown` (the answer to
    /// [`Vendor::pending_sessions_query`]) that nativeroute left pending
    /// under this ownership tag; never anyone else's.
    fn drop_stale_sessions(&self, shown: &str, ownership: &Ownership) -> Vec<String> {
        let _ = (shown, ownership);
        Vec::new()
    }

    /// Prompted vendors: a command that changes nothing, typed by
    /// `nativeroute check` where neither the terminal setup nor the
    /// configuration probe types a line (so that Enter, the echo and any
    /// end marker are tried before a batch tries them).
    fn harmless_command(&self) -> Option<&'static str> {
        None
    }

    /// Prompted vendors: lines that enter configuration and leave it
    /// without changing anything, for `nativeroute check`. Empty where
    /// there is no configuration mode.
    fn configuration_probe(&self, options: &ApplyOptions) -> Vec<String> {
        let _ = options;
        Vec::new()
    }

    /// Prompted vendors: lines sent once per terminal before anything else
    /// (paging off).
    fn terminal_setup(&self) -> Vec<String> {
        Vec::new()
    }

    /// Batch vendors: one remote command line; prompted vendors: the lines
    /// typed. Their output, concatenated, goes to [`Vendor::parse_routes`].
    fn list(&self, cli: &str) -> Vec<String>;

    /// Reads the routes inside the pool from the list output: owned (marked
    /// with the ownership tag, name or comment) and foreign.
    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String>;

    /// Lines before the first change (enter configuration).
    fn begin(&self, options: &ApplyOptions) -> Vec<String>;

    /// The lines of one change.
    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String>;

    /// Batch vendors whose CLI carries on after a failed line: the lines of
    /// a change that may run only once its [`Vendor::render`] lines were
    /// taken (the removal of a replaced next hop), sent in an exec of their
    /// own after the batch. A refused new next hop then leaves the old one.
    fn render_once_taken(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let _ = (change, ownership);
        Vec::new()
    }

    /// Lines after the last change that make it take effect (commit, or
    /// leave configuration where every line is live at once).
    fn finish(&self, options: &ApplyOptions) -> Vec<String>;

    /// Prompted vendors: lines after [`Vendor::finish`] (save, leave
    /// configuration). The changes have taken effect by then, so a refusal
    /// here is a warning, not a failed change.
    fn after_commit(&self, options: &ApplyOptions) -> Vec<String> {
        let _ = options;
        Vec::new()
    }

    /// Prompted vendors: lines that abandon the batch after an error.
    fn abort(&self, options: &ApplyOptions) -> Vec<String> {
        let _ = options;
        Vec::new()
    }

    /// Whether writing a route onto one that exists changes the existing
    /// one (a tag or description stamped on it, next hops merged into its
    /// stanza) rather than failing. Then the driver reads the router afresh
    /// before every batch that adds or replaces, to leave foreign routes
    /// written since the last list alone.
    fn writes_merge_into_existing_routes(&self) -> bool {
        true
    }

    /// Whether a removal matches only a route that carries our mark (a
    /// protocol, a comment in the command's filter), so that it can never
    /// take someone else's. Where it does not (a `no` form that ignores
    /// the tag, a delete of a whole stanza), the driver reads the router
    /// afresh before every batch that removes, and removes only what that
    /// read shows as ours.
    fn removals_match_our_mark(&self) -> bool {
        false
    }

    /// Whether changes only take effect at the commit in `finish`, so an
    /// error abandons the whole batch (Junos, VyOS, EOS sessions) rather
    /// than keeping the lines before it.
    fn transactional(&self) -> bool {
        false
    }

    /// Prompted vendors: the error in the answer to one line, if any.
    fn error_in(&self, answer: &str) -> Option<String> {
        let _ = answer;
        None
    }

    /// Batch vendors: the remote command that runs a batch read from its
    /// standard input.
    fn batch_command(&self, cli: &str) -> String {
        let _ = cli;
        String::new()
    }

    /// Batch vendors: which of `lines` failed, from the batch command's
    /// output. `Err` when the output cannot be read at all.
    fn batch_report(
        &self,
        stdout: &str,
        stderr: &str,
        status: Option<u32>,
        lines: &[String],
    ) -> Result<BatchReport, String> {
        let _ = (stdout, stderr, status, lines);
        Ok(BatchReport::default())
    }

    /// Batch vendors: a remote command run after a successful batch when
    /// `saveConfig` is on.
    fn save_command(&self, cli: &str) -> Option<String> {
        let _ = cli;
        None
    }
}

/// A prompt pattern that matches nothing, for batch vendors.
pub fn no_prompt() -> &'static Regex {
    static NEVER: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"[^\s\S]").expect("the empty pattern is a valid regex")
    });
    &NEVER
}
