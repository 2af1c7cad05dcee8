//! RouterOS: terminal options in the login name, absolute command paths at
//! the root prompt, every line live at once (and saved by RouterOS).

use nativeroute_router_drivers::ssh::VendorName;
use nativeroute_tests::scripted_ssh::Step;

use super::{
    Transcript, address, answered, foreign, list, net, owned, owned_in_every_list, quiet,
    replace_refused, term_ends,
};

/// `netops` with colours and terminal detection off, 511 columns and 4098
/// rows: the suffix Netmiko (`MikrotikBase.__init__`) and scrapli_community
/// append.
const LOGIN: &str = "netops+ct511w4098h";
const PROMPT: &str = "[netops@edge-2] > ";
const GREETING: &str = "\r\n\r\n\
    \x20 MMM      MMM       KKK                          TTTTTTTTTTT      KKK\r\n\
    \x20 MMMM    MMMM       KKK                          TTTTTTTTTTT      KKK\r\n\
    \x20 MMM MMMM MMM  III  KKK  KKK  RRRRRR     OOOOOO      TTT     III  KKK  KKK\r\n\r\n\
    \x20 MikroTik RouterOS 7.14.3 (c) 1999-2024       https://www.mikrotik.com/\r\n\r\n\
    Press F1 for help\r\n\r\n\
    [netops@edge-2] > ";

/// `steps` with the end marker the driver types after every line: RouterOS
/// draws its prompt again and echoes a line twice (scrapli_community's
/// mikrotik_routeros driver, Netmiko's `MikrotikBase`), so an answer ends
/// at the marker's output, not at a prompt. Markers count from 1 in each
/// shell.
fn marked(steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::new();
    let mut n = 0;
    for step in steps {
        match step {
            Step::NewShell => {
                n = 0;
                out.push(Step::NewShell);
            }
            Step::Line { expect, reply } => {
                n += 1;
                out.push(Step::Line { expect, reply });
                out.push(Step::line(
                    format!(":put (\"nativeroute-end-\" . \"{n}\")"),
                    format!("nativeroute-end-{n}\r\n{PROMPT}"),
                ));
            }
            other => out.push(other),
        }
    }
    out
}

fn routes() -> Vec<Step> {
    vec![
        Step::NewShell,
        answered(
            "/ip route print terse without-paging where !dynamic",
            // As RouterOS prints them: the comment first and unquoted.
            " 0  As  dst-address=0.0.0.0/0 routing-table=main gateway=10.0.0.254 \
             immediate-gw=10.0.0.254%ether1 distance=1 scope=30 target-scope=10 \
             suppress-hw-offload=no\r\n\
             \x201  As  comment=nativeroute-1111 dst-address=10.20.0.0/16 routing-table=main \
             gateway=192.168.3.1 immediate-gw=192.168.3.1%ether2 distance=1 scope=30 \
             target-scope=10 suppress-hw-offload=no\r\n\
             \x202  As  comment=nativeroute-1111 dst-address=11.11.1.0/24 routing-table=main \
             gateway=192.168.3.3 immediate-gw=192.168.3.3%ether2 distance=1 scope=30 \
             target-scope=10 suppress-hw-offload=no\r\n\
             \x203  As  comment=lab test dst-address=11.11.2.0/24 routing-table=main \
             gateway=192.168.3.4 immediate-gw=192.168.3.4%ether2 distance=1 scope=30 \
             target-scope=10 suppress-hw-offload=no\r\n\
             \x204 X s  comment=nativeroute-1111 dst-address=11.11.6.0/24 routing-table=main \
             gateway=192.168.3.6 distance=1 scope=30 target-scope=10 \
             suppress-hw-offload=no\r\n\
             \x205  As  comment=nativeroute-1111 dst-address=11.11.4.0/24 routing-table=cust \
             gateway=192.168.9.1 immediate-gw=192.168.9.1%ether5 distance=1 scope=30 \
             target-scope=10 suppress-hw-offload=no\r\n\
             \x206  As  comment=nativeroute-1111 was ours dst-address=11.11.7.0/24 \
             routing-table=main gateway=192.168.3.7 immediate-gw=192.168.3.7%ether2 \
             distance=1 scope=30 target-scope=10 suppress-hw-offload=no\r\n",
            PROMPT,
        ),
        answered(
            "/ipv6 route print terse without-paging where !dynamic",
            " 0  As  comment=nativeroute-1111 dst-address=fd11:11:0:3::/64 routing-table=main \
             gateway=fd00:3::3 immediate-gw=fd00:3::3%ether2 distance=1 scope=30 \
             target-scope=10 suppress-hw-offload=no\r\n",
            PROMPT,
        ),
    ]
}

fn batch_lines() -> Vec<&'static str> {
    vec![
        "/ip route add dst-address=11.11.5.0/24 gateway=192.168.3.5 comment=nativeroute-1111",
        "/ip route add dst-address=11.11.1.0/24 gateway=192.168.3.4 comment=nativeroute-1111",
        "/ip route remove [find dst-address=11.11.1.0/24 gateway=192.168.3.3 comment=nativeroute-1111 routing-table=main disabled=no]",
        "/ipv6 route remove [find dst-address=fd11:11:0:3::/64 gateway=fd00:3::3 comment=nativeroute-1111 routing-table=main disabled=no]",
        "/ipv6 route add dst-address=fd11:11:0:7::/64 gateway=fd00:3::7 comment=nativeroute-1111",
    ]
}

#[tokio::test]
async fn routeros_list_owns_enabled_routes_with_our_comment() {
    let lab = Transcript::start(VendorName::RouterOs, LOGIN, GREETING, marked(routes())).await;
    let mut driver = lab.connect().await;

    let routes = list(&mut driver).await;

    assert_eq!(owned(&routes), owned_in_every_list());
    assert_eq!(
        foreign(&routes),
        [
            (net("11.11.2.0/24"), Some(address("192.168.3.4"))),
            (net("11.11.6.0/24"), Some(address("192.168.3.6"))),
            (net("11.11.7.0/24"), Some(address("192.168.3.7"))),
        ]
    );
    lab.assert_followed(driver).await;
}

#[tokio::test]
async fn routeros_batch_is_typed_line_by_line_with_nothing_to_commit() {
    let mut steps = routes();
    steps.push(Step::NewShell);
    steps.extend(quiet(&batch_lines(), PROMPT));
    let lab = Transcript::start(VendorName::RouterOs, LOGIN, GREETING, marked(steps))
        .await
        .saving();
    let outcomes = lab.list_and_apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

#[tokio::test]
async fn routeros_failure_keeps_the_lines_before_it() {
    let lines = batch_lines();
    // RouterOS `add` never edits another route: no fresh list first.
    let steps = vec![
        Step::NewShell,
        Step::line(lines[0], PROMPT),
        answered(lines[1], "failure: already have such route\r\n", PROMPT),
    ];
    let lab = Transcript::start(VendorName::RouterOs, LOGIN, GREETING, marked(steps)).await;
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        replace_refused("failure: already have such route", false)
    );
}

/// The term ends after the new next hop of the replace went in and before
/// the old one was removed: that replace is half done, so it is fenced with
/// the rest, and the next leader's list finds both next hops.
#[tokio::test]
async fn routeros_term_ending_mid_batch_types_no_further_line() {
    let (fence, term_ends) = term_ends();
    let lines = batch_lines();
    let steps = vec![
        Step::NewShell,
        Step::line(lines[0], PROMPT),
        Step::line(lines[1], PROMPT),
        term_ends,
    ];
    let lab = Transcript::start(VendorName::RouterOs, LOGIN, GREETING, marked(steps)).await;
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
