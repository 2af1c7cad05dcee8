//! The driver's second socket, the one it reads the kernel with: dumps,
//! parsed in place from the receive buffer (a million routes do not become
//! a million allocations), and the kernel's announcements of what others
//! change, which it keeps hearing between reads.
//!
//! The socket asks for strict checking of dump requests
//! (`NETLINK_GET_STRICT_CHK`, Linux 4.20+), so that a route dump can be
//! filtered by the kernel: `ip_valid_fib_dump_req` (net/ipv4/fib_frontend.c,
//! shared by IPv6) takes `rtm_table` or `RTA_TABLE`, `rtm_protocol`,
//! `rtm_type`, `RTA_OIF` and the `RTM_F_CLONED` flag, and refuses any other
//! header field or attribute with EINVAL. A nexthop dump
//! (`nh_valid_dump_req`, net/ipv4/nexthop.c) filters only by `NHA_OIF`,
//! `NHA_MASTER`, `NHA_GROUPS`, `NHA_FDB` and family: not by protocol, and
//! a protocol in its header is refused. A kernel that refuses strict
//! checking sends every route whatever the request says; the driver filters
//! what it reads either way, so that only costs time, and is said once.
//!
//! Every announcement carries the port of the socket whose request caused
//! it: those of the driver's own socket are skipped, since the driver
//! learns of its own changes from their answers. They still pass through
//! the queue (a socket filter could drop them earlier, but attaching one
//! takes unsafe code, which this workspace denies), so a batch reads them
//! off after each chunk ([`Reader::keep_up`]): a cold start of 10,000
//! routes would otherwise overflow the queue and lose others' too.

use std::io;
use std::sync::Once;
use std::time::Duration;

use netlink_packet_core::{NLM_F_ACK_TLVS, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST};
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};

use super::batch::{KernelError, extended_ack_reason, reason_in};
use crate::DriverError;

/// How long the kernel may stay silent in the middle of a dump.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Room for announcements between two reads (about 1.3 KiB each, as the
/// kernel counts them). Only what is queued takes memory; a router whose
/// announcements overflow it between two reads is read in full once more.
/// Needs CAP_NET_ADMIN to pass net.core.rmem_max.
const RECEIVE_BUFFER_BYTES: usize = 32 << 20;
/// One datagram: a dump part is at most 32 KiB (netlink caps it there).
const DATAGRAM_BYTES: usize = 64 << 10;

const NLMSG_HEADER_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

/// rtnetlink multicast groups: links, IPv4 and IPv6 addresses and routes.
/// Not nexthop objects: a cold start creates one per node, and hearing
/// them all would cost more than the one thing they tell (a deleted object
/// took its routes along), which every read's nexthop dump tells as well.
const GROUPS: [u32; 5] = [1, 5, 7, 9, 11];

/// One netlink message, borrowed from the receive buffer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub payload: &'a [u8],
}

/// How a dump ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum DumpEnd {
    Complete,
    /// The kernel changed the table while dumping it: take it again.
    Interrupted,
    /// The kernel has no such table (a filtered dump of a table nothing
    /// was ever put in): nothing to read.
    NoTable,
    /// The kernel refused the request.
    Refused(KernelError),
}

pub(super) struct Reader {
    router: String,
    socket: TokioSocket,
    port: u32,
    /// The driver's own socket, whose announcements are not wanted.
    driver_port: u32,
    /// Announcements of others read off the queue during a batch, in the
    /// order heard, for the next read or catch-up.
    kept: Vec<(u16, u16, Vec<u8>)>,
    sequence: u32,
    buffer: Vec<u8>,
    /// Whether the kernel filters dumps for us.
    strict: bool,
    /// Whether it is a member of the announcement groups.
    listening: bool,
    /// Announcements were dropped since this was last cleared: the socket's
    /// queue overflowed.
    pub overrun: bool,
}

impl Reader {
    /// Opens the reader; runs inside the router's namespace, with the
    /// runtime entered. `driver_port` is the port of the driver's own
    /// socket, whose announcements are not wanted.
    pub(super) fn open_in(router: &str, driver_port: u32) -> Result<Self, DriverError> {
        let socket_error = |source| DriverError::Socket {
            router: router.to_owned(),
            source,
        };
        let mut socket = TokioSocket::new(NETLINK_ROUTE).map_err(socket_error)?;
        let raw = socket.socket_mut();
        let port = raw.bind_auto().map_err(socket_error)?.port_number();
        if let Err(error) = setsockopt(raw, sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES) {
            tracing::debug!(router, %error, "receive buffer capped by net.core.rmem_max");
            raw.set_rx_buf_sz(RECEIVE_BUFFER_BYTES)
                .map_err(socket_error)?;
        }
        if let Err(error) = raw.set_ext_ack(true) {
            tracing::debug!(router, %error, "extended netlink acks unavailable");
        }
        let strict = raw.set_netlink_get_strict_chk(true).is_ok();
        if !strict {
            kernel_does_not_filter();
        }
        Ok(Self {
            router: router.to_owned(),
            socket,
            port,
            driver_port,
            kept: Vec::new(),
            sequence: 0,
            buffer: Vec::with_capacity(DATAGRAM_BYTES),
            strict,
            listening: false,
            overrun: false,
        })
    }

