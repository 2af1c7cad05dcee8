//! Kernel route protocol numbers that belong to somebody: the kernel's own,
//! the routing daemons' of iproute2's rt_protos, and FRR's (zebra installs
//! each of its protocols with its own number). nativeroute must never
//! claim one of them as its mark, or it would own that daemon's routes.

/// The name of a route protocol that is in use by someone, if it is.
pub fn known_route_protocol(protocol: u8) -> Option<&'static str> {
    Some(match protocol {
        0 => "unspec",
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        8 => "gated",
        9 => "ra",
        10 => "mrt",
        11 => "zebra",
        12 => "bird",
        13 => "dnrouted",
        14 => "xorp",
        15 => "ntk",
        16 => "dhcp",
        17 => "mrouted",
        18 => "keepalived",
        42 => "babel",
        99 => "openr",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        190 => "ripng (FRR)",
        191 => "nhrp (FRR)",
        192 => "eigrp",
        193 => "ldp (FRR)",
        194 => "sharp (FRR)",
        195 => "pbr (FRR)",
        196 => "static (FRR)",
        197 => "openfabric (FRR)",
        198 => "srte (FRR)",
        _ => return None,
    })
}
