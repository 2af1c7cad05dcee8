//! nativeroute: gives every node a subnet of the container network and keeps
//! the routers' routes to those subnets in step with the nodes.
//!
//! One module per concern: [`config`] (the YAML file), [`inventory`] (where
//! nodes come from), [`ipam`] (subnets from the pool), [`reconcile`] (nodes
//! to subnets to desired routes), [`desired`] (which routes each router
//! should hold), [`sync`] (one worker per router that makes it so),
//! [`report`] (node events), [`plan`] and [`check`] (the dry-run commands),
//! [`run`] (the controller), [`lab`] (the seed topology in namespaces).

pub mod announced;
pub mod check;
pub mod cluster_status;
pub mod config;
pub mod desired;
pub mod health;
pub mod inventory;
pub mod ipam;
pub mod lab;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod reload;
pub mod report;
pub mod routers;
pub mod run;
pub mod signals;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod withdraw;
