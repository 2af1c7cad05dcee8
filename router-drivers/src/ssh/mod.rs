//! The SSH driver: a router's own CLI, reached over SSH.
//!
//! One session layer serves every vendor: `session` connects (host key
//! checked against known_hosts before anything is sent, public-key login,
//! keepalive, timeouts), `terminal` drives an interactive CLI line by line
//! (`screen` turns what it writes into text, as it arrives),
//! and `batch` turns a batch of changes into the vendor's lines, runs them
//! and maps every error back to its change. What differs between vendors
//! is data plus small parsers, one file each under `vendors/`, behind the
//! [`Vendor`] trait.

mod batch;
mod fresh_list;
mod host_keys;
mod redact;
mod screen;
mod session;
mod terminal;
mod vendor;
pub mod vendors;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

pub use self::host_keys::HostKeyPolicy;
pub use self::session::Timeouts;
pub use self::terminal::{EndMarker, LoginQuestion, LoginReply};
pub use self::vendor::{ApplyOptions, BatchReport, Dialogue, LineError, Vendor};
pub use self::vendors::VendorName;

use self::fresh_list::Screened;
use self::session::{Connection, SshTarget};
use crate::fence::all_fenced;
use crate::{
    Change, ChangeError, ChangeOutcome, DriverError, Fence, Ownership, RouterDriver, RouterRoutes,
};

/// One router reached over SSH, as the config describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshRouter {
    /// The router's name from the config, for logs and errors.
    pub name: String,
    pub vendor: VendorName,
    /// Host name or address.
    pub host: String,
    pub port: u16,
    /// Connect from this network namespace (a management namespace);
    /// `None` for the controller's own.
    pub netns: Option<String>,
    pub username: String,
    pub private_key_file: PathBuf,
    pub host_keys: HostKeyPolicy,
    /// Write the configuration to startup after each batch.
    pub save_config: bool,
    /// Junos and EOS: commit with automatic rollback unless confirmed
    /// within this time.
    pub commit_confirm: Option<Duration>,
    /// How to start the CLI on the router (batch vendors); `None` for the
    /// vendor's default.
    pub cli_command: Option<String>,
    pub timeouts: Timeouts,
    pub ownership: Ownership,
}

impl SshRouter {
    fn target(&self) -> SshTarget {
        SshTarget {
            router: self.name.clone(),
            host: self.host.clone(),
            port: self.port,
            netns: self.netns.clone(),
            username: self.vendor.profile().login_name(&self.username),
            private_key_file: self.private_key_file.clone(),
            host_keys: self.host_keys.clone(),
            timeouts: self.timeouts,
        }
    }

    fn cli(&self) -> &str {
        self.cli_command
            .as_deref()
            .unwrap_or_else(|| self.vendor.profile().default_cli())
    }
}

/// A driver for one router's CLI over one persistent SSH connection.
pub struct SshDriver {
    router: SshRouter,
    target: SshTarget,
    /// `None` until the first call and after the connection broke: the next
    /// call connects again.
    connection: Option<Connection>,
    /// The host key fingerprint verified on the last connect.
    fingerprint: Option<String>,
}

/// Batches started by any driver of this process: with the time, it keeps
/// configuration session names (EOS) apart even across a driver made anew
/// within the same millisecond after an error.
static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SshDriver {
    /// Connects and logs in, so that a wrong address, host key or key is
    /// reported at once.
    pub async fn connect(router: SshRouter) -> Result<Self, DriverError> {
        let target = router.target();
        let mut driver = SshDriver {
            router,
            target,
            connection: None,
            fingerprint: None,
        };
        connected(
            &mut driver.connection,
            &driver.target,
            &mut driver.fingerprint,
        )
        .await?;
        Ok(driver)
    }

    pub fn config(&self) -> &SshRouter {
        &self.router
    }

    /// The fingerprint of the host key verified on the last connect.
    pub fn host_key_fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// A fresh configuration session name per batch (EOS): a committed
    /// session keeps its name, and EOS names every session uniquely, so a
    /// name is never entered twice: the Unix time in milliseconds and the
    /// process's batch count. The tag keeps two controllers apart.
    fn next_session_name(&self) -> String {
        let batch = BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        format!(
            "nativeroute-{}-{millis}-{batch}",
            self.router.ownership.route_tag
        )
    }

    /// Reads the router afresh before a batch where the vendor needs it
    /// (`fresh_list`), and screens every change against that read.
    async fn screen(&mut self, changes: &[Change]) -> Result<Vec<Screened>, DriverError> {
        let vendor = self.router.vendor.profile();
        if !fresh_list::needed(vendor, changes) {
            return Ok(changes.iter().copied().map(Screened::Send).collect());
        }
        let listed = {
            let connection =
                connected(&mut self.connection, &self.target, &mut self.fingerprint).await?;
            batch::list(connection, &self.target, &self.router).await
        };
        self.forget_connection_on_error(&listed);
        let listed = listed?;
        Ok(changes
            .iter()
            .map(|change| fresh_list::screen(vendor, &listed, change))
            .collect())
    }

    /// One batch, in one session of its own.
    async fn send(
        &mut self,
        changes: &[Change],
        fence: &Fence,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let session_name = self.next_session_name();
        let result = {
            let connection =
                connected(&mut self.connection, &self.target, &mut self.fingerprint).await?;
            batch::apply(
                connection,
                &self.target,
                &self.router,
                changes,
                session_name,
                fence,
            )
            .await
        };
        self.forget_connection_on_error(&result);
        match result {
            Err(DriverError::NoAnswer { message, .. }) => {
                self.settle_unanswered(changes, &message).await
            }
            other => other,
        }
    }

    /// A batch got no answer in time, and which of its changes took effect
    /// is unknown (a commit still running, or done just after the timeout):
    /// the router, read again on a new connection, tells. A read that
    /// fails leaves the batch failed as a whole.
    async fn settle_unanswered(
        &mut self,
        changes: &[Change],
        why: &str,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        tracing::warn!(router = %self.router.name, why, "a batch got no answer in time; reading the router to see what it took");
        let listed = self.list().await?;
        Ok(changes
            .iter()
            .map(|change| fresh_list::settle_unanswered(&listed, change, why))
            .collect())
    }

    /// A connection that failed once is not trusted again: a CLI left
    /// half-way through a batch may be in any mode.
    fn forget_connection_on_error<T>(&mut self, result: &Result<T, DriverError>) {
        if let Err(err) = result
            && !matches!(err, DriverError::Output { .. })
        {
            self.connection = None;
        }
    }
}

