//! The message type of the driver's one netlink socket: rtnetlink messages as
//! netlink-packet-route knows them, plus nexthop objects, so that routes and
//! the nexthops they point at travel over one socket in one ordered stream.

use netlink_packet_core::{
    DecodeError, Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::nexthop::{NexthopMessage, NexthopMessageKind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtnlMessage {
    Route(RouteNetlinkMessage),
    Nexthop(NexthopMessage),
    /// Anything neither parser understood. Kept rather than refused: the
    /// connection drops a message it cannot parse, and a dropped reply would
    /// leave its request waiting forever.
    Other {
        message_type: u16,
        payload: Vec<u8>,
    },
}

impl NetlinkSerializable for RtnlMessage {
    fn message_type(&self) -> u16 {
        match self {
            Self::Route(message) => message.message_type(),
            Self::Nexthop(message) => message.message_type(),
            Self::Other { message_type, .. } => *message_type,
        }
    }

    fn buffer_len(&self) -> usize {
        match self {
            Self::Route(message) => Emitable::buffer_len(message),
            Self::Nexthop(message) => message.buffer_len(),
            Self::Other { payload, .. } => payload.len(),
        }
    }

    fn serialize(&self, buffer: &mut [u8]) {
        match self {
            Self::Route(message) => message.emit(buffer),
            Self::Nexthop(message) => message.emit(buffer),
            Self::Other { payload, .. } => buffer.copy_from_slice(payload),
        }
    }
}

impl NetlinkDeserializable for RtnlMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, Self::Error> {
        let message_type = header.message_type;
        let parsed = if NexthopMessageKind::from_message_type(message_type).is_some() {
            NexthopMessage::parse(message_type, payload).map(Self::Nexthop)
        } else {
            RouteNetlinkMessage::deserialize(header, payload).map(Self::Route)
        };
        Ok(parsed.unwrap_or_else(|error| {
            tracing::debug!(message_type, %error, "netlink message kept unparsed");
            Self::Other {
                message_type,
                payload: payload.to_vec(),
            }
        }))
    }
}
