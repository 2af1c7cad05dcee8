//! `nativeroute withdraw`: the uninstall path. Removes nativeroute's own
//! routes from one router or all of them, and nothing else: foreign routes
//! are listed and left. It shows what it would remove first and changes
//! nothing without `--yes`. It does not read the nodes: every owned route
//! goes, so stop the controller first, or it puts them back.

use std::fmt::Write as _;

use anyhow::bail;
use nativeroute_router_drivers::{Change, DriverError};

use crate::config::{Config, RouterConfig};
use crate::routers;

/// Which routers to withdraw from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routers {
    All,
    Named(String),
}

/// Withdraws (with `confirmed`) or shows what it would withdraw; returns
/// whether every router was reached and every removal took.
pub async fn withdraw(config: Config, which: Routers, confirmed: bool) -> anyhow::Result<bool> {
    let selected: Vec<&RouterConfig> = match &which {
        Routers::All => config.routers.iter().collect(),
        Routers::Named(name) => config
            .routers
            .iter()
            .filter(|router| router.name.as_str() == name)
            .collect(),
    };
    if let (Routers::Named(name), true) = (&which, selected.is_empty()) {
        let known: Vec<&str> = config.routers.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "no router {name:?} in the config (known: {})",
            known.join(", ")
        );
    }
    let mut all_ok = true;
    for router in selected {
        match withdraw_from(&config, router, confirmed).await {
            Ok((report, ok)) => {
                all_ok &= ok;
                print!("{report}");
            }
            Err(err) => {
                all_ok = false;
                println!("router {}: FAILED: {err}", router.name);
            }
        }
    }
    if !confirmed {
        println!(
            "nothing was changed; add --yes to remove these routes (stop the controller first)"
        );
    }
    Ok(all_ok)
}

/// One router: the report to print, and whether every removal took.
async fn withdraw_from(
    config: &Config,
    router: &RouterConfig,
    confirmed: bool,
) -> Result<(String, bool), DriverError> {
    let mut driver = routers::connect(router, &config.ownership()).await?;
    let listed = driver.list().await?;
    let removals: Vec<Change> = listed.owned.iter().copied().map(Change::Remove).collect();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "router {}: {} routes of nativeroute's to remove, {} foreign routes left alone",
        router.name,
        removals.len(),
        listed.foreign.len()
    );
    if !confirmed {
        for change in &removals {
            let _ = writeln!(report, "  - {change}");
        }
        return Ok((report, true));
    }
    let outcomes = driver.apply(&removals).await?;
    let mut ok = true;
    for (change, outcome) in removals.iter().zip(&outcomes) {
        match outcome {
            Ok(()) => {
                let _ = writeln!(report, "  - {change}: removed");
            }
            Err(err) => {
                ok = false;
                let _ = writeln!(report, "  ! {change}: {err}");
            }
        }
    }
    Ok((report, ok && outcomes.len() == removals.len()))
}
