//! BGP-4 messages on the wire (RFC 4271), with the capabilities nativeroute
//! speaks: multiprotocol IPv6 unicast (RFC 4760), route refresh (RFC 2918),
//! 4-octet AS numbers (RFC 6793) and graceful restart (RFC 4724).
//!
//! Decoding trusts no length a peer sends: every read is bounds-checked, and
//! what cannot be read becomes the NOTIFICATION that RFC 4271 §6 names. An
//! UPDATE whose attributes are broken but whose routes can still be found is
//! kept, marked for "treat-as-withdraw" (RFC 7606), so that one bad
//! attribute does not reset the session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub const HEADER_LEN: usize = 19;
/// Without the extended-message capability (RFC 8654), which nativeroute
/// does not offer, no message is longer.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The 2-octet stand-in for an AS number above 65535 (RFC 6793).
pub const AS_TRANS: u16 = 23456;
pub const BGP_VERSION: u8 = 4;

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

const PARAM_CAPABILITIES: u8 = 2;
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
const CAP_GRACEFUL_RESTART: u8 = 64;
const CAP_FOUR_OCTET_AS: u8 = 65;

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_MED: u8 = 4;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_COMMUNITIES: u8 = 8;
const ATTR_MP_REACH: u8 = 14;
const ATTR_MP_UNREACH: u8 = 15;

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED_LENGTH: u8 = 0x10;

pub const ORIGIN_IGP: u8 = 0;
const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;
const AS_CONFED_SEQUENCE: u8 = 3;
const AS_CONFED_SET: u8 = 4;

/// NOTIFICATION error codes and subcodes (RFC 4271 §4.5, RFC 4486, RFC 7313).
pub mod error_code {
    pub const HEADER: u8 = 1;
    pub const HEADER_NOT_SYNCHRONIZED: u8 = 1;
    pub const HEADER_BAD_LENGTH: u8 = 2;
    pub const HEADER_BAD_TYPE: u8 = 3;

    pub const OPEN: u8 = 2;
    pub const OPEN_UNSUPPORTED_VERSION: u8 = 1;
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    pub const OPEN_BAD_IDENTIFIER: u8 = 3;
    pub const OPEN_UNSUPPORTED_PARAMETER: u8 = 4;
    pub const OPEN_UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const OPEN_UNSUPPORTED_CAPABILITY: u8 = 7;

    pub const UPDATE: u8 = 3;
    pub const UPDATE_MALFORMED_ATTRIBUTES: u8 = 1;
    pub const UPDATE_OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const UPDATE_INVALID_NETWORK: u8 = 10;

    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    /// RFC 6608: an unexpected message in OpenSent, OpenConfirm, Established.
    pub const FSM_IN_OPEN_SENT: u8 = 1;
    pub const FSM_IN_OPEN_CONFIRM: u8 = 2;
    pub const FSM_IN_ESTABLISHED: u8 = 3;

    pub const CEASE: u8 = 6;
    pub const CEASE_ADMINISTRATIVE_SHUTDOWN: u8 = 2;

    pub const ROUTE_REFRESH: u8 = 7;
    pub const ROUTE_REFRESH_BAD_LENGTH: u8 = 1;
}