#[async_trait]
impl RouterDriver for SshDriver {
    fn router(&self) -> &str {
        &self.router.name
    }

    async fn list(&mut self) -> Result<RouterRoutes, DriverError> {
        let connection =
            connected(&mut self.connection, &self.target, &mut self.fingerprint).await?;
        let result = batch::list(connection, &self.target, &self.router).await;
        self.forget_connection_on_error(&result);
        result
    }

    async fn apply_fenced(
        &mut self,
        changes: &[Change],
        fence: &Fence,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if fence.is_raised() {
            return Ok(all_fenced(changes));
        }
        let screened = self.screen(changes).await?;
        let to_send: Vec<Change> = screened
            .iter()
            .filter_map(|screened| match screened {
                Screened::Send(change) => Some(*change),
                Screened::Settled(_) => None,
            })
            .collect();
        let mut sent = self.send(&to_send, fence).await?.into_iter();
        Ok(screened
            .into_iter()
            .zip(changes)
            .map(|(screened, change)| match screened {
                Screened::Settled(outcome) => outcome,
                Screened::Send(_) => sent.next().unwrap_or_else(|| {
                    Err(ChangeError::NotAttempted {
                        dst: change.route().dst,
                        reason: "the batch reported no outcome for it".to_owned(),
                    })
                }),
            })
            .collect())
    }

    async fn probe(&mut self) -> Result<Vec<crate::ProbeStep>, DriverError> {
        let options = ApplyOptions {
            save: false,
            commit_confirm: None,
            session_name: self.next_session_name(),
        };
        let connection =
            connected(&mut self.connection, &self.target, &mut self.fingerprint).await?;
        let result = batch::probe(connection, &self.target, &self.router, &options).await;
        self.forget_connection_on_error(&result);
        result
    }

    /// The address nativeroute logs in to, when the config gives one: a
    /// router's other addresses are not known without vendor parsing.
    async fn own_addresses(&mut self) -> Result<Vec<std::net::IpAddr>, DriverError> {
        Ok(self.router.host.parse().into_iter().collect())
    }

    fn describe(&self) -> String {
        let host_key = match &self.fingerprint {
            Some(fingerprint) => format!(
                "host key {fingerprint} verified against {}",
                self.router.host_keys.known_hosts_file.display()
            ),
            None => "not connected".to_owned(),
        };
        format!(
            "ssh: {} CLI at {} as {}, {host_key}, routes marked {}",
            self.router.vendor,
            self.target.address(),
            self.router.username,
            self.router.vendor.ownership_mark(&self.router.ownership)
        )
    }
}

/// The open connection, connecting first when there is none or it broke.
async fn connected<'a>(
    slot: &'a mut Option<Connection>,
    target: &SshTarget,
    fingerprint: &mut Option<String>,
) -> Result<&'a Connection, DriverError> {
    if slot.as_ref().is_some_and(Connection::is_closed) {
        tracing::info!(router = %target.router, "ssh connection lost; connecting again");
        *slot = None;
    }
    let connection = match slot.take() {
        Some(connection) => connection,
        None => {
            let connection = Connection::open(target).await?;
            *fingerprint = connection.host_key_fingerprint().map(str::to_owned);
            connection
        }
    };
    Ok(slot.insert(connection))
}

impl Drop for SshDriver {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { connection.close().await });
        }
    }
}
