use ipnet::IpNet;

/// What makes a route nativeroute's: its destination lies in a pool CIDR and
/// it carries the mark of the router's kind (netlink protocol number, CLI tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    pub pool: Vec<IpNet>,
    /// Kernel route protocol number (`ip route … proto N`); 0xcb by default.
    pub netlink_protocol: u8,
    /// Route tag on CLIs that have one; 1111 by default.
    pub route_tag: u32,
    /// The BGP community on every route nativeroute announces, as one
    /// 32-bit value (`ASN:value` is `ASN << 16 | value`); 64512:1111 by
    /// default.
    pub bgp_community: u32,
}

impl Ownership {
    pub const DEFAULT_NETLINK_PROTOCOL: u8 = 0xcb;
    pub const DEFAULT_ROUTE_TAG: u32 = 1111;
    /// 64512:1111: the first private AS number (RFC 6996), and the route
    /// tag's number, so that one mark reads the same everywhere.
    pub const DEFAULT_BGP_COMMUNITY: u32 = (64512 << 16) | 1111;

    /// Whether `dst` is inside the pool, i.e. a route nativeroute may own.
    pub fn in_pool(&self, dst: &IpNet) -> bool {
        self.pool.iter().any(|cidr| cidr.contains(dst))
    }
}
