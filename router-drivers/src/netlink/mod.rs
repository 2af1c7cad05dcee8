//! The netlink driver: a Linux kernel's routing tables, on this host or in a
//! named network namespace, over two rtnetlink sockets (one to change the
//! kernel, one to read it and hear its announcements).
//!
//! Every route is installed as a route naming a kernel nexthop object
//! (gateway + interface, shared by all routes through that gateway) rather
//! than carrying its own gateway: with one gateway per node, the kernel's
//! plain-route path is quadratic in distinct gateways (notes/lab.md).
//!
//! The socket stays in the namespace it was opened in. Before every list,
//! apply and tidy the driver checks that the router's namespace name still
//! stands for that namespace (device and inode of /run/netns/NAME): one
//! deleted and made again gets a new socket and a fresh read, and a name
//! that stands for nothing is an error rather than writes into a namespace
//! nobody can reach.
//!
//! Ownership is the route protocol: a route in the configured table whose
//! destination is in the pool is ours iff its protocol is ours; our nexthop
//! objects carry the same protocol. Nothing else is ever changed.
//!
//! # Reading a router that carries a full Internet table
//!
//! A gateway with a full BGP table holds about a million routes, of which
//! we want a few thousand; reading them all costs about a second per read.
//! So the kernel is asked for ours only: a route dump with strict checking
//! filtered by table and protocol (see `reader`), which costs it one walk of
//! the table and sends nothing else. What that cannot give is everyone
//! else's routes, and the driver needs some of them to keep its promise
//! never to take or overwrite a route it does not own, and to report
//! foreign routes inside the pool. How each change stays exact:
//!
//! - An add is sent with `NLM_F_EXCL`: the kernel refuses it (EEXIST)
//!   when any route holds the destination at our metric, in the same step
//!   that would add it. Exact without reading anything.
//! - A removal names our protocol and our nexthop object (or gateway): the
//!   kernel matches only our route through that next hop. Exact too.
//! - A replace (`NLM_F_REPLACE`) takes the first route to the destination
//!   at our metric, whoever owns it, so it is sent only when our route is
//!   there and no foreign route sits beside it. That needs knowing the
//!   foreign routes at the destination as of now, which no request can
//!   tell: a dump cannot be filtered by prefix, and a lookup
//!   (`RTM_GETROUTE` with `RTM_F_FIB_MATCH`) shows the one route a packet
//!   would take, through the policy rules, skipping dead next hops. A full
//!   read before each replace, or at each list, is correct but costs that
//!   second each time.
//! - So everyone else's routes that matter (`others`) are read in full
//!   once, and then kept current from the kernel's announcements, heard on
//!   the reading socket; where an announcement cannot say what changed
//!   (an IPv4 route removed unannounced when a link or an address goes, a
//!   replace over a route of others, an overflowing queue)
//!   the picture is read in full again at the next read, and every 15
//!   minutes regardless. A replace reads our routes afresh first, as
//!   before, and hears what others announced up to that moment.
//! - Hearing costs about 1 µs per change of our own (the kernel announces
//!   those too), so only a router with [`HEAR_OTHERS_FROM`] routes of
//!   others or more is heard; a smaller one is read in full at every read,
//!   which there costs under ~25 ms.
//! - Tidy deletes a nexthop object of ours only when no route of ours, no
//!   group and, by the announced count, no route of others uses it; that
//!   count is never below the kernel's.
//!
//! Where the kernel does not filter dumps (before Linux 4.20) every read is
//! a full one, filtered here, and the driver says so once.
//!
//! Layout: `socket` opens the sockets (in the namespace), `batch` sends
//! chunked batches and maps every ack back to its message, `reader` sends
//! dumps and hears announcements on the second socket, `nexthop` is the
//! nexthop message type netlink-packet-route lacks and `message` the
//! socket's message type, `dump` reads the kernel's state, `others` keeps
//! the picture of everyone else's routes, `objects` keeps our nexthop
//! objects, `view` is the picture between reads, and `apply` and `list` are
//! what a driver does.

mod addresses;
mod apply;
mod batch;
mod dump;
mod list;
mod message;
mod nexthop;
mod objects;
mod others;
mod protocols;
mod reader;
mod socket;
mod view;

use async_trait::async_trait;

pub use self::others::HEAR_OTHERS_FROM;
pub use self::protocols::known_route_protocol;