/// One address family nativeroute announces in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    pub fn of(dst: &IpNet) -> Family {
        match dst {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    pub fn afi_safi(self) -> (u16, u8) {
        match self {
            Family::Ipv4Unicast => (AFI_IPV4, SAFI_UNICAST),
            Family::Ipv6Unicast => (AFI_IPV6, SAFI_UNICAST),
        }
    }

    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Some(Family::Ipv4Unicast),
            (AFI_IPV6, SAFI_UNICAST) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4Unicast => "IPv4 unicast",
            Family::Ipv6Unicast => "IPv6 unicast",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    /// Subtype 0 is a request (RFC 2918); 1 and 2 mark the beginning and
    /// end of a refresh (RFC 7313), which nativeroute does not offer.
    RouteRefresh {
        afi: u16,
        subtype: u8,
        safi: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet AS field: AS_TRANS when the real one is larger.
    pub my_as: u16,
    pub hold_time: u16,
    pub identifier: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    RouteRefresh,
    FourOctetAs(u32),
    GracefulRestart {
        /// The R bit: this speaker has restarted, so the peer need not wait
        /// for its End-of-RIB before sending its own routes.
        restarted: bool,
        restart_time: u16,
        /// Each family kept across a restart, with its F bit (forwarding
        /// state preserved).
        families: Vec<(u16, u8, bool)>,
    },
    Other {
        code: u8,
        value: Vec<u8>,
    },
}

impl Open {
    /// The peer's real AS: the 4-octet capability's, or the 2-octet field.
    pub fn peer_as(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    pub fn has(&self, wanted: impl Fn(&Capability) -> bool) -> bool {
        self.capabilities.iter().any(wanted)
    }

    pub fn supports_family(&self, family: Family) -> bool {
        let (afi, safi) = family.afi_safi();
        let multiprotocol = self
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::Multiprotocol { .. }));
        // A peer that announces no multiprotocol capability speaks IPv4
        // unicast alone (RFC 4760 §8).
        if !multiprotocol {
            return family == Family::Ipv4Unicast;
        }
        self.has(|c| *c == Capability::Multiprotocol { afi, safi })
    }

    /// The peer's graceful-restart restart time, when it offers the
    /// capability.
    pub fn graceful_restart_time(&self) -> Option<u16> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart { restart_time, .. } => Some(*restart_time),
            _ => None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// What the code and subcode mean, in words, for an error or a log.
    pub fn describe(&self) -> String {
        use error_code::*;
        let what = match (self.code, self.subcode) {
            (HEADER, HEADER_NOT_SYNCHRONIZED) => {
                "message header error: connection not synchronized"
            }
            (HEADER, HEADER_BAD_LENGTH) => "message header error: bad message length",
            (HEADER, HEADER_BAD_TYPE) => "message header error: bad message type",
            (HEADER, _) => "message header error",
            (OPEN, OPEN_UNSUPPORTED_VERSION) => "OPEN refused: unsupported version number",
            (OPEN, OPEN_BAD_PEER_AS) => {
                "OPEN refused: bad peer AS (the router expects another AS from us: check localAs, and the router's neighbor remote-as)"
            }
            (OPEN, OPEN_BAD_IDENTIFIER) => {
                "OPEN refused: bad BGP identifier (routerId clashes with the router's, or is not accepted)"
            }
            (OPEN, OPEN_UNSUPPORTED_PARAMETER) => "OPEN refused: unsupported optional parameter",
            (OPEN, 5) => "OPEN refused: authentication failure",
            (OPEN, OPEN_UNACCEPTABLE_HOLD_TIME) => "OPEN refused: unacceptable hold time",
            (OPEN, OPEN_UNSUPPORTED_CAPABILITY) => "OPEN refused: unsupported capability",
            (OPEN, _) => "OPEN refused",
            (UPDATE, _) => "UPDATE message error",
            (HOLD_TIMER_EXPIRED, _) => "hold timer expired",
            (FSM, _) => "finite state machine error",
            (CEASE, 1) => "cease: maximum number of prefixes reached",
            (CEASE, CEASE_ADMINISTRATIVE_SHUTDOWN) => "cease: administrative shutdown",
            (CEASE, 3) => "cease: peer de-configured",
            (CEASE, 4) => "cease: administrative reset",
            (CEASE, 5) => {
                "cease: connection rejected (the router has no neighbor for our address, or refuses it)"
            }
            (CEASE, 6) => "cease: other configuration change",
            (CEASE, 7) => "cease: connection collision resolution",
            (CEASE, 8) => "cease: out of resources",
            (CEASE, 9) => "cease: hard reset",
            (CEASE, _) => "cease",
            (ROUTE_REFRESH, _) => "ROUTE-REFRESH message error",
            _ => "unknown error code",
        };
        let mut text = format!("{what} (code {}, subcode {})", self.code, self.subcode);
        // Administrative shutdown and reset may carry a reason (RFC 9003).
        if self.code == CEASE
            && matches!(self.subcode, 2 | 4)
            && let Some((&len, rest)) = self.data.split_first()
            && let Some(reason) = rest.get(..usize::from(len))
            && let Ok(reason) = std::str::from_utf8(reason)
        {
            text.push_str(&format!(": {reason:?}"));
        }
        text
    }
}

/// One segment of an AS_PATH, with 4-octet AS numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
    ConfedSequence(Vec<u32>),
    ConfedSet(Vec<u32>),
}

impl Segment {
    pub fn numbers(&self) -> &[u32] {
        match self {
            Segment::Set(numbers)
            | Segment::Sequence(numbers)
            | Segment::ConfedSequence(numbers)
            | Segment::ConfedSet(numbers) => numbers,
        }
    }
}

/// A path attribute, as far as nativeroute reads it; the others are kept
/// as they came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    Origin(u8),
    AsPath(Vec<Segment>),
    NextHop(Ipv4Addr),
    Med(u32),
    LocalPref(u32),
    Communities(Vec<u32>),
    /// MP_REACH_NLRI for one of our families: the next hop (for IPv6 the
    /// global one, with the link-local one when the peer sends both).
    MpReach {
        family: Family,
        next_hop: IpAddr,
        link_local: Option<Ipv6Addr>,
        prefixes: Vec<IpNet>,
    },
    MpUnreach {
        family: Family,
        prefixes: Vec<IpNet>,
    },
    Other {
        flags: u8,
        code: u8,
        value: Vec<u8>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: Vec<Attribute>,
    pub announced: Vec<Ipv4Net>,
    /// Why the routes this UPDATE announces are to be treated as withdrawn
    /// (RFC 7606): an attribute was malformed, but the routes could be
    /// found. Set only by decoding.
    pub treat_as_withdraw: Option<String>,
}

