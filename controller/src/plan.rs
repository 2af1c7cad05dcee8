//! `nativeroute plan`: what a sync would change on every router, computed
//! exactly as `run` computes it, and nothing changed anywhere (no route, no
//! state file, nothing written on a Node).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use nativeroute_router_drivers::{Action, Change, DriverError, ForeignRoute};
use serde_json::json;
use std::path::Path;

use crate::config::{Config, NodesConfig, RouterConfig};
use crate::desired::{IgnoredOverride, RouterDesired};
use crate::inventory::file::FileInventory;
use crate::inventory::kubernetes;
use crate::reconcile::Reconciler;
use crate::report::{LogReporter, Reporter};
use crate::routers;
use crate::sync::{SyncPlan, diff};

/// What `run` would want of the routers now.
struct Wanted {
    desired: BTreeMap<String, RouterDesired>,
    ignored_overrides: Vec<IgnoredOverride>,
}

/// The desired routes per router, as `run` would compute them now.
async fn reconcile_now(
    config: &Arc<Config>,
    reporter: Arc<dyn Reporter>,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<Wanted> {
    let mut reconciler = Reconciler::new(config.clone(), reporter);
    let snapshot = match &config.nodes {
        NodesConfig::File { path } => {
            let mut inventory = FileInventory::open(path)?;
            reconciler.resume_after(&inventory.state().next);
            inventory.read()?
        }
        NodesConfig::Kubernetes { .. } => kubernetes::list_nodes(config, kubeconfig).await?,
    };
    let desired = reconciler.apply(&snapshot, true).desired;
    Ok(Wanted {
        desired,
        ignored_overrides: reconciler.ignored_overrides(),
    })
}

/// How `plan` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// For people: one line per change.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// What a plan found, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOutcome {
    /// Every router was reached and listed.
    pub all_reached: bool,
    /// Some router would change, or holds withdrawals back.
    pub changes_pending: bool,
}

/// One router's plan, or why there is none.
struct RouterPlan {
    name: String,
    listed: Result<Listed, String>,
}

struct Listed {
    plan: SyncPlan,
    held: usize,
    desired: usize,
    foreign: Vec<ForeignRoute>,
}

/// Prints the plan of every router.
pub async fn print_plan(
    config: Config,
    kubeconfig: Option<&Path>,
    format: PlanFormat,
) -> anyhow::Result<PlanOutcome> {
    let config = Arc::new(config);
    let reporter: Arc<dyn Reporter> =
        Arc::new(LogReporter::new(std::time::Duration::from_secs(600)));
    let reconciled = reconcile_now(&config, reporter, kubeconfig).await?;
    let mut plans = Vec::new();
    for router in &config.routers {
        let name = router.name.as_str();
        let Some(want) = reconciled.desired.get(name) else {
            continue;
        };
        let listed = plan_router(&config, router, want)
            .await
            .map_err(|err| err.to_string());
        plans.push(RouterPlan {
            name: name.to_owned(),
            listed,
        });
    }
    match format {
        PlanFormat::Text => print!("{}", as_text(&reconciled.ignored_overrides, &plans)),
        PlanFormat::Json => println!("{:#}", as_json(&reconciled.ignored_overrides, &plans)),
    }
    Ok(PlanOutcome {
        all_reached: plans.iter().all(|plan| plan.listed.is_ok()),
        changes_pending: plans.iter().any(|plan| {
            plan.listed
                .as_ref()
                .is_ok_and(|listed| !listed.plan.has_no_changes() || listed.plan.withheld.is_some())
        }),
    })
}

async fn plan_router(
    config: &Config,
    router: &RouterConfig,
    want: &RouterDesired,
) -> Result<Listed, DriverError> {
    let mut driver = routers::connect(router, &config.ownership()).await?;
    let routes = driver.list().await?;
    let state = diff::RouterState {
        owned: diff::Held::from_listed(&routes.owned, want),
        foreign: routes.foreign.clone(),
        own_addresses: driver.own_addresses().await?,
        in_step_with: None,
    };
    let budget = diff::Budget::fresh(&config.removal_guard, state.owned.len());
    Ok(Listed {
        plan: diff::diff(want, &state, &budget),
        held: routes.owned.len(),
        desired: want.routes.len(),
        foreign: routes.foreign,
    })
}

fn as_text(ignored: &[IgnoredOverride], plans: &[RouterPlan]) -> String {
    let mut out = String::new();
    for ignored in ignored {
        let _ = writeln!(out, "node {}: override ignored: {ignored}", ignored.node);
    }
    for RouterPlan { name, listed } in plans {
        match listed {
            Ok(listed) => {
                let plan = &listed.plan;
                let _ = writeln!(
                    out,
                    "router {name}: {} to add, {} to replace, {} to remove ({} routes held, {} desired)",
                    plan.count(Action::Add),
                    plan.count(Action::Replace),
                    plan.count(Action::Remove),
                    listed.held,
                    listed.desired,
                );
                let _ = write!(out, "{plan}");
                for foreign in &listed.foreign {
                    let _ = writeln!(out, "  = foreign {foreign} (left alone)");
                }
            }
            Err(err) => {
                let _ = writeln!(out, "router {name}: cannot plan: {err}");
            }
        }
    }
    out
}

fn as_json(ignored: &[IgnoredOverride], plans: &[RouterPlan]) -> serde_json::Value {
    let routers: Vec<serde_json::Value> = plans
        .iter()
        .map(|RouterPlan { name, listed }| match listed {
            Ok(listed) => {
                let plan = &listed.plan;
                json!({
                    "name": name,
                    "reached": true,
                    "routesHeld": listed.held,
                    "routesDesired": listed.desired,
                    "changes": plan.changes.iter().map(change_json).collect::<Vec<_>>(),
                    "withheld": plan.withheld.as_ref().map(|withheld| json!({
                        "reason": withheld.reason.to_string(),
                        "changes": withheld.changes.iter().map(|(change, node)| {
                            let mut value = change_json(change);
                            value["node"] = json!(node);
                            value
                        }).collect::<Vec<_>>(),
                    })),
                    "blockedByForeign": plan.blocked_by_foreign.iter().map(|(route, node, foreign)| json!({
                        "dst": route.dst.to_string(),
                        "via": route.via.to_string(),
                        "node": node,
                        "foreign": foreign.to_string(),
                    })).collect::<Vec<_>>(),
                    "ignoredOverrides": plan.ignored_overrides.iter().map(override_json).collect::<Vec<_>>(),
                    "postponedRemovals": plan.postponed_removals,
                    "foreign": listed.foreign.iter().map(|foreign| json!({
                        "dst": foreign.dst.to_string(),
                        "via": foreign.via.map(|via| via.to_string()),
                        "detail": foreign.detail,
                    })).collect::<Vec<_>>(),
                })
            }
            Err(err) => json!({"name": name, "reached": false, "error": err}),
        })
        .collect();
    json!({
        "ignoredOverrides": ignored.iter().map(override_json).collect::<Vec<_>>(),
        "routers": routers,
    })
}

fn change_json(change: &Change) -> serde_json::Value {
    let route = change.route();
    let mut value = json!({
        "action": change.action().as_str(),
        "dst": route.dst.to_string(),
        "via": route.via.to_string(),
    });
    if let Change::Replace { old_via, .. } = change {
        value["oldVia"] = json!(old_via.to_string());
    }
    value
}

fn override_json(ignored: &IgnoredOverride) -> serde_json::Value {
    json!({
        "node": ignored.node,
        "value": ignored.value.to_string(),
        "reason": ignored.why,
        "instead": ignored.instead.map(|via| via.to_string()),
    })
}
