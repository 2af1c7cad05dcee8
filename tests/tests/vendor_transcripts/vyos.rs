//! VyOS: operational mode at login, `configure`, `commit`, `save` and
//! `exit`; `discard` and `exit` after an error. VyOS prints `[edit]` above
//! every configuration prompt.

use nativeroute_router_drivers::ssh::VendorName;
use nativeroute_tests::scripted_ssh::Step;

use nativeroute_router_drivers::Change;

use super::{
    Transcript, USER, address, all_fenced, all_refused, answered, apply, foreign, list, net, owned,
    owned_in_every_list, quiet, replace_refused, route, summary, term_ends,
};

const OPERATIONAL: &str = "vyos@edge-1:~$ ";
const EDIT: &str = "[edit]\r\nvyos@edge-1# ";
const GREETING: &str = "Welcome to VyOS!\r\n\r\n\
                        Version:          VyOS 1.4.0\r\n\
                        Release train:    sagitta\r\n\r\n\
                        Last login: Mon Nov 23 10:00:00 2026 from 10.0.0.5\r\n\
                        vyos@edge-1:~$ ";

fn terminal() -> Vec<Step> {
    let mut steps = vec![Step::NewShell];
    steps.extend(quiet(
        &["set terminal length 0", "set terminal width 511"],
        OPERATIONAL,
    ));
    steps
}

fn configuration() -> Vec<Step> {
    let mut steps = terminal();
    steps.push(answered(
        r#"show configuration commands | match "protocols static""#,
        "set protocols static route 0.0.0.0/0 next-hop 10.0.0.254\r\n\
         set protocols static route 10.20.0.0/16 description 'nativeroute-1111'\r\n\
         set protocols static route 10.20.0.0/16 next-hop 192.168.3.1\r\n\
         set protocols static route 11.11.1.0/24 description 'nativeroute-1111'\r\n\
         set protocols static route 11.11.1.0/24 next-hop 192.168.3.3\r\n\
         set protocols static route 11.11.2.0/24 next-hop 192.168.3.4\r\n\
         set protocols static route 11.11.6.0/24 description 'nativeroute-1111'\r\n\
         set protocols static route 11.11.6.0/24 next-hop 192.168.3.6 disable\r\n\
         set protocols static route 11.11.9.0/24 blackhole distance '250'\r\n\
         set protocols static route6 fd11:11:0:3::/64 description 'nativeroute-1111'\r\n\
         set protocols static route6 fd11:11:0:3::/64 next-hop fd00:3::3\r\n\
         set vrf name CUST protocols static route 11.11.4.0/24 description 'nativeroute-1111'\r\n\
         set vrf name CUST protocols static route 11.11.4.0/24 next-hop 192.168.9.1\r\n",
        OPERATIONAL,
    ));
    steps
}

fn batch_lines() -> Vec<Step> {
    quiet(
        &[
            "set protocols static route 11.11.5.0/24 next-hop 192.168.3.5",
            "set protocols static route 11.11.5.0/24 description nativeroute-1111",
            "delete protocols static route 11.11.1.0/24 next-hop 192.168.3.3",
            "set protocols static route 11.11.1.0/24 next-hop 192.168.3.4",
            "delete protocols static route6 fd11:11:0:3::/64 next-hop fd00:3::3",
            "delete protocols static route6 fd11:11:0:3::/64",
            "set protocols static route6 fd11:11:0:7::/64 next-hop fd00:3::7",
            "set protocols static route6 fd11:11:0:7::/64 description nativeroute-1111",
        ],
        EDIT,
    )
}

fn discard() -> Vec<Step> {
    vec![
        answered("discard", "Changes have been discarded\r\n", EDIT),
        Step::line("exit", OPERATIONAL),
    ]
}

#[tokio::test]
async fn vyos_list_owns_routes_with_our_description_and_one_next_hop() {
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, configuration()).await;
    let mut driver = lab.connect().await;

    let routes = list(&mut driver).await;

    assert_eq!(owned(&routes), owned_in_every_list());
    assert_eq!(
        foreign(&routes),
        [
            (net("11.11.2.0/24"), Some(address("192.168.3.4"))),
            (net("11.11.6.0/24"), Some(address("192.168.3.6"))),
            (net("11.11.9.0/24"), None),
        ]
    );
    lab.assert_followed(driver).await;
}