    /// Starts hearing announcements (from the next change on).
    pub(super) fn listen(&mut self) -> Result<(), DriverError> {
        if !self.listening {
            for group in GROUPS {
                self.socket
                    .socket_ref()
                    .add_membership(group)
                    .map_err(|error| {
                        self.error("listening to the kernel's announcements", error)
                    })?;
            }
            self.listening = true;
        }
        Ok(())
    }

    /// Stops hearing announcements; those queued already stay queued.
    pub(super) fn stop_listening(&mut self) -> Result<(), DriverError> {
        if self.listening {
            for group in GROUPS {
                self.socket
                    .socket_ref()
                    .drop_membership(group)
                    .map_err(|error| {
                        self.error("listening to the kernel's announcements", error)
                    })?;
            }
            self.listening = false;
        }
        Ok(())
    }

    pub(super) fn filters(&self) -> bool {
        self.strict
    }

    /// Stops asking the kernel to filter dumps: it refused a filtered one.
    pub(super) fn stop_filtering(&mut self) {
        let _ = self.socket.socket_ref().set_netlink_get_strict_chk(false);
        self.strict = false;
        kernel_does_not_filter();
    }

    /// Sends a dump request (`kind`, with `body` after the netlink header)
    /// and hands each object of the answer, and each announcement heard
    /// meanwhile, to `incoming`, in the order the kernel queued them.
    pub(super) async fn dump(
        &mut self,
        operation: &'static str,
        kind: u16,
        body: &[u8],
        incoming: &mut (dyn FnMut(Incoming) + Send),
    ) -> Result<DumpEnd, DriverError> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = request(kind, self.sequence, body);
        self.socket
            .send_to(&request, &SocketAddr::new(0, 0))
            .await
            .map_err(|error| self.error(operation, error))?;
        for (kind, flags, payload) in self.kept.drain(..) {
            incoming(Incoming::Heard(Message {
                kind,
                flags,
                payload: &payload,
            }));
        }
        let mut interrupted = false;
        loop {
            self.buffer.clear();
            let received = tokio::time::timeout(SILENCE_LIMIT, self.socket.recv(&mut self.buffer))
                .await
                .map_err(|_| self.error(operation, "the kernel stopped answering"))?;
            if let Err(error) = received {
                if error.raw_os_error() == Some(libc::ENOBUFS) {
                    // Announcements were dropped; the dump itself never is.
                    self.overrun = true;
                    continue;
                }
                return Err(self.error(operation, error));
            }
            let mut end = None;
            for (header, payload) in Messages::new(&self.buffer) {
                if header.port == self.driver_port {
                    continue;
                }
                if header.port != self.port {
                    self.overrun |= header.kind == NLMSG_OVERRUN;
                    incoming(Incoming::Heard(header.message(payload)));
                    continue;
                }
                // Left over from a request given up on: not ours to read.
                if header.sequence != self.sequence || end.is_some() {
                    continue;
                }
                interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                match header.kind {
                    NLMSG_DONE | NLMSG_ERROR => end = Some(ending(header, payload)),
                    _ => incoming(Incoming::Reply(header.message(payload))),
                }
            }
            match end {
                None => {}
                Some(Ok(())) if interrupted => return Ok(DumpEnd::Interrupted),
                Some(Ok(())) => return Ok(DumpEnd::Complete),
                Some(Err(refusal)) if refusal.errno == Errno::ENOENT => {
                    return Ok(DumpEnd::NoTable);
                }
                Some(Err(refusal)) => return Ok(DumpEnd::Refused(refusal)),
            }
        }
    }

    /// Hands every announcement queued so far to `heard`, without waiting
    /// for more.
    pub(super) fn drain(&mut self, heard: &mut dyn FnMut(Message)) -> Result<(), DriverError> {
        for (kind, flags, payload) in self.kept.drain(..) {
            heard(Message {
                kind,
                flags,
                payload: &payload,
            });
        }
        while self.receive_queued()? {
            for (header, payload) in Messages::new(&self.buffer) {
                if header.port == self.driver_port || header.port == self.port {
                    continue;
                }
                self.overrun |= header.kind == NLMSG_OVERRUN;
                heard(header.message(payload));
            }
        }
        Ok(())
    }

    /// Reads off the announcements queued so far, keeping only those of
    /// others: run between the chunks of a batch, whose own announcements
    /// would otherwise fill the queue.
    pub(super) fn keep_up(&mut self) -> Result<(), DriverError> {
        while self.receive_queued()? {
            for (header, payload) in Messages::new(&self.buffer) {
                if header.port == self.driver_port || header.port == self.port {
                    continue;
                }
                self.overrun |= header.kind == NLMSG_OVERRUN;
                self.kept
                    .push((header.kind, header.flags, payload.to_vec()));
            }
        }
        Ok(())
    }

    /// One queued datagram into the buffer; `false` when none is queued.
    fn receive_queued(&mut self) -> Result<bool, DriverError> {
        loop {
            self.buffer.clear();
            match self
                .socket
                .socket_ref()
                .recv(&mut self.buffer, libc::MSG_DONTWAIT)
            {
                Ok(_) => return Ok(true),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => self.overrun = true,
                Err(error) => {
                    return Err(self.error("hearing the kernel's announcements", error));
                }
            }
        }
    }

    fn error(&self, operation: &'static str, message: impl std::fmt::Display) -> DriverError {
        DriverError::Request {
            router: self.router.clone(),
            operation,
            message: message.to_string(),
        }
    }
}