use self::dump::Reading;
use self::others::Others;
use self::socket::Socket;
use self::view::View;
use crate::fence::all_fenced;
use crate::{Change, ChangeOutcome, DriverError, Fence, Ownership, RouterDriver, RouterRoutes};

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
    /// The kernel as last read, kept current from our own changes; `None`
    /// until the first read and after any failure.
    view: Option<View>,
    /// From how many routes of others on they are kept from the kernel's
    /// announcements rather than read in full at every read.
    hear_others_from: usize,
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
            view: None,
            hear_others_from: HEAR_OTHERS_FROM,
        })
    }

    /// Keeps everyone else's routes from the kernel's announcements once
    /// there are `routes` of them or more (default [`HEAR_OTHERS_FROM`]),
    /// and reads them in full at every read below that: `usize::MAX`
    /// always reads in full, 0 always listens. For comparing the two, and
    /// for testing either on a small router.
    pub fn hear_others_from(mut self, routes: usize) -> Self {
        self.hear_others_from = routes;
        self.view = None;
        self
    }

    pub fn config(&self) -> &NetlinkRouter {
        &self.router
    }

    /// The open socket, opened first when there is none, it failed, or
    /// its namespace is no longer the one the router's name stands for
    /// (then the picture of the kernel goes too: it was of the old one).
    async fn socket<'a>(
        slot: &'a mut Option<Socket>,
        view: &mut Option<View>,
        router: &NetlinkRouter,
    ) -> Result<&'a mut Socket, DriverError> {
        if let Some(open) = slot.as_ref() {
            let replaced = open.namespace_replaced();
            if !matches!(replaced, Ok(false)) {
                *slot = None;
                *view = None;
            }
            if let Ok(true) = replaced {
                tracing::warn!(
                    router = %router.name,
                    netns = router.netns.as_deref().unwrap_or_default(),
                    "the network namespace was deleted and made again; opening a socket in the new one"
                );
            }
            replaced?;
        }
        let socket = match slot.take() {
            Some(socket) => socket,
            None => Socket::open(&router.name, router.netns.as_deref()).await?,
        };
        Ok(slot.insert(socket))
    }

    async fn apply_with_view(
        socket: &mut Socket,
        router: &NetlinkRouter,
        view: &mut Option<View>,
        hear_others_from: usize,
        changes: &[Change],
        fence: &Fence,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        let view = match view {
            Some(view) => view,
            None => {
                let others = Others::new(router, hear_others_from);
                let reading = Reading::take(socket, router, others).await?;
                view.insert(View::new(reading, router))
            }
        };
        apply::apply(socket, router, view, changes, fence).await
    }

    /// A socket that failed once (lost acks, closed connection) is not
    /// trusted again.
    fn forget_socket_on_error<T>(&mut self, result: &Result<T, DriverError>) {
        if result.is_err() {
            self.socket = None;
            self.view = None;
        }
    }
}

#[async_trait]
impl RouterDriver for NetlinkDriver {
    fn router(&self) -> &str {
        &self.router.name
    }

    async fn list(&mut self) -> Result<RouterRoutes, DriverError> {
        let socket = Self::socket(&mut self.socket, &mut self.view, &self.router).await?;
        let others = match self.view.take() {
            Some(mut view) => view.take_others(&self.router),
            None => Others::new(&self.router, self.hear_others_from),
        };
        let result = list::list(socket, &self.router, others).await;
        self.forget_socket_on_error(&result);
        let (routes, view) = result?;
        self.view = Some(view);
        Ok(routes)
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
        let socket = Self::socket(&mut self.socket, &mut self.view, &self.router).await?;
        let result = Self::apply_with_view(
            socket,
            &self.router,
            &mut self.view,
            self.hear_others_from,
            changes,
            fence,
        )
        .await;
        self.forget_socket_on_error(&result);
        result
    }

    async fn own_addresses(&mut self) -> Result<Vec<std::net::IpAddr>, DriverError> {
        addresses::own_addresses(&self.router.name, self.router.netns.as_deref()).await
    }

    async fn tidy(&mut self) -> Result<(), DriverError> {
        let has_unused = self
            .view
            .as_ref()
            .is_some_and(|view| !view.unused_nexthops().is_empty());
        if !has_unused {
            return Ok(());
        }
        let socket = Self::socket(&mut self.socket, &mut self.view, &self.router).await?;
        let Some(view) = self.view.as_mut() else {
            return Ok(());
        };
        let result = apply::tidy(socket, &self.router, view).await;
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
