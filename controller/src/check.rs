//! `nativeroute check`: the config is valid, the node inventory readable,
//! and every router reachable (listing its routes proves access). A router
//! with a CLI is probed first, step by step (prompt, paging, echo,
//! configuration mode), so that a first contact says what is wrong before
//! any batch is sent.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, NodesConfig};
use crate::inventory::file::FileInventory;
use crate::inventory::kubernetes;
use crate::routers;

/// Prints one line per check; returns whether all passed.
pub async fn run_checks(config: Config, kubeconfig: Option<&Path>) -> bool {
    let config = Arc::new(config);
    let mut ok = true;
    println!(
        "config: ok ({} routers, pool {})",
        config.routers.len(),
        pool_text(&config)
    );
    match &config.nodes {
        NodesConfig::File { path } => {
            match FileInventory::open(path).and_then(|mut inv| inv.read()) {
                Ok(snapshot) => {
                    println!(
                        "inventory {}: {} nodes",
                        path.display(),
                        snapshot.nodes.len()
                    );
                    for problem in &snapshot.problems {
                        println!("  ! node {}: {}", problem.node, problem.message);
                    }
                }
                Err(err) => {
                    ok = false;
                    println!("inventory: FAILED: {err}");
                }
            }
        }
        NodesConfig::Kubernetes { selector, .. } => {
            match kubernetes::list_nodes(&config, kubeconfig).await {
                Ok(snapshot) => {
                    println!(
                        "nodes: {} Kubernetes Nodes{}",
                        snapshot.nodes.iter().filter(|n| n.is_listed()).count(),
                        if selector.is_empty() {
                            String::new()
                        } else {
                            format!(" matching {selector:?}")
                        }
                    );
                    for problem in &snapshot.problems {
                        println!("  ! node {}: {}", problem.node, problem.message);
                    }
                }
                Err(err) => {
                    ok = false;
                    println!("nodes: FAILED: {err:#}");
                }
            }
        }
    }
    for router in &config.routers {
        let name = router.name.as_str();
        let checked = match routers::connect(router, &config.ownership()).await {
            Ok(mut driver) => match probe(name, &mut *driver).await {
                Ok(()) => driver
                    .list()
                    .await
                    .map(|routes| (driver.describe(), routes)),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        match checked {
            Ok((how, routes)) => println!(
                "router {name}: ok ({how}): {} owned routes, {} foreign routes inside the pool",
                routes.owned.len(),
                routes.foreign.len()
            ),
            Err(err) => {
                ok = false;
                println!("router {name}: FAILED: {err}");
            }
        }
    }
    ok
}

/// Prints each probe step of a router; a failed step fails the router.
async fn probe(
    name: &str,
    driver: &mut dyn nativeroute_router_drivers::RouterDriver,
) -> Result<(), nativeroute_router_drivers::DriverError> {
    let steps = driver.probe().await?;
    let mut failed = None;
    for step in steps {
        match step.result {
            Ok(seen) => println!("router {name}: {}: ok ({seen})", step.what),
            Err(error) => {
                println!("router {name}: {}: FAILED: {error}", step.what);
                failed = Some((step.what, error));
            }
        }
    }
    match failed {
        None => Ok(()),
        Some((what, error)) => Err(nativeroute_router_drivers::DriverError::Request {
            router: name.to_owned(),
            operation: what,
            message: error,
        }),
    }
}

fn pool_text(config: &Config) -> String {
    config
        .pool
        .cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
