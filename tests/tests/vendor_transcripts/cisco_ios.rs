//! Cisco IOS: privileged EXEC at login, each line live as it is entered,
//! `end` and `write memory` after the batch.

use nativeroute_router_drivers::ssh::VendorName;
use nativeroute_tests::scripted_ssh::Step;

use nativeroute_router_drivers::Change;

use super::{
    Transcript, USER, address, answered, apply, foreign, list, net, owned, owned_in_every_list,
    quiet, replace_refused, route, summary, term_ends,
};

const EXEC: &str = "core-1#";
const CONFIG: &str = "core-1(config)#";
const GREETING: &str = "\r\n************************************\r\n\
                        * core-1: authorized access only   *\r\n\
                        ************************************\r\n\r\ncore-1#";

/// A new terminal, paging off and lines as wide as Netmiko sets them
/// (`terminal width 511`; no Cisco source confirms `terminal width 0`).
fn terminal() -> Vec<Step> {
    let mut steps = vec![Step::NewShell];
    steps.extend(quiet(&["terminal length 0", "terminal width 511"], EXEC));
    steps
}

fn running_config() -> Vec<Step> {
    let mut steps = terminal();
    steps.push(answered(
        "show running-config | include ^ip route |^ipv6 route ",
        "ip route 0.0.0.0 0.0.0.0 10.0.0.254\r\n\
         ip route 10.20.0.0 255.255.0.0 192.168.3.1 tag 1111 name nativeroute\r\n\
         ip route 11.11.1.0 255.255.255.0 192.168.3.3 tag 1111 name nativeroute\r\n\
         ip route 11.11.2.0 255.255.255.0 192.168.3.4 name lab-test\r\n\
         ip route 11.11.9.0 255.255.255.0 Null0 tag 1111\r\n\
         ip route vrf CUST 11.11.4.0 255.255.255.0 192.168.9.1 tag 1111\r\n\
         ipv6 route FD11:11:0:3::/64 FD00:3::3 tag 1111 name nativeroute\r\n",
        EXEC,
    ));
    steps
}

fn configure() -> Step {
    answered(
        "configure terminal",
        "Enter configuration commands, one per line.  End with CNTL/Z.\r\n",
        CONFIG,
    )
}

fn end_and_save() -> Vec<Step> {
    vec![
        Step::line("end", EXEC),
        answered(
            "write memory",
            "Building configuration...\r\n[OK]\r\n",
            EXEC,
        ),
    ]
}

#[tokio::test]
async fn ios_list_keeps_tagged_routes_and_reports_the_rest_of_the_pool() {
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, running_config()).await;
    let mut driver = lab.connect().await;

    let routes = list(&mut driver).await;

    assert_eq!(owned(&routes), owned_in_every_list());
    assert_eq!(
        foreign(&routes),
        [
            (net("11.11.2.0/24"), Some(address("192.168.3.4"))),
            (net("11.11.9.0/24"), None),
        ]
    );
    lab.assert_followed(driver).await;
}

#[tokio::test]
async fn ios_batch_is_typed_line_by_line_then_saved() {
    let mut steps = running_config();
    // The driver reads the router afresh before a batch that writes.
    steps.extend(running_config());
    steps.extend(terminal());
    steps.push(configure());
    steps.extend(quiet(
        &[
            "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
            "ip route 11.11.1.0 255.255.255.0 192.168.3.4 tag 1111 name nativeroute",
            "no ip route 11.11.1.0 255.255.255.0 192.168.3.3",
            "no ipv6 route fd11:11:0:3::/64 fd00:3::3",
            "ipv6 route fd11:11:0:7::/64 fd00:3::7 tag 1111 name nativeroute",
        ],
        CONFIG,
    ));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.list_and_apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

#[tokio::test]
async fn ios_refusal_keeps_the_lines_before_it_and_still_saves() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = running_config();
    steps.extend(terminal());
    steps.push(configure());
    steps.push(Step::line(
        "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
        CONFIG,
    ));
    steps.push(answered(
        "ip route 11.11.1.0 255.255.255.0 192.168.3.4 tag 1111 name nativeroute",
        "%Invalid next hop address (it's this router)\r\n",
        CONFIG,
    ));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        replace_refused("Invalid next hop address (it's this router)", false)
    );
}

/// Someone wrote `ip route 11.11.1.0 … 192.168.3.4` since the last list:
/// the replace onto that next hop would retag it as nativeroute's, so the
/// fresh read before the batch keeps it out, and the rest goes.
#[tokio::test]
async fn ios_batch_leaves_out_a_replace_onto_a_foreign_route_written_meanwhile() {
    let mut steps = terminal();
    steps.push(answered(
        "show running-config | include ^ip route |^ipv6 route ",
        "ip route 11.11.1.0 255.255.255.0 192.168.3.3 tag 1111 name nativeroute\r\n\
         ip route 11.11.1.0 255.255.255.0 192.168.3.4 name someone-else\r\n\
         ipv6 route FD11:11:0:3::/64 FD00:3::3 tag 1111 name nativeroute\r\n",
        EXEC,
    ));
    steps.extend(terminal());
    steps.push(configure());
    steps.extend(quiet(
        &[
            "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
            "no ipv6 route fd11:11:0:3::/64 fd00:3::3",
            "ipv6 route fd11:11:0:7::/64 fd00:3::7 tag 1111 name nativeroute",
        ],
        CONFIG,
    ));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        [
            "ok",
            "11.11.1.0/24 is already routed on this router by a route nativeroute does not own",
            "ok",
            "ok"
        ]
    );
}

/// The term ends after the first line: IOS has taken that line, so its
/// change stands; no further route line is typed, `end` leaves
/// configuration and nothing is saved.
#[tokio::test]
async fn ios_term_ending_mid_batch_types_no_further_line_and_does_not_save() {
    let (fence, term_ends) = term_ends();
    // The driver reads the router afresh before a batch that writes.
    let mut steps = running_config();
    steps.extend(terminal());
    steps.push(configure());
    steps.push(Step::line(
        "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
        CONFIG,
    ));
    steps.push(term_ends);
    steps.push(Step::line("end", EXEC));
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch_fenced(&fence).await;

    assert_eq!(
        outcomes,
        [
            "ok",
            "fenced 11.11.1.0/24",
            "fenced fd11:11:0:3::/64",
            "fenced fd11:11:0:7::/64"
        ]
    );
}

/// `no ip route` takes a route whatever its tag, so a batch of removals is
/// preceded by a fresh list too, and only what it shows as ours is removed:
/// someone rewrote 11.11.1.0/24 as their own since the last list, and it
/// stays.
#[tokio::test]
async fn ios_removes_only_routes_the_fresh_list_shows_as_ours() {
    let mut steps = terminal();
    steps.push(answered(
        "show running-config | include ^ip route |^ipv6 route ",
        "ip route 11.11.1.0 255.255.255.0 192.168.3.3 name someone-else\r\n\
         ipv6 route FD11:11:0:3::/64 FD00:3::3 tag 1111 name nativeroute\r\n",
        EXEC,
    ));
    steps.extend(terminal());
    steps.push(configure());
    steps.push(Step::line(
        "no ipv6 route fd11:11:0:3::/64 fd00:3::3",
        CONFIG,
    ));
    steps.push(Step::line("end", EXEC));
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps).await;
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
