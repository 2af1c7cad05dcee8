//! `nativeroute plan`: what a sync would change on every router, computed
//! exactly as `run` computes it, and nothing changed anywhere (no route, no
//! state file, nothing written on a Node).

use std::fmt::Write as _;
use std::sync::Arc;

use nativeroute_router_drivers::Action;
use std::path::Path;

use crate::config::{Config, NodesConfig};
use crate::inventory::file::FileInventory;
use crate::inventory::kubernetes;
use crate::reconcile::{Reconciled, Reconciler};
use crate::report::{LogReporter, Reporter};
use crate::routers;
use crate::sync::diff;

/// The desired routes per router, as `run` would compute them now.
async fn reconcile_now(
    config: &Arc<Config>,
    reporter: Arc<dyn Reporter>,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<Reconciled> {
    let mut reconciler = Reconciler::new(config.clone(), reporter);
    let snapshot = match &config.nodes {
        NodesConfig::File { path } => {
            let mut inventory = FileInventory::open(path)?;
            reconciler.resume_after(&inventory.state().next);
            inventory.read()?
        }
        NodesConfig::Kubernetes { .. } => kubernetes::list_nodes(config, kubeconfig).await?,
    };
    Ok(reconciler.apply(&snapshot, true))
}

/// Prints the plan of every router; returns false if a router could not be reached.
pub async fn print_plan(config: Config, kubeconfig: Option<&Path>) -> anyhow::Result<bool> {
    let config = Arc::new(config);
    let reporter: Arc<dyn Reporter> =
        Arc::new(LogReporter::new(std::time::Duration::from_secs(600)));
    let reconciled = reconcile_now(&config, reporter, kubeconfig).await?;
    for ignored in &reconciled.ignored_overrides {
        println!("node {}: override ignored: {ignored}", ignored.node);
    }
    let desired = reconciled.desired;
    let mut all_reached = true;
    for router in &config.routers {
        let name = router.name.as_str();
        let Some(want) = desired.get(name) else {
            continue;
        };
        let mut out = String::new();
        let listed = match routers::connect(router, &config.ownership()).await {
            Ok(mut driver) => match driver.list().await {
                Ok(routes) => driver
                    .own_addresses()
                    .await
                    .map(|own_addresses| (routes, own_addresses)),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        match listed {
            Ok((routes, own_addresses)) => {
                let state = diff::RouterState {
                    owned: diff::Held::from_listed(&routes.owned, want),
                    foreign: routes.foreign.clone(),
                    own_addresses,
                };
                let budget = diff::Budget::fresh(&config.removal_guard, state.owned.len());
                let plan = diff::diff(want, &state, &budget);
                let _ = writeln!(
                    out,
                    "router {name}: {} to add, {} to replace, {} to remove ({} routes held, {} desired)",
                    plan.count(Action::Add),
                    plan.count(Action::Replace),
                    plan.count(Action::Remove),
                    routes.owned.len(),
                    want.routes.len(),
                );
                let _ = write!(out, "{plan}");
                for foreign in &routes.foreign {
                    let _ = writeln!(out, "  = foreign {foreign} (left alone)");
                }
            }
            Err(err) => {
                all_reached = false;
                let _ = writeln!(out, "router {name}: cannot plan: {err}");
            }
        }
        print!("{out}");
    }
    Ok(all_reached)
}
