//! The netlink driver suite (`netlink_driver/suite.rs`) with the driver as
//! it reads a small router: everyone else's routes read in full at every
//! read.

/// The driver's default.
const HEAR_OTHERS_FROM: Option<usize> = None;

#[path = "netlink_driver/suite.rs"]
mod suite;
