//! The netlink driver: a Linux kernel's routing tables, on this host or in a
//! named network namespace, over one rtnetlink socket.
//!
//! Every route is installed as a route naming a kernel nexthop object
//! (gateway + interface, shared by all routes through that gateway) rather
//! than carrying its own gateway: with one gateway per node, the kernel's
//! plain-route path is quadratic in distinct gateways (notes/lab.md).
//!
//! Ownership is the route protocol: a route in the configured table whose
//! destination is in the pool is ours iff its protocol is ours; our nexthop
//! objects carry the same protocol. Nothing else is ever changed.
//!
//! Layout: `socket` opens the socket (in the namespace), `batch` sends dumps
//! and chunked batches and maps every ack back to its message, `nexthop` is
//! the nexthop message type netlink-packet-route lacks and `message` the
//! socket's message type, `dump` reads the kernel's state, `objects` keeps
//! our nexthop objects, and `apply` and `list` are what a driver does.

mod apply;
mod batch;
mod dump;
mod list;
mod message;
mod nexthop;
mod objects;
mod socket;

use async_trait::async_trait;

use self::socket::Socket;
use crate::{Change, ChangeOutcome, DriverError, Ownership, RouterDriver, RouterRoutes};

/// Which kernel, which table, which routes are ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetlinkRouter {
    /// The router's name from the config, for logs and errors.
    pub name: String,
    /// A named network namespace (`ip netns`, /run/netns/NAME); `None` for
    /// this process's own.
    pub netns: Option<String>,
    /// The routing table nativeroute's routes live in (254 is main).
    pub table: u32,
    pub ownership: Ownership,
}

/// A driver for one Linux kernel router, reached over rtnetlink.
pub struct NetlinkDriver {
    router: NetlinkRouter,
    /// `None` after a failure of the socket: the next call opens a new one.
    socket: Option<Socket>,
}

impl NetlinkDriver {
    /// Opens the netlink socket in the router's namespace. A namespace that
    /// does not exist is a [`DriverError::Netns`].
    pub async fn connect(router: NetlinkRouter) -> Result<Self, DriverError> {
        if router.table == 0 {
            return Err(DriverError::Request {
                router: router.name,
                operation: "connecting",
                message: "table 0 is not a routing table (main is 254)".to_owned(),
            });
        }
        let socket = Socket::open(&router.name, router.netns.as_deref()).await?;
        Ok(Self {
            router,
            socket: Some(socket),
        })
    }

    pub fn config(&self) -> &NetlinkRouter {
        &self.router
    }

    async fn socket<'a>(
        slot: &'a mut Option<Socket>,
        router: &NetlinkRouter,
    ) -> Result<&'a mut Socket, DriverError> {
        let socket = match slot.take() {
            Some(socket) => socket,
            None => Socket::open(&router.name, router.netns.as_deref()).await?,
        };
        Ok(slot.insert(socket))
    }

    /// A socket that failed once (lost acks, closed connection) is not
    /// trusted again.
    fn forget_socket_on_error<T>(&mut self, result: &Result<T, DriverError>) {
        if result.is_err() {
            self.socket = None;
        }
    }
}

#[async_trait]
impl RouterDriver for NetlinkDriver {
    fn router(&self) -> &str {
        &self.router.name
    }

    async fn list(&mut self) -> Result<RouterRoutes, DriverError> {
        let socket = Self::socket(&mut self.socket, &self.router).await?;
        let result = list::list(socket, &self.router).await;
        self.forget_socket_on_error(&result);
        result
    }

    async fn apply(&mut self, changes: &[Change]) -> Result<Vec<ChangeOutcome>, DriverError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let socket = Self::socket(&mut self.socket, &self.router).await?;
        let result = apply::apply(socket, &self.router, changes).await;
        self.forget_socket_on_error(&result);
        result
    }

    fn describe(&self) -> String {
        let namespace = match &self.router.netns {
            Some(netns) => format!("network namespace {netns}"),
            None => "this host's network namespace".to_owned(),
        };
        format!(
            "netlink: {namespace}, table {}, routes and nexthops marked proto {}",
            self.router.table, self.router.ownership.netlink_protocol
        )
    }
}
