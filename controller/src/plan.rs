//! `nativeroute plan`: what a sync would change on every router, computed
//! exactly as `run` computes it, and nothing changed anywhere (no route, no
//! state file, nothing written on a Node).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use nativeroute_router_drivers::Action;
use std::path::Path;

use crate::config::{Config, NodesConfig};
use crate::desired::RouterDesired;
use crate::inventory::file::FileInventory;
use crate::inventory::kubernetes;
use crate::reconcile::Reconciler;
use crate::report::{LogReporter, Reporter};
use crate::routers;
use crate::sync::diff;

/// The desired routes per router, as `run` would compute them now.
pub async fn desired_routes(
    config: &Arc<Config>,
    reporter: Arc<dyn Reporter>,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<BTreeMap<String, RouterDesired>> {
    let mut reconciler = Reconciler::new(config.clone(), reporter);
    let snapshot = match &config.nodes {
        NodesConfig::File { path } => {
            let mut inventory = FileInventory::open(path)?;
            reconciler.resume_after(&inventory.state().next);
            inventory.read()?
        }
        NodesConfig::Kubernetes { .. } => kubernetes::list_nodes(config, kubeconfig).await?,
    };
    Ok(reconciler.apply(&snapshot, true).desired)
}

/// Prints the plan of every router; returns false if a router could not be reached.
pub async fn print_plan(config: Config, kubeconfig: Option<&Path>) -> anyhow::Result<bool> {
    let config = Arc::new(config);
    let reporter: Arc<dyn Reporter> =
        Arc::new(LogReporter::new(std::time::Duration::from_secs(600)));
    let desired = desired_routes(&config, reporter, kubeconfig).await?;
    let mut all_reached = true;
    for router in &config.routers {
        let name = router.name.as_str();
        let Some(want) = desired.get(name) else {
            continue;
        };
        let mut out = String::new();
        let listed = match routers::connect(router, &config.ownership()).await {
            Ok(mut driver) => driver.list().await,
            Err(err) => Err(err),
        };
        match listed {
            Ok(routes) => {
                let held = diff::Held::from_listed(&routes.owned, want);
                let plan = diff::diff(want, &held, &routes.foreign, &config.removal_guard);
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
