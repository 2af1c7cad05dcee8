//! A batch CLI (vtysh, iproute2): the whole script on the standard input of
//! one remote command, its report mapped back to the changes. Where the CLI
//! carries on after a failed line (vtysh), what may only follow a taken
//! line (the removal of a replaced next hop) goes in a second exec, for the
//! changes whose first lines were taken.

use super::{Script, last_lines, outcomes_of, output_error};
use crate::fence::all_fenced;
use crate::ssh::SshRouter;
use crate::ssh::session::{Connection, SshTarget};
use crate::ssh::vendor::{ApplyOptions, Vendor};
use crate::{Change, ChangeError, ChangeOutcome, DriverError, Fence, Ownership};

/// One batch, and everything needed to run it.
pub(super) struct Run<'a> {
    pub(super) connection: &'a Connection,
    pub(super) target: &'a SshTarget,
    pub(super) router: &'a SshRouter,
    pub(super) options: &'a ApplyOptions,
    pub(super) changes: &'a [Change],
    pub(super) fence: &'a Fence,
}

impl Run<'_> {
    /// Runs `script`, then what may only follow what it took, then the
    /// save; the fence is looked at before each.
    pub(super) async fn apply(&self, script: &Script) -> Result<Vec<ChangeOutcome>, DriverError> {
        if self.fence.is_raised() {
            return Ok(all_fenced(self.changes));
        }
        let mut outcomes = self.exec(script).await?;
        let vendor = self.router.vendor.profile();
        let second = once_taken(
            vendor,
            self.options,
            &self.router.ownership,
            self.changes,
            &outcomes,
        );
        if second.changes_anything() {
            self.settle(&second, &mut outcomes).await?;
        }
        self.save(&outcomes).await?;
        Ok(outcomes)
    }

    /// The second exec: each of its changes takes the outcome of its own
    /// lines there. Cut short by the fence, the new next hop of a replace
    /// stands beside the old one; the next leader's list shows both and
    /// removes the stale one.
    async fn settle(
        &self,
        second: &Script,
        outcomes: &mut [ChangeOutcome],
    ) -> Result<(), DriverError> {
        let settled = if self.fence.is_raised() {
            all_fenced(self.changes)
        } else {
            self.exec(second).await?
        };
        for index in second.owners.iter().flatten() {
            if let Err(error) = &settled[*index] {
                outcomes[*index] = Err(match error {
                    ChangeError::Refused { dst, message } => ChangeError::Refused {
                        dst: *dst,
                        message: format!(
                            "the new next hop is in, removing the old one failed: {message}"
                        ),
                    },
                    other => other.clone(),
                });
            }
        }
        Ok(())
    }

    /// One exec of `script`, and what became of each change.
    async fn exec(&self, script: &Script) -> Result<Vec<ChangeOutcome>, DriverError> {
        let vendor = self.router.vendor.profile();
        let mut stdin = script.lines.join("\n");
        stdin.push('\n');
        let command = vendor.batch_command(self.router.cli());
        let run = self.connection.exec(self.target, &command, &stdin).await?;
        let report = vendor
            .batch_report(&run.stdout, &run.stderr, run.status, &script.lines)
            .map_err(|message| output_error(self.target, "applying a batch", message))?;
        outcomes_of(self.target, self.changes, script, &report)
    }

    /// Saves after a batch every change of which took effect. A save is one
    /// more write: a deposed leader leaves it to the next one.
    async fn save(&self, outcomes: &[ChangeOutcome]) -> Result<(), DriverError> {
        let vendor = self.router.vendor.profile();
        let all_taken = outcomes.iter().all(Result::is_ok);
        let Some(save) = vendor.save_command(self.router.cli()) else {
            return Ok(());
        };
        if !self.router.save_config || !all_taken || self.fence.is_raised() {
            return Ok(());
        }
        let saved = self.connection.exec(self.target, &save, "").await?;
        if saved.status != Some(0) {
            // The routes are in place; only the startup config lags, and
            // the next batch saves again.
            tracing::warn!(
                router = %self.target.router,
                command = %save,
                output = %last_lines(&saved.stderr, &saved.stdout),
                "saving the configuration failed"
            );
        }
        Ok(())
    }
}

/// The lines that may only follow what the first exec took: those of the
/// changes whose outcome there was `Ok`.
fn once_taken(
    vendor: &dyn Vendor,
    options: &ApplyOptions,
    ownership: &Ownership,
    changes: &[Change],
    outcomes: &[ChangeOutcome],
) -> Script {
    let rendered = changes
        .iter()
        .zip(outcomes)
        .enumerate()
        .filter(|(_, (_, outcome))| outcome.is_ok())
        .map(|(index, (change, _))| (index, vendor.render_once_taken(change, ownership)))
        .filter(|(_, lines)| !lines.is_empty());
    Script::new(vendor, options, rendered)
}

#[cfg(test)]
mod tests {
    use super::once_taken;
    use crate::ssh::VendorName;
    use crate::ssh::vendor::ApplyOptions;
    use crate::{Change, ChangeError, Ownership, Route};

    fn route(dst: &str, via: &str) -> Route {
        Route::new(
            dst.parse().expect("a prefix"),
            via.parse().expect("an address"),
        )
    }

    fn options() -> ApplyOptions {
        ApplyOptions {
            save: false,
            commit_confirm: None,
            session_name: String::new(),
        }
    }

    fn ownership() -> Ownership {
        Ownership {
            pool: vec!["11.11.0.0/16".parse().expect("a prefix")],
            netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
            route_tag: Ownership::DEFAULT_ROUTE_TAG,
            bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
        }
    }

    fn replace(dst: &str, via: &str, old_via: &str) -> Change {
        Change::Replace {
            route: route(dst, via),
            old_via: old_via.parse().expect("an address"),
        }
    }

    #[test]
    fn frr_removes_a_replaced_next_hop_only_after_its_new_one_was_taken() {
        let changes = [
            replace("11.11.1.0/24", "192.168.3.4", "192.168.3.3"),
            replace("11.11.2.0/24", "192.168.3.6", "192.168.3.5"),
            Change::Add(route("11.11.3.0/24", "192.168.3.7")),
        ];
        let frr = VendorName::Frr.profile();
        let first: Vec<String> = changes
            .iter()
            .flat_map(|change| frr.render(change, &ownership()))
            .collect();
        assert!(
            first.iter().all(|line| !line.starts_with("no ")),
            "the batch itself removes nothing: {first:?}"
        );
        let outcomes = [
            Err(ChangeError::Refused {
                dst: changes[0].route().dst,
                message: "% Unknown command".to_owned(),
            }),
            Ok(()),
            Ok(()),
        ];

        let second = once_taken(frr, &options(), &ownership(), &changes, &outcomes);

        assert_eq!(
            second.lines,
            ["no ip route 11.11.2.0/24 192.168.3.5 tag 1111"]
        );
        assert_eq!(second.owners, [Some(1)]);
    }

    #[test]
    fn linux_needs_no_second_run_since_ip_batch_stops_at_a_refused_line() {
        let changes = [replace("11.11.1.0/24", "192.168.3.4", "192.168.3.3")];
        let linux = VendorName::Linux.profile();
        let second = once_taken(linux, &options(), &ownership(), &changes, &[Ok(())]);
        assert!(!second.changes_anything(), "{:?}", second.lines);
        assert_eq!(
            linux.render(&changes[0], &ownership()),
            [
                "route append 11.11.1.0/24 via 192.168.3.4 proto 203",
                "route del 11.11.1.0/24 via 192.168.3.3 proto 203"
            ]
        );
    }
}
