use std::net::IpAddr;

use ipnet::IpNet;

/// A failure of a router as a whole: nothing in the batch can be assumed done.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("router {router}: network namespace {netns:?} cannot be entered: {source}")]
    Netns {
        router: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("router {router}: cannot open a netlink socket: {source}")]
    Socket {
        router: String,
        #[source]
        source: std::io::Error,
    },
    #[error("router {router}: {operation} failed: {message}")]
    Request {
        router: String,
        operation: &'static str,
        message: String,
    },
    /// The router could not be reached (TCP, SSH handshake, timeouts).
    #[error("router {router}: cannot reach {address}: {message}")]
    Connect {
        router: String,
        address: String,
        message: String,
    },
    /// The router's host key is unknown or changed: the connection was
    /// closed before anything was sent.
    #[error("router {router}: host key of {address} refused: {message}")]
    HostKey {
        router: String,
        address: String,
        message: String,
    },
    /// The router refused our credentials, or they could not be read.
    #[error("router {router}: login as {username:?} failed: {message}")]
    Auth {
        router: String,
        username: String,
        message: String,
    },
    /// The session broke or a command did not answer in time; the next call
    /// connects again.
    #[error("router {router}: {operation}: {message}")]
    Session {
        router: String,
        operation: &'static str,
        message: String,
    },
    /// A line sent got no answer in time: what it started (a commit) may
    /// or may not have taken effect.
    #[error("router {router}: {operation}: {message}")]
    NoAnswer {
        router: String,
        operation: &'static str,
        message: String,
    },
    /// Someone else holds the router's configuration (uncommitted edits,
    /// an exclusive lock, every configuration session): nothing was
    /// changed, and nothing of theirs was discarded.
    #[error("router {router}: configuration held by someone else: {message}")]
    HeldByOthers { router: String, message: String },
    /// The router answered something nativeroute cannot read.
    #[error("router {router}: cannot read the answer to {operation}: {message}")]
    Output {
        router: String,
        operation: &'static str,
        message: String,
    },
    /// A plugin failed as a whole (did not start, exited non-zero, bad JSON,
    /// timed out).
    #[error("router {router}: plugin {command}: {message}")]
    Plugin {
        router: String,
        command: String,
        message: String,
    },
}

/// Why one change of a batch did not take effect. The rest of the batch is
/// unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "next hop {via} for {dst} is not on-link on this router: no connected network contains it"
    )]
    NextHopNotOnLink { dst: IpNet, via: IpAddr },
    #[error("{dst} is already routed on this router by a route nativeroute does not own")]
    ForeignRouteInTheWay { dst: IpNet },
    #[error("the router refused {dst}: {message}")]
    Refused { dst: IpNet, message: String },
    /// An earlier change of the same batch failed and the batch stopped
    /// before this one was sent.
    #[error("{dst} was not sent: the batch stopped at an earlier error ({reason})")]
    NotAttempted { dst: IpNet, reason: String },
    /// The leadership term ended before this change was sent; the next
    /// leader's fresh list settles it.
    #[error("{dst} was not sent: this controller's leadership term ended")]
    Fenced { dst: IpNet },
}
