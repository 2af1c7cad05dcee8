//! Watches a network namespace's IPv4 routes as the kernel announces them
//! (RTM_NEWROUTE / RTM_DELROUTE to RTNLGRP_IPV4_ROUTE), so a test or a
//! benchmark learns when a route went in to within the wake-up of one thread
//! instead of the interval of polling `ip route`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use ipnet::Ipv4Net;
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

/// Notifications are queued while the thread sleeps; a burst of thousands
/// of routes (one batch of the driver) must fit, or some are lost.
const RECEIVE_BUFFER_BYTES: usize = 64 << 20;
/// How often (ms) the thread looks up from the socket to see whether to stop.
const STOP_CHECK_MS: i64 = 100;

/// What the monitor has seen of the routes with its protocol.
#[derive(Default)]
struct Seen {
    /// When each destination was first announced.
    first: HashMap<Ipv4Net, Instant>,
    /// The destinations in the table now.
    present: HashSet<Ipv4Net>,
    /// `filled[n - 1]`: when the table first held n of the routes.
    filled: Vec<Instant>,
    /// Notifications the kernel dropped because the socket's buffer was full.
    overruns: usize,
    /// Every route deleted, and when: a withdrawal.
    withdrawn: Vec<(Instant, Ipv4Net)>,
}

impl Seen {
    fn take(&mut self, at: Instant, message: RouteNetlinkMessage, protocol: u8) {
        let (added, route) = match message {
            RouteNetlinkMessage::NewRoute(route) => (true, route),
            RouteNetlinkMessage::DelRoute(route) => (false, route),
            _ => return,
        };
        if u8::from(route.header.protocol) != protocol {
            return;
        }
        let Some(dst) = destination(&route) else {
            return;
        };
        if !added {
            self.present.remove(&dst);
            self.withdrawn.push((at, dst));
            return;
        }
        self.first.entry(dst).or_insert(at);
        if self.present.insert(dst) && self.present.len() > self.filled.len() {
            self.filled.push(at);
        }
    }
}

/// The IPv4 destination of a route message (the default route has none).
fn destination(route: &RouteMessage) -> Option<Ipv4Net> {
    let address = route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(address)) => Some(*address),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Ipv4Net::new(address, route.header.destination_prefix_length).ok()
}

/// A thread in a namespace listening to its route announcements; it stops
/// when the monitor is dropped.
pub struct RouteMonitor {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RouteMonitor {
    /// Starts listening in namespace `netns` (a name under /run/netns) to
    /// the IPv4 routes of `protocol`; returns once subscribed, so every
    /// route added afterwards is seen.
    pub fn start(netns: &str, protocol: u8) -> io::Result<RouteMonitor> {
        let namespace = File::open(format!("/run/netns/{netns}"))
            .map_err(|err| io::Error::new(err.kind(), format!("namespace {netns}: {err}")))?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, subscribed) = mpsc::channel();
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("routes-{netns}"))
                .spawn(move || match subscribe(&namespace) {
                    Ok(socket) => {
                        let _ = ready.send(Ok(()));
                        listen(&socket, &seen, &stop, protocol);
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                    }
                })?
        };
        let monitor = RouteMonitor {
            seen,
            stop,
            thread: Some(thread),
        };
        subscribed.recv().map_err(|_| {
            io::Error::other("the route monitor's thread ended before subscribing")
        })??;
        Ok(monitor)
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every deletion of a route of the protocol seen so far, in order.
    pub fn withdrawals(&self) -> Vec<(Instant, Ipv4Net)> {
        self.seen().withdrawn.clone()
    }

    /// When a route to `dst` was first announced.
    pub fn first_seen(&self, dst: Ipv4Net) -> Option<Instant> {
        self.seen().first.get(&dst).copied()
    }

    /// When the table first held `count` routes of the protocol.
    pub fn filled(&self, count: usize) -> Option<Instant> {
        let index = count.checked_sub(1)?;
        self.seen().filled.get(index).copied()
    }

    /// How many routes of the protocol the table holds now.
    pub fn present(&self) -> usize {
        self.seen().present.len()
    }

    /// How often the kernel dropped announcements: if not zero, the
    /// monitor's picture has holes.
    pub fn overruns(&self) -> usize {
        self.seen().overruns
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs on the monitor's thread: enters the namespace (setns changes only
/// the calling thread) and opens a socket there, subscribed to IPv4 routes.
fn subscribe(namespace: &File) -> io::Result<Socket> {
    setns(namespace, CloneFlags::CLONE_NEWNET)?;
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    socket.add_membership(libc::RTNLGRP_IPV4_ROUTE)?;
    // FORCE: as root, past net.core.rmem_max.
    setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES)?;
    let timeout = TimeVal::milliseconds(STOP_CHECK_MS);
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
    Ok(socket)
}

