//! Requests over the socket: dumps, and batches of changes sent many messages
//! per sendmsg with each message's answer mapped back to it.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use netlink_packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_sys::SocketAddr;
use nix::errno::Errno;

use super::message::RtnlMessage;
use super::socket::Socket;
use crate::{DriverError, Fence};

/// How long the kernel may stay silent before the request counts as lost.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// A dump the kernel marks inconsistent (the table changed under it) is
/// taken again, this many times at most.
const DUMP_ATTEMPTS: usize = 5;
/// `NLMSGERR_ATTR_MSG`: the extended ack's human-readable reason.
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETLINK_HEADER_LEN: usize = 16;

/// The kernel's refusal of one message: an errno and, when it gave one, its
/// reason in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KernelError {
    pub errno: Errno,
    pub reason: Option<String>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.errno.desc(), self.errno)?;
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

impl KernelError {
    fn from_nack(header: &NetlinkHeader, error: &ErrorMessage) -> Self {
        Self {
            errno: Errno::from_raw(error.raw_code().saturating_abs()),
            reason: extended_ack_reason(header.flags, &error.header),
        }
    }
}

/// What the kernel said to one message of a batch.
pub(super) type Answer = Result<(), KernelError>;

impl Socket {
    /// Asks for a dump and collects every object in it.
    pub(super) async fn dump(
        &mut self,
        operation: &'static str,
        request: RtnlMessage,
    ) -> Result<Vec<RtnlMessage>, DriverError> {
        for _ in 0..DUMP_ATTEMPTS {
            if let Some(objects) = self.dump_once(operation, request.clone()).await? {
                return Ok(objects);
            }
        }
        Err(self.error(
            operation,
            "the kernel kept changing the table while listing it",
        ))
    }

    /// `None` when the kernel flagged the dump as interrupted.
    async fn dump_once(
        &mut self,
        operation: &'static str,
        request: RtnlMessage,
    ) -> Result<Option<Vec<RtnlMessage>>, DriverError> {
        let message = netlink_message(request, NLM_F_REQUEST | NLM_F_DUMP);
        let mut replies = self
            .handle
            .request(message, SocketAddr::new(0, 0))
            .map_err(|error| self.error(operation, error))?;
        let mut objects = Vec::new();
        let mut interrupted = false;
        loop {
            let reply = tokio::time::timeout(SILENCE_LIMIT, replies.next())
                .await
                .map_err(|_| self.error(operation, "the kernel stopped answering"))?;
            let Some(reply) = reply else { break };
            interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
            match reply.payload {
                NetlinkPayload::InnerMessage(object) => objects.push(object),
                NetlinkPayload::Error(error) if error.code.is_some() => {
                    let refusal = KernelError::from_nack(&reply.header, &error);
                    return Err(self.error(operation, refusal));
                }
                NetlinkPayload::Overrun(_) => {
                    return Err(self.error(operation, "the socket's receive buffer overflowed"));
                }
                _ => {}
            }
        }
        Ok((!interrupted).then_some(objects))
    }