impl Update {
    /// The family this UPDATE ends the initial exchange of, when it is an
    /// End-of-RIB marker (RFC 4724 §2).
    pub fn end_of_rib(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.announced.is_empty() {
            return None;
        }
        match self.attributes.as_slice() {
            [] => Some(Family::Ipv4Unicast),
            [Attribute::MpUnreach { family, prefixes }] if prefixes.is_empty() => Some(*family),
            _ => None,
        }
    }

    pub fn end_of_rib_marker(family: Family) -> Update {
        let attributes = match family {
            Family::Ipv4Unicast => Vec::new(),
            Family::Ipv6Unicast => vec![Attribute::MpUnreach {
                family,
                prefixes: Vec::new(),
            }],
        };
        Update {
            attributes,
            ..Update::default()
        }
    }

    /// Every route this UPDATE takes away, of both families, including
    /// those announced with attributes that could not be read.
    pub fn withdrawals(&self) -> Vec<IpNet> {
        let mut all: Vec<IpNet> = self.withdrawn.iter().map(|&p| IpNet::V4(p)).collect();
        for attribute in &self.attributes {
            if let Attribute::MpUnreach { prefixes, .. } = attribute {
                all.extend(prefixes.iter().copied());
            }
        }
        if self.treat_as_withdraw.is_some() {
            all.extend(self.reachable().into_iter().map(|(dst, _)| dst));
        }
        all
    }

    /// The routes announced, with their next hop, unless they are to be
    /// treated as withdrawn.
    pub fn announcements(&self) -> Vec<(IpNet, IpAddr)> {
        if self.treat_as_withdraw.is_some() {
            return Vec::new();
        }
        self.reachable()
            .into_iter()
            .filter_map(|(dst, via)| via.map(|via| (dst, via)))
            .collect()
    }

