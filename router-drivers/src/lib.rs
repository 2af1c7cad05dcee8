//! How nativeroute programs routes into routers.
//!
//! A driver knows exactly one router. It lists the routes nativeroute owns
//! there (and, separately, the foreign routes that sit inside the pool), and
//! applies a batch of changes as one unit, reporting what happened to each
//! change. It never decides what should be on the router: the controller does.
//!
//! One module per way of reaching a router: [`netlink`] talks to a Linux
//! kernel (this host's, or a named network namespace) over rtnetlink.

mod error;
pub mod netlink;
mod netns;
mod ownership;
pub mod plugin;
mod route;
pub mod ssh;

pub use error::{ChangeError, DriverError};
pub use ownership::Ownership;
pub use route::{Action, Change, ForeignRoute, Route, RouterRoutes};

use async_trait::async_trait;

/// The outcome of one change of a batch, in the order the changes were given.
pub type ChangeOutcome = Result<(), ChangeError>;

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
    async fn apply(&mut self, changes: &[Change]) -> Result<Vec<ChangeOutcome>, DriverError>;

    /// Housekeeping that the routes do not depend on (objects no route uses
    /// any more). The worker runs it when it has nothing else to do, so that
    /// it never delays a change. Drivers without any have nothing to do.
    async fn tidy(&mut self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Describes how the router was reached, for `nativeroute check`
    /// (namespace, table, host key fingerprint, …).
    fn describe(&self) -> String;
}
