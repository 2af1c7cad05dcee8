//! Kernel nexthop objects (`RTM_NEWNEXTHOP`, `RTM_DELNEXTHOP`, `RTM_GETNEXTHOP`).
//!
//! This module exists because netlink-packet-route 0.34 has no message type
//! for nexthop objects, only the `RTA_NH_ID` attribute that points a route at
//! one. The driver needs them: the kernel installs a route that names a
//! nexthop object far faster than one carrying its own gateway when every
//! route has a different gateway (notes/lab.md: 10,000 routes in 0.2 s instead
//! of 1.45 s). So here is the `struct nhmsg` header and the few attributes the
//! driver reads or writes; every other attribute is kept as opaque bytes.

use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_TYPE_MASK, Nla, NlaBuffer, NlasIterator, Parseable,
    parse_ip,
};

pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const NHA_ENCAP_TYPE: u16 = 7;
const NHA_ENCAP: u16 = 8;
const NHA_FDB: u16 = 11;

/// `sizeof(struct nhmsg)`.
const HEADER_LEN: usize = 8;
/// `sizeof(struct nexthop_grp)`: u32 id, u8 weight, u8 weight_high, u16 reserved.
const GROUP_ENTRY_LEN: usize = 8;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// Which of the three nexthop requests a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NexthopMessageKind {
    New,
    Del,
    Get,
}

impl NexthopMessageKind {
    pub fn message_type(self) -> u16 {
        match self {
            Self::New => RTM_NEWNEXTHOP,
            Self::Del => RTM_DELNEXTHOP,
            Self::Get => RTM_GETNEXTHOP,
        }
    }

    pub fn from_message_type(message_type: u16) -> Option<Self> {
        match message_type {
            RTM_NEWNEXTHOP => Some(Self::New),
            RTM_DELNEXTHOP => Some(Self::Del),
            RTM_GETNEXTHOP => Some(Self::Get),
            _ => None,
        }
    }
}

/// `struct nhmsg`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NexthopHeader {
    pub family: u8,
    pub scope: u8,
    pub protocol: u8,
    pub resvd: u8,
    pub flags: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NexthopAttribute {
    Id(u32),
    /// `NHA_GROUP`: an array of `struct nexthop_grp`, kept as the kernel sent it.
    Group(Vec<u8>),
    Oif(u32),
    Gateway(IpAddr),
    Other(DefaultNla),
}

impl Nla for NexthopAttribute {
    fn value_len(&self) -> usize {
        match self {
            Self::Id(_) | Self::Oif(_) => 4,
            Self::Group(entries) => entries.len(),
            Self::Gateway(IpAddr::V4(_)) => 4,
            Self::Gateway(IpAddr::V6(_)) => 16,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Id(_) => NHA_ID,
            Self::Group(_) => NHA_GROUP,
            Self::Oif(_) => NHA_OIF,
            Self::Gateway(_) => NHA_GATEWAY,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Id(value) | Self::Oif(value) => buffer.copy_from_slice(&value.to_ne_bytes()),
            Self::Group(entries) => buffer.copy_from_slice(entries),
            Self::Gateway(IpAddr::V4(address)) => buffer.copy_from_slice(&address.octets()),
            Self::Gateway(IpAddr::V6(address)) => buffer.copy_from_slice(&address.octets()),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl NexthopAttribute {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let value = nla.value();
        Ok(match nla.kind() & NLA_TYPE_MASK {
            NHA_ID => Self::Id(parse_u32(value)?),
            NHA_OIF => Self::Oif(parse_u32(value)?),
            NHA_GATEWAY => Self::Gateway(parse_ip(value)?),
            NHA_GROUP => Self::Group(value.to_vec()),
            _ => Self::Other(DefaultNla::parse(nla)?),
        })
    }
}

fn parse_u32(value: &[u8]) -> Result<u32, DecodeError> {
    let bytes: [u8; 4] = value
        .try_into()
        .map_err(|_| DecodeError::invalid_number(4, value.len()))?;
    Ok(u32::from_ne_bytes(bytes))
}

/// One nexthop message: a request to the kernel or an object it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexthopMessage {
    pub kind: NexthopMessageKind,
    pub header: NexthopHeader,
    pub attributes: Vec<NexthopAttribute>,
}

impl NexthopMessage {
    /// A nexthop object `id` through `gateway` out of interface `oif`.
    pub fn new_gateway(id: u32, gateway: IpAddr, oif: u32, protocol: u8) -> Self {
        let family = if gateway.is_ipv4() { AF_INET } else { AF_INET6 };
        Self {
            kind: NexthopMessageKind::New,
            header: NexthopHeader {
                family,
                protocol,
                ..NexthopHeader::default()
            },
            attributes: vec![
                NexthopAttribute::Id(id),
                NexthopAttribute::Gateway(gateway),
                NexthopAttribute::Oif(oif),
            ],
        }
    }

    /// Deletes nexthop object `id` (and with it every route that uses it).
    pub fn delete(id: u32) -> Self {
        Self {
            kind: NexthopMessageKind::Del,
            header: NexthopHeader::default(),
            attributes: vec![NexthopAttribute::Id(id)],
        }
    }

    pub fn message_type(&self) -> u16 {
        self.kind.message_type()
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.attributes.as_slice().buffer_len()
    }