#[tokio::test]
async fn vyos_batch_is_committed_saved_and_left() {
    let mut steps = configuration();
    // The driver reads the router afresh before a batch that writes.
    steps.extend(configuration());
    steps.extend(terminal());
    steps.push(Step::line("configure", EDIT));
    steps.extend(batch_lines());
    steps.push(Step::line("commit", EDIT));
    steps.push(answered(
        "save",
        "Saving configuration to '/config/config.boot'...\r\nDone\r\n",
        EDIT,
    ));
    steps.push(Step::line("exit", OPERATIONAL));
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.list_and_apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

#[tokio::test]
async fn vyos_refused_set_discards_the_batch() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(Step::line("configure", EDIT));
    steps.extend(batch_lines().into_iter().take(3));
    steps.push(answered(
        "set protocols static route 11.11.1.0/24 next-hop 192.168.3.4",
        "\r\n  Invalid next-hop address\r\n  Value validation failed\r\n  Set failed\r\n\r\n",
        EDIT,
    ));
    steps.extend(discard());
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, steps).await;
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        replace_refused(
            "Invalid next-hop address; Value validation failed; Set failed",
            true
        )
    );
}

/// VyOS says so when a delete finds nothing (a next hop removed by hand)
/// and treats it as done: the batch goes on and commits.
#[tokio::test]
async fn vyos_nothing_to_delete_is_no_refusal() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(Step::line("configure", EDIT));
    let mut lines = batch_lines();
    lines[2] = answered(
        "delete protocols static route 11.11.1.0/24 next-hop 192.168.3.3",
        "\r\n  Nothing to delete (the specified node does not exist)\r\n\r\n",
        EDIT,
    );
    steps.extend(lines);
    steps.push(Step::line("commit", EDIT));
    steps.push(Step::line("exit", OPERATIONAL));
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, steps).await;
    let outcomes = lab.apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

#[tokio::test]
async fn vyos_failed_commit_fails_every_change() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(Step::line("configure", EDIT));
    steps.extend(batch_lines());
    steps.push(answered(
        "commit",
        "\r\n[ protocols static ]\r\n\
         Next-hop 192.168.3.5 for 11.11.5.0/24 is an address of this router\r\n\r\n\
         [[protocols static]] failed\r\n\
         Commit failed\r\n",
        EDIT,
    ));
    steps.extend(discard());
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        all_refused(
            "the router refused \"commit\": [ protocols static ]; \
             Next-hop 192.168.3.5 for 11.11.5.0/24 is an address of this router; \
             [[protocols static]] failed; Commit failed"
        )
    );
}

#[tokio::test]
async fn vyos_term_ending_mid_batch_discards_it() {
    let (fence, term_ends) = term_ends();
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(Step::line("configure", EDIT));
    steps.extend(batch_lines().into_iter().take(4));
    steps.push(term_ends);
    steps.extend(discard());
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, steps).await;
    let outcomes = lab.apply_batch_fenced(&fence).await;

    assert_eq!(outcomes, all_fenced());
}

/// The commit went through before the term ended: the changes stand, and
/// the driver neither saves nor types anything more.
#[tokio::test]
async fn vyos_term_ending_after_the_commit_keeps_the_changes_and_does_not_save() {
    let (fence, term_ends) = term_ends();
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(Step::line("configure", EDIT));
    steps.extend(batch_lines());
    steps.push(Step::line("commit", EDIT));
    steps.push(term_ends);
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch_fenced(&fence).await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

/// A batch of removals reads the router first: 11.11.1.0/24 is gone
/// already (nothing to send for it), the IPv6 route is ours and goes.
#[tokio::test]
async fn vyos_removal_only_batch_reads_the_router_first() {
    let mut steps = terminal();
    steps.push(answered(
        r#"show configuration commands | match "protocols static""#,
        "set protocols static route6 fd11:11:0:3::/64 description 'nativeroute-1111'\r\n\
         set protocols static route6 fd11:11:0:3::/64 next-hop fd00:3::3\r\n",
        OPERATIONAL,
    ));
    steps.extend(terminal());
    steps.push(Step::line("configure", EDIT));
    steps.extend(quiet(
        &[
            "delete protocols static route6 fd11:11:0:3::/64 next-hop fd00:3::3",
            "delete protocols static route6 fd11:11:0:3::/64",
            "commit",
        ],
        EDIT,
    ));
    steps.push(Step::line("exit", OPERATIONAL));
    let lab = Transcript::start(VendorName::Vyos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let outcomes = apply(
        &mut driver,
        &[
            Change::Remove(route("11.11.1.0/24", "192.168.3.3")),
            Change::Remove(route("fd11:11:0:3::/64", "fd00:3::3")),
        ],
    )
    .await;

    assert_eq!(summary(&outcomes), ["ok", "ok"]);
    lab.assert_followed(driver).await;
}