/// What the reader hands on while a dump is under way.
pub(super) enum Incoming<'a> {
    /// An object of the dump asked for.
    Reply(Message<'a>),
    /// An announcement of a change someone else made.
    Heard(Message<'a>),
}

#[derive(Clone, Copy)]
struct Header {
    kind: u16,
    flags: u16,
    sequence: u32,
    port: u32,
}

impl Header {
    fn message(self, payload: &[u8]) -> Message<'_> {
        Message {
            kind: self.kind,
            flags: self.flags,
            payload,
        }
    }
}

/// The netlink messages of one datagram, each with its payload.
struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    fn new(datagram: &'a [u8]) -> Self {
        Self { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = (Header, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.rest;
        let length = u32::from_ne_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
        if length < NLMSG_HEADER_LEN || length > bytes.len() {
            self.rest = &[];
            return None;
        }
        let header = Header {
            kind: u16::from_ne_bytes(bytes[4..6].try_into().ok()?),
            flags: u16::from_ne_bytes(bytes[6..8].try_into().ok()?),
            sequence: u32::from_ne_bytes(bytes[8..12].try_into().ok()?),
            port: u32::from_ne_bytes(bytes[12..16].try_into().ok()?),
        };
        self.rest = bytes.get(length.next_multiple_of(4)..).unwrap_or(&[]);
        Some((header, &bytes[NLMSG_HEADER_LEN..length]))
    }
}

/// The end of a dump: `NLMSG_DONE` carries the dump's errno, `NLMSG_ERROR`
/// the request's refusal; either may add the kernel's reason in words.
fn ending(header: Header, payload: &[u8]) -> Result<(), KernelError> {
    let code = payload
        .get(0..4)
        .and_then(|code| code.try_into().ok())
        .map_or(0, i32::from_ne_bytes);
    if code == 0 {
        return Ok(());
    }
    let reason = if header.kind == NLMSG_DONE && header.flags & NLM_F_ACK_TLVS != 0 {
        reason_in(payload.get(4..).unwrap_or(&[]))
    } else {
        extended_ack_reason(header.flags, payload.get(4..).unwrap_or(&[]))
    };
    Err(KernelError {
        errno: Errno::from_raw(code.saturating_abs()),
        reason,
    })
}

fn request(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
    let length = NLMSG_HEADER_LEN + body.len();
    let mut request = Vec::with_capacity(length);
    request.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_ne_bytes());
    request.extend_from_slice(&kind.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&sequence.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(body);
    request
}

fn kernel_does_not_filter() {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            "the kernel does not filter netlink dumps (NETLINK_GET_STRICT_CHK, Linux 4.20+): every read of a router reads all its routes"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, flags: u16, sequence: u32, port: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = request(kind, sequence, payload);
        bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
        bytes[12..16].copy_from_slice(&port.to_ne_bytes());
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn a_datagram_splits_into_its_messages_at_their_aligned_lengths() {
        let mut datagram = message(24, 2, 7, 99, &[1, 2, 3, 4, 5]);
        datagram.extend(message(NLMSG_DONE, 2, 7, 99, &0i32.to_ne_bytes()));
        let split: Vec<_> = Messages::new(&datagram)
            .map(|(header, payload)| (header.kind, header.sequence, header.port, payload.to_vec()))
            .collect();
        assert_eq!(
            split,
            vec![
                (24, 7, 99, vec![1, 2, 3, 4, 5]),
                (NLMSG_DONE, 7, 99, 0i32.to_ne_bytes().to_vec())
            ]
        );
    }

    #[test]
    fn a_message_cut_short_ends_the_datagram() {
        let mut datagram = message(24, 0, 1, 1, &[0; 12]);
        datagram.truncate(20);
        assert_eq!(Messages::new(&datagram).count(), 0);
    }

    #[test]
    fn a_dump_ending_in_an_errno_is_a_refusal_with_its_reason() {
        let mut payload = (-libc::EINVAL).to_ne_bytes().to_vec();
        let text = b"Unsupported attribute in dump request\0";
        payload.extend_from_slice(&u16::try_from(4 + text.len()).expect("short").to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(text);
        let header = Header {
            kind: NLMSG_DONE,
            flags: NLM_F_ACK_TLVS,
            sequence: 1,
            port: 1,
        };
        let refusal = ending(header, &payload).expect_err("refused");
        assert_eq!(refusal.errno, Errno::EINVAL);
        assert_eq!(
            refusal.reason.as_deref(),
            Some("Unsupported attribute in dump request")
        );
        assert_eq!(ending(header, &0i32.to_ne_bytes()), Ok(()));
    }
}