    /// Writes the message into `buffer`, which is exactly `buffer_len()` long.
    pub fn emit(&self, buffer: &mut [u8]) {
        let (header, attributes) = buffer.split_at_mut(HEADER_LEN);
        header[0] = self.header.family;
        header[1] = self.header.scope;
        header[2] = self.header.protocol;
        header[3] = self.header.resvd;
        header[4..8].copy_from_slice(&self.header.flags.to_ne_bytes());
        self.attributes.as_slice().emit(attributes);
    }

    pub fn parse(message_type: u16, payload: &[u8]) -> Result<Self, DecodeError> {
        let kind = NexthopMessageKind::from_message_type(message_type).ok_or_else(|| {
            DecodeError::from(format!("not a nexthop message type: {message_type}"))
        })?;
        if payload.len() < HEADER_LEN {
            return Err(DecodeError::buffer_too_small(payload.len(), HEADER_LEN));
        }
        let (header, attributes) = payload.split_at(HEADER_LEN);
        let header = NexthopHeader {
            family: header[0],
            scope: header[1],
            protocol: header[2],
            resvd: header[3],
            flags: parse_u32(&header[4..8])?,
        };
        let attributes = NlasIterator::new(attributes)
            .map(|nla| nla.and_then(|nla| NexthopAttribute::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            kind,
            header,
            attributes,
        })
    }

    pub fn id(&self) -> Option<u32> {
        self.attributes
            .iter()
            .find_map(|attribute| match attribute {
                NexthopAttribute::Id(id) => Some(*id),
                _ => None,
            })
    }

    pub fn gateway(&self) -> Option<IpAddr> {
        self.attributes
            .iter()
            .find_map(|attribute| match attribute {
                NexthopAttribute::Gateway(gateway) => Some(*gateway),
                _ => None,
            })
    }

    pub fn oif(&self) -> Option<u32> {
        self.attributes
            .iter()
            .find_map(|attribute| match attribute {
                NexthopAttribute::Oif(oif) => Some(*oif),
                _ => None,
            })
    }

    /// The ids of the nexthops this group is made of (empty if not a group).
    pub fn group_members(&self) -> Vec<u32> {
        self.attributes
            .iter()
            .filter_map(|attribute| match attribute {
                NexthopAttribute::Group(entries) => Some(entries),
                _ => None,
            })
            .flat_map(|entries| entries.chunks_exact(GROUP_ENTRY_LEN))
            .filter_map(|entry| parse_u32(&entry[..4]).ok())
            .collect()
    }

    /// Whether this is a plain "via gateway dev oif" nexthop: not a group, a
    /// blackhole, an encapsulation or an FDB nexthop, any of which would make
    /// it something other than what a route of ours means.
    pub fn is_plain(&self) -> bool {
        self.attributes.iter().all(|attribute| match attribute {
            NexthopAttribute::Group(_) => false,
            NexthopAttribute::Other(nla) => !matches!(
                nla.kind() & NLA_TYPE_MASK,
                NHA_BLACKHOLE | NHA_ENCAP_TYPE | NHA_ENCAP | NHA_FDB
            ),
            _ => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: &NexthopMessage) -> NexthopMessage {
        let mut buffer = vec![0; message.buffer_len()];
        message.emit(&mut buffer);
        NexthopMessage::parse(message.message_type(), &buffer).expect("parses what it emitted")
    }

    #[test]
    fn gateway_nexthop_survives_a_round_trip() {
        let message = NexthopMessage::new_gateway(7, "192.168.2.1".parse().expect("ip"), 3, 0xcb);
        let parsed = round_trip(&message);
        assert_eq!(parsed, message);
        assert_eq!(parsed.id(), Some(7));
        assert_eq!(parsed.oif(), Some(3));
        assert_eq!(parsed.header.family, AF_INET);
        assert!(parsed.is_plain());
    }

    #[test]
    fn ipv6_gateway_uses_the_inet6_family() {
        let message = NexthopMessage::new_gateway(8, "fd00::1".parse().expect("ip"), 2, 0xcb);
        assert_eq!(round_trip(&message).header.family, AF_INET6);
        assert_eq!(
            round_trip(&message).gateway(),
            Some("fd00::1".parse().expect("ip"))
        );
    }

    #[test]
    fn group_members_are_read_and_groups_are_not_plain() {
        let mut entries = Vec::new();
        for id in [11u32, 12] {
            entries.extend_from_slice(&id.to_ne_bytes());
            entries.extend_from_slice(&[0, 0, 0, 0]);
        }
        let message = NexthopMessage {
            kind: NexthopMessageKind::New,
            header: NexthopHeader::default(),
            attributes: vec![NexthopAttribute::Id(13), NexthopAttribute::Group(entries)],
        };
        let parsed = round_trip(&message);
        assert_eq!(parsed.group_members(), vec![11, 12]);
        assert!(!parsed.is_plain());
    }

    #[test]
    fn unknown_attributes_are_kept_and_blackholes_are_not_plain() {
        let message = NexthopMessage {
            kind: NexthopMessageKind::New,
            header: NexthopHeader::default(),
            attributes: vec![
                NexthopAttribute::Id(1),
                NexthopAttribute::Other(DefaultNla::new(NHA_BLACKHOLE, Vec::new())),
            ],
        };
        let parsed = round_trip(&message);
        assert_eq!(parsed, message);
        assert!(!parsed.is_plain());
    }

    #[test]
    fn short_payload_is_an_error_not_a_panic() {
        assert!(NexthopMessage::parse(RTM_NEWNEXTHOP, &[1, 2, 3]).is_err());
        assert!(NexthopMessage::parse(24, &[0; 8]).is_err());
    }
}
