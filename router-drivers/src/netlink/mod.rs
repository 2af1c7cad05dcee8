//! The netlink driver (being written).
