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
}
