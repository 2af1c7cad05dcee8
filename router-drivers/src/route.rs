use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A route as nativeroute sees it: a node's subnet via the node's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub dst: IpNet,
    pub via: IpAddr,
}

impl Route {
    pub fn new(dst: IpNet, via: IpAddr) -> Self {
        Self { dst, via }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.dst, self.via)
    }
}

/// What a change does to a router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Add,
    Replace,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Replace => "replace",
            Action::Remove => "remove",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to one route on one router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Install a route the router does not hold.
    Add(Route),
    /// Point an owned route at a new next hop (`old_via` is what the router
    /// holds now), without a moment where the destination is unrouted.
    Replace { route: Route, old_via: IpAddr },
    /// Withdraw an owned route.
    Remove(Route),
}

impl Change {
    pub fn action(&self) -> Action {
        match self {
            Change::Add(_) => Action::Add,
            Change::Replace { .. } => Action::Replace,
            Change::Remove(_) => Action::Remove,
        }
    }

    /// The route as it is after an add or replace, or as it was before a remove.
    pub fn route(&self) -> Route {
        match *self {
            Change::Add(route) | Change::Remove(route) | Change::Replace { route, .. } => route,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Add(route) => write!(f, "add {route}"),
            Change::Replace { route, old_via } => {
                write!(
                    f,
                    "replace {} via {} (was via {old_via})",
                    route.dst, route.via
                )
            }
            Change::Remove(route) => write!(f, "remove {route}"),
        }
    }
}

/// A route inside the pool that nativeroute does not own: reported, never changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignRoute {
    pub dst: IpNet,
    pub via: Option<IpAddr>,
    /// How the router describes it (protocol, device, tag), for the operator.
    pub detail: String,
}

impl fmt::Display for ForeignRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// What a router holds inside the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterRoutes {
    /// Routes that carry nativeroute's mark.
    pub owned: Vec<Route>,
    /// Routes inside the pool without the mark.
    pub foreign: Vec<ForeignRoute>,
}