    pub fn communities(&self) -> &[u32] {
        self.attributes
            .iter()
            .find_map(|a| match a {
                Attribute::Communities(c) => Some(c.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    fn reachable(&self) -> Vec<(IpNet, Option<IpAddr>)> {
        let next_hop_v4 = self.attributes.iter().find_map(|a| match a {
            Attribute::NextHop(address) => Some(IpAddr::V4(*address)),
            _ => None,
        });
        let mut all: Vec<(IpNet, Option<IpAddr>)> = self
            .announced
            .iter()
            .map(|&p| (IpNet::V4(p), next_hop_v4))
            .collect();
        for attribute in &self.attributes {
            if let Attribute::MpReach {
                next_hop, prefixes, ..
            } = attribute
            {
                all.extend(prefixes.iter().map(|&p| (p, Some(*next_hop))));
            }
        }
        all
    }
}

// ---------------------------------------------------------------- encoding

/// Appends `message`, header included. Every message nativeroute builds
/// fits in [`MAX_MESSAGE_LEN`]; the UPDATE builders below see to that.
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0]);
    match message {
        Message::Open(open) => {
            out.push(TYPE_OPEN);
            encode_open(open, out);
        }
        Message::Update(update) => {
            out.push(TYPE_UPDATE);
            encode_update(update, out);
        }
        Message::Notification(notification) => {
            out.push(TYPE_NOTIFICATION);
            out.push(notification.code);
            out.push(notification.subcode);
            // Data that quotes a whole message must still fit in one.
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
            let data = &notification.data[..notification.data.len().min(room)];
            out.extend_from_slice(data);
        }
        Message::Keepalive => out.push(TYPE_KEEPALIVE),
        Message::RouteRefresh { afi, subtype, safi } => {
            out.push(TYPE_ROUTE_REFRESH);
            out.extend_from_slice(&afi.to_be_bytes());
            out.push(*subtype);
            out.push(*safi);
        }
    }
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

fn encode_open(open: &Open, out: &mut Vec<u8>) {
    out.push(BGP_VERSION);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.identifier.octets());
    let mut parameters = Vec::new();
    // One capability per parameter, the form every implementation reads.
    for capability in &open.capabilities {
        let mut value = Vec::new();
        let code = match capability {
            Capability::Multiprotocol { afi, safi } => {
                value.extend_from_slice(&afi.to_be_bytes());
                value.push(0);
                value.push(*safi);
                CAP_MULTIPROTOCOL
            }
            Capability::RouteRefresh => CAP_ROUTE_REFRESH,
            Capability::FourOctetAs(asn) => {
                value.extend_from_slice(&asn.to_be_bytes());
                CAP_FOUR_OCTET_AS
            }
            Capability::GracefulRestart {
                restarted,
                restart_time,
                families,
            } => {
                let flags_and_time = (u16::from(*restarted) << 15) | (restart_time & 0x0fff);
                value.extend_from_slice(&flags_and_time.to_be_bytes());
                for (afi, safi, forwarding) in families {
                    value.extend_from_slice(&afi.to_be_bytes());
                    value.push(*safi);
                    value.push(if *forwarding { 0x80 } else { 0 });
                }
                CAP_GRACEFUL_RESTART
            }
            Capability::Other { code, value: raw } => {
                value.extend_from_slice(raw);
                *code
            }
        };
        parameters.push(PARAM_CAPABILITIES);
        parameters.push(byte_len(value.len() + 2));
        parameters.push(code);
        parameters.push(byte_len(value.len()));
        parameters.extend_from_slice(&value);
    }
    out.push(byte_len(parameters.len()));
    out.extend_from_slice(&parameters);
}

fn byte_len(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

fn encode_update(update: &Update, out: &mut Vec<u8>) {
    let withdrawn_at = out.len();
    out.extend_from_slice(&[0, 0]);
    for prefix in &update.withdrawn {
        encode_prefix(&IpNet::V4(*prefix), out);
    }
    let withdrawn_len = u16::try_from(out.len() - withdrawn_at - 2).unwrap_or(u16::MAX);
    out[withdrawn_at..withdrawn_at + 2].copy_from_slice(&withdrawn_len.to_be_bytes());
    let attributes_at = out.len();
    out.extend_from_slice(&[0, 0]);
    for attribute in &update.attributes {
        encode_attribute(attribute, out);
    }
    let attributes_len = u16::try_from(out.len() - attributes_at - 2).unwrap_or(u16::MAX);
    out[attributes_at..attributes_at + 2].copy_from_slice(&attributes_len.to_be_bytes());
    for prefix in &update.announced {
        encode_prefix(&IpNet::V4(*prefix), out);
    }
}

fn encode_attribute(attribute: &Attribute, out: &mut Vec<u8>) {
    let mut value = Vec::new();
    let (flags, code) = match attribute {
        Attribute::Origin(origin) => {
            value.push(*origin);
            (FLAG_TRANSITIVE, ATTR_ORIGIN)
        }
        Attribute::AsPath(segments) => {
            for segment in segments {
                let (kind, numbers) = match segment {
                    Segment::Set(numbers) => (AS_SET, numbers),
                    Segment::Sequence(numbers) => (AS_SEQUENCE, numbers),
                    Segment::ConfedSequence(numbers) => (AS_CONFED_SEQUENCE, numbers),
                    Segment::ConfedSet(numbers) => (AS_CONFED_SET, numbers),
                };
                value.push(kind);
                value.push(byte_len(numbers.len()));
                for asn in numbers {
                    value.extend_from_slice(&asn.to_be_bytes());
                }
            }
            (FLAG_TRANSITIVE, ATTR_AS_PATH)
        }
        Attribute::NextHop(address) => {
            value.extend_from_slice(&address.octets());
            (FLAG_TRANSITIVE, ATTR_NEXT_HOP)
        }
        Attribute::Med(med) => {
            value.extend_from_slice(&med.to_be_bytes());
            (FLAG_OPTIONAL, ATTR_MED)
        }
        Attribute::LocalPref(preference) => {
            value.extend_from_slice(&preference.to_be_bytes());
            (FLAG_TRANSITIVE, ATTR_LOCAL_PREF)
        }
        Attribute::Communities(communities) => {
            for community in communities {
                value.extend_from_slice(&community.to_be_bytes());
            }
            (FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_COMMUNITIES)
        }
        Attribute::MpReach {
            family,
            next_hop,
            link_local,
            prefixes,
        } => {
            let (afi, safi) = family.afi_safi();
            value.extend_from_slice(&afi.to_be_bytes());
            value.push(safi);
            match (next_hop, link_local) {
                (IpAddr::V4(next_hop), _) => {
                    value.push(4);
                    value.extend_from_slice(&next_hop.octets());
                }
                (IpAddr::V6(next_hop), Some(link_local)) => {
                    value.push(32);
                    value.extend_from_slice(&next_hop.octets());
                    value.extend_from_slice(&link_local.octets());
                }
                (IpAddr::V6(next_hop), None) => {
                    value.push(16);
                    value.extend_from_slice(&next_hop.octets());
                }
            }
            value.push(0);
            for prefix in prefixes {
                encode_prefix(prefix, &mut value);
            }
            (FLAG_OPTIONAL, ATTR_MP_REACH)
        }
        Attribute::MpUnreach { family, prefixes } => {
            let (afi, safi) = family.afi_safi();
            value.extend_from_slice(&afi.to_be_bytes());
            value.push(safi);
            for prefix in prefixes {
                encode_prefix(prefix, &mut value);
            }
            (FLAG_OPTIONAL, ATTR_MP_UNREACH)
        }
        Attribute::Other {
            flags,
            code,
            value: raw,
        } => {
            value.extend_from_slice(raw);
            (*flags & !FLAG_EXTENDED_LENGTH, *code)
        }
    };
    if value.len() > 255 {
        out.push(flags | FLAG_EXTENDED_LENGTH);
        out.push(code);
        out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    } else {
        out.push(flags);
        out.push(code);
        out.push(byte_len(value.len()));
    }
    out.extend_from_slice(&value);
}

/// A prefix as NLRI: its length in bits, then only the octets it covers.
fn encode_prefix(prefix: &IpNet, out: &mut Vec<u8>) {
    let len = prefix.prefix_len();
    out.push(len);
    let octets = usize::from(len).div_ceil(8);
    match prefix.network() {
        IpAddr::V4(address) => out.extend_from_slice(&address.octets()[..octets]),
        IpAddr::V6(address) => out.extend_from_slice(&address.octets()[..octets]),
    }
}

/// The octets a prefix takes as NLRI.
pub fn prefix_wire_len(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

// ---------------------------------------------------------------- decoding

/// The length a message announces in its header, once the header is in:
/// `Ok(None)` while fewer than [`HEADER_LEN`] octets have arrived.
pub fn message_len(buffer: &[u8]) -> Result<Option<usize>, Notification> {
    let Some(header) = buffer.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[..16].iter().any(|&octet| octet != 0xff) {
        return Err(Notification::new(
            error_code::HEADER,
            error_code::HEADER_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    let len = u16::from_be_bytes([header[16], header[17]]);
    let kind = header[18];
    let fits = match kind {
        TYPE_OPEN => len >= 29,
        TYPE_UPDATE => len >= 23,
        TYPE_NOTIFICATION => len >= 21,
        TYPE_KEEPALIVE => len == 19,
        TYPE_ROUTE_REFRESH => len >= 19,
        _ => {
            return Err(Notification::new(
                error_code::HEADER,
                error_code::HEADER_BAD_TYPE,
                vec![kind],
            ));
        }
    };
    if !fits || usize::from(len) > MAX_MESSAGE_LEN {
        return Err(Notification::new(
            error_code::HEADER,
            error_code::HEADER_BAD_LENGTH,
            len.to_be_bytes().to_vec(),
        ));
    }
    Ok(Some(usize::from(len)))
}

/// Decodes one whole message (header included, exactly as long as its
/// header says). `Err` is the NOTIFICATION to send before closing.
pub fn decode(message: &[u8]) -> Result<Message, Notification> {
    let len = message_len(message)?.ok_or_else(|| {
        Notification::new(
            error_code::HEADER,
            error_code::HEADER_BAD_LENGTH,
            Vec::new(),
        )
    })?;
    let body = message.get(HEADER_LEN..len).ok_or_else(|| {
        Notification::new(
            error_code::HEADER,
            error_code::HEADER_BAD_LENGTH,
            Vec::new(),
        )
    })?;
    match message[18] {
        TYPE_OPEN => decode_open(body).map(Message::Open),
        TYPE_UPDATE => decode_update(body).map(Message::Update),
        TYPE_NOTIFICATION => Ok(Message::Notification(Notification {
            code: body[0],
            subcode: body[1],
            data: body[2..].to_vec(),
        })),
        TYPE_KEEPALIVE => Ok(Message::Keepalive),
        TYPE_ROUTE_REFRESH => match body {
            [afi_high, afi_low, subtype, safi] => Ok(Message::RouteRefresh {
                afi: u16::from_be_bytes([*afi_high, *afi_low]),
                subtype: *subtype,
                safi: *safi,
            }),
            _ => Err(Notification::new(
                error_code::ROUTE_REFRESH,
                error_code::ROUTE_REFRESH_BAD_LENGTH,
                message.to_vec(),
            )),
        },
        kind => Err(Notification::new(
            error_code::HEADER,
            error_code::HEADER_BAD_TYPE,
            vec![kind],
        )),
    }
}

/// A cursor over a peer's octets: every read checks what is left.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Reader { rest }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

fn open_error(subcode: u8) -> Notification {
    Notification::new(error_code::OPEN, subcode, Vec::new())
}

fn decode_open(body: &[u8]) -> Result<Open, Notification> {
    let mut reader = Reader::new(body);
    let malformed = || open_error(0);
    let version = reader.u8().ok_or_else(malformed)?;
    if version != BGP_VERSION {
        return Err(Notification::new(
            error_code::OPEN,
            error_code::OPEN_UNSUPPORTED_VERSION,
            u16::from(BGP_VERSION).to_be_bytes().to_vec(),
        ));
    }
    let my_as = reader.u16().ok_or_else(malformed)?;
    let hold_time = reader.u16().ok_or_else(malformed)?;
    let identifier = Ipv4Addr::from(reader.u32().ok_or_else(malformed)?);
    let parameters_len = usize::from(reader.u8().ok_or_else(malformed)?);
    let parameters = reader.take(parameters_len).ok_or_else(malformed)?;
    if !reader.is_empty() {
        return Err(malformed());
    }
    let mut parameters = Reader::new(parameters);
    let mut capabilities = Vec::new();
    while !parameters.is_empty() {
        let kind = parameters.u8().ok_or_else(malformed)?;
        let len = usize::from(parameters.u8().ok_or_else(malformed)?);
        let value = parameters.take(len).ok_or_else(malformed)?;
        if kind != PARAM_CAPABILITIES {
            return Err(open_error(error_code::OPEN_UNSUPPORTED_PARAMETER));
        }
        let mut value = Reader::new(value);
        while !value.is_empty() {
            let code = value.u8().ok_or_else(malformed)?;
            let len = usize::from(value.u8().ok_or_else(malformed)?);
            let raw = value.take(len).ok_or_else(malformed)?;
            capabilities.push(decode_capability(code, raw).ok_or_else(malformed)?);
        }
    }
    Ok(Open {
        my_as,
        hold_time,
        identifier,
        capabilities,
    })
}

fn decode_capability(code: u8, raw: &[u8]) -> Option<Capability> {
    let mut value = Reader::new(raw);
    let capability = match code {
        CAP_MULTIPROTOCOL => {
            let afi = value.u16()?;
            value.u8()?;
            let safi = value.u8()?;
            Capability::Multiprotocol { afi, safi }
        }
        CAP_ROUTE_REFRESH => Capability::RouteRefresh,
        CAP_FOUR_OCTET_AS => Capability::FourOctetAs(value.u32()?),
        CAP_GRACEFUL_RESTART => {
            let flags_and_time = value.u16()?;
            let mut families = Vec::new();
            while !value.is_empty() {
                let afi = value.u16()?;
                let safi = value.u8()?;
                let flags = value.u8()?;
                families.push((afi, safi, flags & 0x80 != 0));
            }
            Capability::GracefulRestart {
                restarted: flags_and_time & 0x8000 != 0,
                restart_time: flags_and_time & 0x0fff,
                families,
            }
        }
        _ => {
            return Some(Capability::Other {
                code,
                value: raw.to_vec(),
            });
        }
    };
    // A known capability with octets left over is malformed.
    value.is_empty().then_some(capability)
}

fn update_error(subcode: u8) -> Notification {
    Notification::new(error_code::UPDATE, subcode, Vec::new())
}

fn decode_update(body: &[u8]) -> Result<Update, Notification> {
    let mut reader = Reader::new(body);
    let malformed = || update_error(error_code::UPDATE_MALFORMED_ATTRIBUTES);
    let withdrawn_len = usize::from(reader.u16().ok_or_else(malformed)?);
    let withdrawn = reader.take(withdrawn_len).ok_or_else(malformed)?;
    let attributes_len = usize::from(reader.u16().ok_or_else(malformed)?);
    let attributes = reader.take(attributes_len).ok_or_else(malformed)?;
    let nlri = reader.rest;
    let withdrawn = decode_prefixes_v4(withdrawn)
        .ok_or_else(|| update_error(error_code::UPDATE_INVALID_NETWORK))?;
    let announced =
        decode_prefixes_v4(nlri).ok_or_else(|| update_error(error_code::UPDATE_INVALID_NETWORK))?;
    let mut update = Update {
        withdrawn,
        announced,
        ..Update::default()
    };
    decode_attributes(attributes, &mut update)?;
    if update.treat_as_withdraw.is_none() {
        update.treat_as_withdraw = missing_well_known(&update);
    }
    Ok(update)
}

/// Reads the attributes into `update`. Errors that leave the routes
/// findable mark it treat-as-withdraw; only a broken MP_REACH or
/// MP_UNREACH (whose routes are then unknown) resets the session, as RFC
/// 7606 §3 and §7.11 ask.
fn decode_attributes(raw: &[u8], update: &mut Update) -> Result<(), Notification> {
    let mut reader = Reader::new(raw);
    let mut seen = [false; 256];
    while !reader.is_empty() {
        let Some((flags, code, value)) = read_attribute(&mut reader) else {
            // The rest cannot be split into attributes: what was read
            // stays, and the routes are treated as withdrawn.
            update.treat_as_withdraw = Some("an attribute overruns the attribute list".to_owned());
            return Ok(());
        };
        if std::mem::replace(&mut seen[usize::from(code)], true) {
            if matches!(code, ATTR_MP_REACH | ATTR_MP_UNREACH) {
                return Err(update_error(error_code::UPDATE_MALFORMED_ATTRIBUTES));
            }
            // A repeated attribute is dropped (RFC 7606 §3 g).
            continue;
        }
        match decode_attribute(flags, code, value) {
            Ok(attribute) => update.attributes.push(attribute),
            Err(AttributeError::WithdrawRoutes(why)) => {
                update.treat_as_withdraw.get_or_insert(why);
            }
            Err(AttributeError::ResetSession) => {
                return Err(update_error(error_code::UPDATE_OPTIONAL_ATTRIBUTE));
            }
        }
    }
    Ok(())
}

fn read_attribute<'a>(reader: &mut Reader<'a>) -> Option<(u8, u8, &'a [u8])> {
    let flags = reader.u8()?;
    let code = reader.u8()?;
    let len = if flags & FLAG_EXTENDED_LENGTH != 0 {
        usize::from(reader.u16()?)
    } else {
        usize::from(reader.u8()?)
    };
    Some((flags, code, reader.take(len)?))
}

enum AttributeError {
    WithdrawRoutes(String),
    ResetSession,
}

fn decode_attribute(flags: u8, code: u8, value: &[u8]) -> Result<Attribute, AttributeError> {
    let bad = |what: &str| AttributeError::WithdrawRoutes(format!("malformed {what} attribute"));
    let mut reader = Reader::new(value);
    let attribute = match code {
        ATTR_ORIGIN => {
            let origin = reader
                .u8()
                .filter(|o| *o <= 2)
                .ok_or_else(|| bad("ORIGIN"))?;
            Attribute::Origin(origin)
        }
        ATTR_AS_PATH => {
            let mut segments = Vec::new();
            while !reader.is_empty() {
                let kind = reader.u8().ok_or_else(|| bad("AS_PATH"))?;
                let count = usize::from(reader.u8().ok_or_else(|| bad("AS_PATH"))?);
                let mut numbers = Vec::with_capacity(count);
                for _ in 0..count {
                    numbers.push(reader.u32().ok_or_else(|| bad("AS_PATH"))?);
                }
                segments.push(match kind {
                    AS_SET => Segment::Set(numbers),
                    AS_SEQUENCE => Segment::Sequence(numbers),
                    AS_CONFED_SEQUENCE => Segment::ConfedSequence(numbers),
                    AS_CONFED_SET => Segment::ConfedSet(numbers),
                    _ => return Err(bad("AS_PATH")),
                });
            }
            Attribute::AsPath(segments)
        }
        ATTR_NEXT_HOP => {
            let address = reader.u32().ok_or_else(|| bad("NEXT_HOP"))?;
            Attribute::NextHop(Ipv4Addr::from(address))
        }
        ATTR_MED => Attribute::Med(reader.u32().ok_or_else(|| bad("MULTI_EXIT_DISC"))?),
        ATTR_LOCAL_PREF => Attribute::LocalPref(reader.u32().ok_or_else(|| bad("LOCAL_PREF"))?),
        ATTR_COMMUNITIES => {
            if value.is_empty() || value.len() % 4 != 0 {
                return Err(bad("COMMUNITIES"));
            }
            let mut communities = Vec::with_capacity(value.len() / 4);
            while let Some(community) = reader.u32() {
                communities.push(community);
            }
            Attribute::Communities(communities)
        }
        ATTR_MP_REACH => return decode_mp_reach(value),
        ATTR_MP_UNREACH => return decode_mp_unreach(value),
        _ => {
            return Ok(Attribute::Other {
                flags,
                code,
                value: value.to_vec(),
            });
        }
    };
    if !reader.is_empty() {
        return Err(AttributeError::WithdrawRoutes(format!(
            "attribute {code} is longer than its type allows"
        )));
    }
    Ok(attribute)
}

fn decode_mp_reach(value: &[u8]) -> Result<Attribute, AttributeError> {
    let mut reader = Reader::new(value);
    let afi = reader.u16().ok_or(AttributeError::ResetSession)?;
    let safi = reader.u8().ok_or(AttributeError::ResetSession)?;
    let next_hop_len = usize::from(reader.u8().ok_or(AttributeError::ResetSession)?);
    let next_hop = reader
        .take(next_hop_len)
        .ok_or(AttributeError::ResetSession)?;
    reader.u8().ok_or(AttributeError::ResetSession)?;
    let Some(family) = Family::from_afi_safi(afi, safi) else {
        // A family nativeroute did not offer: kept as it came, never read.
        return Ok(Attribute::Other {
            flags: FLAG_OPTIONAL,
            code: ATTR_MP_REACH,
            value: value.to_vec(),
        });
    };
    let (next_hop, link_local) = match next_hop_len {
        4 => {
            let mut octets = [0u8; 4];
            octets.copy_from_slice(next_hop);
            (IpAddr::V4(Ipv4Addr::from(octets)), None)
        }
        16 => (IpAddr::V6(ipv6_at(next_hop, 0)), None),
        32 => (
            IpAddr::V6(ipv6_at(next_hop, 0)),
            Some(ipv6_at(next_hop, 16)),
        ),
        _ => return Err(AttributeError::ResetSession),
    };
    let prefixes = decode_prefixes(family, reader.rest).ok_or(AttributeError::ResetSession)?;
    Ok(Attribute::MpReach {
        family,
        next_hop,
        link_local,
        prefixes,
    })
}

fn decode_mp_unreach(value: &[u8]) -> Result<Attribute, AttributeError> {
    let mut reader = Reader::new(value);
    let afi = reader.u16().ok_or(AttributeError::ResetSession)?;
    let safi = reader.u8().ok_or(AttributeError::ResetSession)?;
    let Some(family) = Family::from_afi_safi(afi, safi) else {
        return Ok(Attribute::Other {
            flags: FLAG_OPTIONAL,
            code: ATTR_MP_UNREACH,
            value: value.to_vec(),
        });
    };
    let prefixes = decode_prefixes(family, reader.rest).ok_or(AttributeError::ResetSession)?;
    Ok(Attribute::MpUnreach { family, prefixes })
}

fn decode_prefixes(family: Family, raw: &[u8]) -> Option<Vec<IpNet>> {
    Some(match family {
        Family::Ipv4Unicast => decode_prefixes_v4(raw)?
            .into_iter()
            .map(IpNet::V4)
            .collect(),
        Family::Ipv6Unicast => decode_prefixes_v6(raw)?
            .into_iter()
            .map(IpNet::V6)
            .collect(),
    })
}

fn ipv6_at(octets: &[u8], at: usize) -> Ipv6Addr {
    let mut address = [0u8; 16];
    address.copy_from_slice(&octets[at..at + 16]);
    Ipv6Addr::from(address)
}

/// Why an UPDATE with routes but without ORIGIN, AS_PATH or (for IPv4)
/// NEXT_HOP cannot be used (RFC 7606 §3 d: treat-as-withdraw).
fn missing_well_known(update: &Update) -> Option<String> {
    let has = |code: u8| {
        update.attributes.iter().any(|a| {
            matches!(
                (a, code),
                (Attribute::Origin(_), ATTR_ORIGIN)
                    | (Attribute::AsPath(_), ATTR_AS_PATH)
                    | (Attribute::NextHop(_), ATTR_NEXT_HOP)
            )
        })
    };
    let mp_routes = update
        .attributes
        .iter()
        .any(|a| matches!(a, Attribute::MpReach { prefixes, .. } if !prefixes.is_empty()));
    if update.announced.is_empty() && !mp_routes {
        return None;
    }
    let mut missing = Vec::new();
    if !has(ATTR_ORIGIN) {
        missing.push("ORIGIN");
    }
    if !has(ATTR_AS_PATH) {
        missing.push("AS_PATH");
    }
    if !update.announced.is_empty() && !has(ATTR_NEXT_HOP) {
        missing.push("NEXT_HOP");
    }
    (!missing.is_empty()).then(|| format!("missing well-known attribute {}", missing.join(", ")))
}

fn decode_prefixes_v4(mut raw: &[u8]) -> Option<Vec<Ipv4Net>> {
    let mut prefixes = Vec::new();
    while let Some((&len, rest)) = raw.split_first() {
        if len > 32 {
            return None;
        }
        let octets = usize::from(len).div_ceil(8);
        let bytes = rest.get(..octets)?;
        let mut address = [0u8; 4];
        address[..octets].copy_from_slice(bytes);
        prefixes.push(Ipv4Net::new(Ipv4Addr::from(address), len).ok()?.trunc());
        raw = &rest[octets..];
    }
    Some(prefixes)
}

fn decode_prefixes_v6(mut raw: &[u8]) -> Option<Vec<Ipv6Net>> {
    let mut prefixes = Vec::new();
    while let Some((&len, rest)) = raw.split_first() {
        if len > 128 {
            return None;
        }
        let octets = usize::from(len).div_ceil(8);
        let bytes = rest.get(..octets)?;
        let mut address = [0u8; 16];
        address[..octets].copy_from_slice(bytes);
        prefixes.push(Ipv6Net::new(Ipv6Addr::from(address), len).ok()?.trunc());
        raw = &rest[octets..];
    }
    Some(prefixes)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