    /// Sends `requests` (each with its netlink flags besides REQUEST and
    /// ACK) in chunks of one sendmsg each, and returns one answer per
    /// request sent, in order. Before each chunk it looks at `fence`: once
    /// that is raised no further chunk goes, and the answers stop short of
    /// the requests. `Err` when the socket failed: answers may be lost.
    pub(super) async fn batch(
        &mut self,
        operation: &'static str,
        requests: Vec<(RtnlMessage, u16)>,
        fence: &Fence,
    ) -> Result<Vec<Answer>, DriverError> {
        let mut answers = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            if fence.is_raised() {
                break;
            }
            let chunk: Vec<_> = requests
                .by_ref()
                .take(self.chunk)
                .map(|(request, flags)| netlink_message(request, NLM_F_REQUEST | NLM_F_ACK | flags))
                .collect();
            answers.extend(self.send_chunk(operation, chunk).await?);
            self.reader.keep_up()?;
        }
        Ok(answers)
    }

    async fn send_chunk(
        &mut self,
        operation: &'static str,
        messages: Vec<NetlinkMessage<RtnlMessage>>,
    ) -> Result<Vec<Answer>, DriverError> {
        let expected = messages.len();
        // Nothing is outstanding between chunks: an overrun notice still
        // queued belongs to the past and must not fail this chunk.
        while self.unsolicited.try_recv().is_ok() {}
        let mut replies = self
            .handle
            .request_batch(messages, SocketAddr::new(0, 0))
            .map_err(|error| self.error(operation, error))?;
        let mut answers = Vec::with_capacity(expected);
        let mut first_sequence = None;
        while answers.len() < expected {
            let reply = tokio::select! {
                reply = replies.next() => reply,
                Some((notice, _)) = self.unsolicited.next() => {
                    if matches!(notice.payload, NetlinkPayload::Overrun(_)) {
                        return Err(self.error(operation, "acks were lost: the socket's receive buffer overflowed"));
                    }
                    continue;
                }
                () = tokio::time::sleep(SILENCE_LIMIT) => {
                    return Err(self.error(operation, "the kernel stopped answering"));
                }
            };
            let Some(reply) = reply else {
                return Err(self.error(operation, "the netlink connection closed mid-batch"));
            };
            let NetlinkPayload::Error(error) = &reply.payload else {
                continue;
            };
            // The kernel answers the messages of one sendmsg in order, each
            // answer carrying its request's sequence number; the numbers of
            // one batch are consecutive. Anything else means answers were
            // lost and none of them can be trusted to match.
            let sequence = reply.header.sequence_number;
            let first = *first_sequence.get_or_insert(sequence);
            if sequence.wrapping_sub(first) as usize != answers.len() {
                return Err(self.error(operation, "answers came back out of order"));
            }
            answers.push(match error.code {
                None => Ok(()),
                Some(_) => Err(KernelError::from_nack(&reply.header, error)),
            });
        }
        Ok(answers)
    }

    fn error(&self, operation: &'static str, message: impl fmt::Display) -> DriverError {
        DriverError::Request {
            router: self.router.clone(),
            operation,
            message: message.to_string(),
        }
    }
}

fn netlink_message(request: RtnlMessage, flags: u16) -> NetlinkMessage<RtnlMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request))
}

/// The reason text of an extended ack, if the kernel attached one. The error
/// payload is the request (only its header when capped), then the TLVs.
pub(super) fn extended_ack_reason(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        NETLINK_HEADER_LEN
    } else {
        let length: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        u32::from_ne_bytes(length) as usize
    };
    reason_in(payload.get(request_len.next_multiple_of(4)..)?)
}

/// The reason text among an extended ack's TLVs, if there is one.
pub(super) fn reason_in(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .filter_map(Result::ok)
        .find_map(|nla| {
            (nla.kind() == NLMSGERR_ATTR_MSG).then(|| {
                String::from_utf8_lossy(nla.value())
                    .trim_end_matches('\0')
                    .to_owned()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reads_like_errno_text_with_the_kernels_reason() {
        let refusal = KernelError {
            errno: Errno::EEXIST,
            reason: Some("Nexthop id already exists".to_owned()),
        };
        assert_eq!(
            refusal.to_string(),
            "File exists (EEXIST): Nexthop id already exists"
        );
    }

    #[test]
    fn reason_is_read_after_a_capped_request_header() {
        let mut payload = vec![0u8; NETLINK_HEADER_LEN];
        let text = b"Invalid prefix\0";
        payload.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        payload.push(0);
        let reason = extended_ack_reason(NLM_F_ACK_TLVS | NLM_F_CAPPED, &payload);
        assert_eq!(reason.as_deref(), Some("Invalid prefix"));
        assert_eq!(extended_ack_reason(NLM_F_CAPPED, &payload), None);
    }
}
