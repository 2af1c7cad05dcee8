//! How nativeroute programs routes into routers.
//!
//! A driver knows exactly one router. It lists the routes nativeroute owns
//! there (and, separately, the foreign routes that sit inside the pool), and
//! applies a batch of changes as one unit, reporting what happened to each
//! change. It never decides what should be on the router: the controller does.
//!
//! One module per way of reaching a router: [`netlink`] talks to a Linux
//! kernel (this host's, or a named network namespace) over rtnetlink,
//! [`ssh`] to a router's CLI, [`plugin`] to an executable, and [`bgp`]
//! announces the routes over a BGP session.

pub mod bgp;
mod error;
mod fence;
pub mod netlink;
mod netns;
mod ownership;
pub mod plugin;
mod route;
pub mod ssh;

pub use error::{ChangeError, DriverError};
pub use fence::Fence;
pub use ownership::Ownership;
pub use route::{Action, Change, ForeignRoute, Route, RouterRoutes};

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

/// The outcome of one change of a batch, in the order the changes were given.
pub type ChangeOutcome = Result<(), ChangeError>;

/// One step of a first contact with a router (`nativeroute check`): what
/// was tried, and what came of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeStep {
    pub what: &'static str,
    /// `Ok` with what was seen, `Err` with what went wrong.
    pub result: Result<String, String>,
}

/// One router, reached one way.
#[async_trait]
pub trait RouterDriver: Send {
    /// The router's name from the config, for logs and errors.
    fn router(&self) -> &str;

    /// Lists the routes nativeroute owns on the router, and the foreign
    /// routes whose destination lies inside the pool.
    async fn list(&mut self) -> Result<RouterRoutes, DriverError>;

    /// Applies `changes` as one batch. Returns one outcome per change, in
    /// order; `Err` only when the batch as a whole could not be attempted
    /// (router unreachable, session lost), in which case nothing can be
    /// assumed about which changes took effect.
    ///
    /// Nothing is sent once `fence` is raised: a batch that has not started
    /// does not start, and one under way sends no further step; the changes
    /// not sent come back as [`ChangeError::Fenced`]. A vendor with a
    /// confirmed commit does not confirm a commit once the fence is raised,
    /// so that the router rolls it back by itself.
    async fn apply_fenced(
        &mut self,
        changes: &[Change],
        fence: &Fence,
    ) -> Result<Vec<ChangeOutcome>, DriverError>;

    /// [`RouterDriver::apply_fenced`] outside any leadership term.
    async fn apply(&mut self, changes: &[Change]) -> Result<Vec<ChangeOutcome>, DriverError> {
        self.apply_fenced(changes, &Fence::never()).await
    }

    /// The router's own addresses, where the driver can know them: a route
    /// via one of them would point the router at itself. Empty when the
    /// driver cannot tell.
    async fn own_addresses(&mut self) -> Result<Vec<IpAddr>, DriverError> {
        Ok(Vec::new())
    }

    /// Housekeeping that the routes do not depend on (objects no route uses
    /// any more). The worker runs it when it has nothing else to do, so that
    /// it never delays a change. Drivers without any have nothing to do.
    async fn tidy(&mut self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Tries, step by step and without changing anything, what a batch
    /// needs from the router's CLI (its prompt, paging off, the echo,
    /// entering and leaving configuration), so that a first contact says
    /// what is wrong before a batch is sent. Empty for drivers with no CLI
    /// dialogue to try.
    async fn probe(&mut self) -> Result<Vec<ProbeStep>, DriverError> {
        Ok(Vec::new())
    }

    /// Notified when the router's side changed without the controller (a
    /// BGP session went down, the router sent routes), so that the worker
    /// looks again at once rather than at the next resync. `None` for
    /// drivers that only learn by listing.
    fn changes_on_its_own(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Describes how the router was reached, for `nativeroute check`
    /// (namespace, table, host key fingerprint, …).
    fn describe(&self) -> String;
}
