//! The driver's netlink socket, opened in the router's network namespace.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use futures::channel::mpsc::UnboundedReceiver;
use netlink_packet_core::NetlinkMessage;
use netlink_proto::{Connection, ConnectionHandle};
use netlink_sys::{AsyncSocket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::{CloneFlags, setns};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::message::RtnlMessage;
use crate::DriverError;

/// Where `ip netns add` puts its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// What the receive buffer is asked to be. The kernel queues one ack per
/// message of a batch before we read any, and drops acks (the batch then
/// never completes) once the buffer is full, so it must hold a whole chunk.
/// net.core.rmem_max may cap it; chunks are sized to what was granted.
const RECEIVE_BUFFER_BYTES: libc::c_int = 8 << 20;
/// Room one queued ack takes from the receive buffer. Measured on Linux
/// 6.18: 75 capped acks fit in 64 KiB, 80 do not (~850 bytes each); the
/// rest is headroom for refusals carrying the kernel's reason in words.
const RECEIVE_BYTES_PER_ACK: usize = 1536;
const MIN_CHUNK: usize = 64;
/// Also keeps one sendmsg (≈ 100 bytes per message) well under the default
/// socket send buffer.
const MAX_CHUNK: usize = 1000;

pub(super) type Unsolicited = UnboundedReceiver<(NetlinkMessage<RtnlMessage>, SocketAddr)>;

/// One netlink connection to a router's kernel; routes and nexthops share it.
pub(super) struct Socket {
    pub(super) router: String,
    pub(super) handle: ConnectionHandle<RtnlMessage>,
    /// Messages that answer no request; the only one that matters is the
    /// overrun notice saying acks were dropped.
    pub(super) unsolicited: Unsolicited,
    /// How many messages go into one sendmsg.
    pub(super) chunk: usize,
    task: JoinHandle<()>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Socket {
    /// Opens a socket in namespace `netns` (`None`: this process's own).
    pub(super) async fn open(router: &str, netns: Option<&str>) -> Result<Self, DriverError> {
        let namespace = netns.map(|name| namespace_file(router, name)).transpose()?;
        let runtime = Handle::current();
        let (tx, rx) = oneshot::channel();
        let owner = router.to_owned();
        // A netlink socket belongs to the namespace it was created in, for
        // good. setns() changes only the calling thread, so a short-lived
        // thread enters the namespace, creates the socket (with the runtime
        // entered, so it registers with tokio's reactor) and ends; no thread
        // of the runtime ever changes namespace.
        std::thread::Builder::new()
            .name("netlink-netns".to_owned())
            .spawn(move || {
                let _runtime = runtime.enter();
                let _ = tx.send(open_in(&owner, namespace));
            })
            .map_err(|source| DriverError::Socket {
                router: router.to_owned(),
                source,
            })?;
        let opened = rx.await.map_err(|_| DriverError::Socket {
            router: router.to_owned(),
            source: io::Error::other("the thread opening the socket ended without an answer"),
        })??;
        let Opened {
            connection,
            handle,
            unsolicited,
            chunk,
        } = opened;
        Ok(Self {
            router: router.to_owned(),
            handle,
            unsolicited,
            chunk,
            task: tokio::spawn(connection),
        })
    }
}

struct Opened {
    connection: Connection<RtnlMessage>,
    handle: ConnectionHandle<RtnlMessage>,
    unsolicited: Unsolicited,
    chunk: usize,
}

/// A namespace to enter: its name and the open /run/netns file.
struct Namespace {
    name: String,
    file: File,
}

fn namespace_file(router: &str, name: &str) -> Result<Namespace, DriverError> {
    let netns_error = |source| DriverError::Netns {
        router: router.to_owned(),
        netns: name.to_owned(),
        source,
    };
    // A name, not a path: nothing outside /run/netns can be reached through it.
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(netns_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a namespace name (as `ip netns list` shows them)",
        )));
    }
    let path: PathBuf = [NETNS_DIR, name].iter().collect();
    let file = File::open(&path).map_err(|error| {
        netns_error(io::Error::new(
            error.kind(),
            format!("{}: {error}", path.display()),
        ))
    })?;
    Ok(Namespace {
        name: name.to_owned(),
        file,
    })
}

/// Runs on the short-lived thread: enters the namespace, opens the socket.
fn open_in(router: &str, namespace: Option<Namespace>) -> Result<Opened, DriverError> {
    if let Some(namespace) = namespace {
        setns(&namespace.file, CloneFlags::CLONE_NEWNET).map_err(|errno| DriverError::Netns {
            router: router.to_owned(),
            netns: namespace.name.clone(),
            source: errno.into(),
        })?;
    }
    let socket_error = |source| DriverError::Socket {
        router: router.to_owned(),
        source,
    };
    let (mut connection, handle, unsolicited) =
        netlink_proto::new_connection::<RtnlMessage>(NETLINK_ROUTE).map_err(socket_error)?;
    // Every ack is handed to us, so each message of a batch gets exactly one
    // answer, in order.
    connection.set_forward_ack(true);
    let socket = connection.socket_mut().socket_mut();
    // Acks carry only the request's header, not the whole request.
    socket.set_cap_ack(true).map_err(socket_error)?;
    // The kernel's reason for a refusal, in words; nice to have, not needed.
    if let Err(error) = socket.set_ext_ack(true) {
        tracing::debug!(router, %error, "extended netlink acks unavailable");
    }
    socket
        .set_rx_buf_sz(RECEIVE_BUFFER_BYTES)
        .map_err(socket_error)?;
    let granted = socket.get_rx_buf_sz().map_err(socket_error)?;
    let chunk = (granted / RECEIVE_BYTES_PER_ACK).clamp(MIN_CHUNK, MAX_CHUNK);
    tracing::debug!(
        router,
        receive_buffer = granted,
        chunk,
        "netlink socket open"
    );
    Ok(Opened {
        connection,
        handle,
        unsolicited,
        chunk,
    })
}