fn listen(socket: &Socket, seen: &Mutex<Seen>, stop: &AtomicBool, protocol: u8) {
    let mut buffer = vec![0u8; 1 << 20];
    while !stop.load(Ordering::Relaxed) {
        let received = socket.recv(&mut &mut buffer[..], 0);
        let at = Instant::now();
        let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match received {
            Ok(length) => {
                for message in messages(&buffer[..length.min(buffer.len())]) {
                    seen.take(at, message, protocol);
                }
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => seen.overruns += 1,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => {
                eprintln!("route monitor: cannot read the netlink socket: {err}");
                return;
            }
        }
    }
}

/// The route messages of one datagram (several may share it); one that
/// cannot be decoded is skipped, not the rest.
fn messages(mut datagram: &[u8]) -> Vec<RouteNetlinkMessage> {
    let mut out = Vec::new();
    while let Ok(buffer) = NetlinkBuffer::new_checked(datagram) {
        let length = buffer.length() as usize;
        if let Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(inner),
            ..
        }) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[..length])
        {
            out.push(inner);
        }
        // Messages are padded to 4 bytes.
        let padded = (length + 3) & !3;
        if padded == 0 || padded >= datagram.len() {
            break;
        }
        datagram = &datagram[padded..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::netns::Netns;

    fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn routes_of_the_protocol_are_timed_as_they_come_and_go() {
        let netns = Netns::new();
        netns.add_connected_network("gw0", "10.9.0.254/24");
        let monitor = RouteMonitor::start(netns.name(), 203).expect("the monitor starts");
        let before = Instant::now();
        netns.ip("route add 11.1.0.0/24 via 10.9.0.1 proto 203");
        netns.ip("route add 11.2.0.0/24 via 10.9.0.2 proto 203");
        netns.ip("route add 11.3.0.0/24 via 10.9.0.3 proto static");
        let first: Ipv4Net = "11.1.0.0/24".parse().expect("a prefix");
        wait_for("both routes of protocol 203 are seen", || {
            monitor.filled(2).is_some()
        });
        let seen = monitor.first_seen(first).expect("the first route is seen");
        assert!(seen >= before);
        assert!(monitor.filled(1) <= monitor.filled(2));
        assert_eq!(
            monitor.first_seen("11.3.0.0/24".parse().expect("a prefix")),
            None
        );

        netns.ip("route del 11.1.0.0/24 proto 203");
        wait_for("the deleted route is gone", || monitor.present() == 1);
        assert_eq!(
            monitor.first_seen(first),
            Some(seen),
            "the first sighting stays"
        );
        assert_eq!(monitor.overruns(), 0);
    }

    #[test]
    fn a_missing_namespace_is_named_in_the_error() {
        let Err(err) = RouteMonitor::start("nrt-no-such-netns", 203) else {
            panic!("a monitor started in a namespace that does not exist");
        };
        assert!(err.to_string().contains("nrt-no-such-netns"), "{err}");
    }
}
