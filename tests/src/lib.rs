//! Shared support for the end-to-end suites: network namespaces, processes,
//! labs. Every test builds its world through here and tears it down even when
//! it fails.

pub mod apiserver;
pub mod bgp_peers;
pub mod frr;
pub mod kube_lab;
pub mod lab;
pub mod netns;
pub mod route_monitor;
pub mod scripted_ssh;
pub mod ssh_router;
pub mod sshd;
