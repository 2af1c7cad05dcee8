//! nativeroute: gives every node a subnet of the container network and keeps
//! the routers' routes to those subnets in step with the nodes.
//!
//! One module per concern: [`config`] (the YAML file), [`ipam`] (subnets
//! from the pool), [`inventory`] (where nodes come from), [`desired`] (which
//! routes each router should hold), [`sync`] (one worker per router that
//! makes it so), [`plan`] and [`check`] (the dry-run commands), [`lab`] (the
//! seed topology in network namespaces).

pub mod config;
pub mod inventory;
pub mod ipam;
pub mod lab;
