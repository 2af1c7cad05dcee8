//! The driver's netlink sockets, opened in the router's network namespace:
//! one it changes the kernel through, and one it reads the kernel with.

use futures::channel::mpsc::UnboundedReceiver;
use netlink_packet_core::NetlinkMessage;
use netlink_proto::{Connection, ConnectionHandle};
use netlink_sys::{AsyncSocket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::task::JoinHandle;

use super::message::RtnlMessage;
use super::reader::Reader;
use crate::DriverError;
use crate::netns::{Identity, Namespace, create_inside};

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
    /// Dumps, and the kernel's announcements of changes made by others.
    pub(super) reader: Reader,
    /// Messages that answer no request; the only one that matters is the
    /// overrun notice saying acks were dropped.
    pub(super) unsolicited: Unsolicited,
    /// How many messages go into one sendmsg.
    pub(super) chunk: usize,
    /// The named namespace the socket was opened in, and which namespace
    /// that name stood for then; `None` for this process's own.
    namespace: Option<(String, Identity)>,
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
        let namespace = netns
            .map(|name| Namespace::open(router, name))
            .transpose()?;
        let identity = match (netns, &namespace) {
            (Some(name), Some(namespace)) => Some((name.to_owned(), namespace.identity(router)?)),
            _ => None,
        };
        let owner = router.to_owned();
        let opened = create_inside(router, namespace, move || open_in(&owner)).await?;
        let Opened {
            connection,
            handle,
            unsolicited,
            chunk,
            reader,
        } = opened;
        Ok(Self {
            router: router.to_owned(),
            handle,
            reader,
            unsolicited,
            chunk,
            namespace: identity,
            task: tokio::spawn(connection),
        })
    }

    /// Whether the socket's namespace is still the one its name stands
    /// for. A namespace deleted and made again under the same name leaves
    /// the socket in the old one, where every write succeeds and reaches
    /// nothing. `Err` when the name stands for no namespace at all.
    pub(super) fn namespace_replaced(&self) -> Result<bool, DriverError> {
        let Some((name, opened_in)) = &self.namespace else {
            return Ok(false);
        };
        Ok(Identity::of(&self.router, name)? != *opened_in)
    }
}

struct Opened {
    connection: Connection<RtnlMessage>,
    handle: ConnectionHandle<RtnlMessage>,
    unsolicited: Unsolicited,
    chunk: usize,
    reader: Reader,
}

/// Runs inside the router's namespace: opens the sockets.
fn open_in(router: &str) -> Result<Opened, DriverError> {
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
    // Bound now, so that its port is known: the reader ignores the
    // announcements of the changes this socket makes.
    let port = socket.bind_auto().map_err(socket_error)?.port_number();
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
        reader: Reader::open_in(router, port)?,
    })
}
