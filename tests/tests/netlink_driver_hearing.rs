//! The netlink driver suite (`netlink_driver/suite.rs`) with the driver as
//! it reads a router carrying a full Internet table: our routes from
//! filtered dumps, everyone else's read in full once and then kept from the
//! kernel's announcements. Forced here on small routers, so that every
//! guarantee of the suite (foreign routes never taken, drift seen, a
//! namespace made again) is proven for that way of reading too.

/// Hear everyone else's routes whatever their number.
const HEAR_OTHERS_FROM: Option<usize> = Some(0);

#[path = "netlink_driver/suite.rs"]
mod suite;
