//! RouterOS: terminal options in the login name, absolute command paths at
//! the root prompt, every line live at once (and saved by RouterOS).
//!
//! The terminal habits the tests give the scripted router come from the
//! drivers that talk to RouterOS every day:
//! - ktbyers/netmiko `netmiko/mikrotik/mikrotik_ssh.py` (`MikrotikBase`):
//!   `default_enter = "\r\n"`, the `+ct511w4098h` login suffix, and
//!   "There can be two trailing instances of the prompt probably due to
//!   repainting", "Mikrotik can echo the command multiple times";
//! - scrapli/scrapli_community `scrapli_community/mikrotik/routeros/`
//!   (`mikrotik_routeros.py`: `comms_return_char` "\r\n", "Mikrotik ROS
//!   uses '\r\n' as newline character"; `sync_driver.py`: "RouterOS echoes
//!   the prompt/pattern twice after sending a command",
//!   `[user@HOSTNAME]> /command\r\n[user@HOSTNAME]> /command\r\nOUTPUT`).

use std::time::Duration;

use nativeroute_router_drivers::ssh::VendorName;
use nativeroute_router_drivers::{DriverError, RouterDriver};
use nativeroute_tests::scripted_ssh::{Step, TerminalBehaviour};

use super::{
    Transcript, address, answered, apply, batch, foreign, list, net, owned, owned_in_every_list,
    probe, probed, quiet, replace_refused, summary, term_ends,
};

/// `netops` with colours and terminal detection off, 511 columns and 4098
/// rows: the suffix Netmiko (`MikrotikBase._modify_connection_params`) and
/// scrapli_community (`sync_driver.py`) append, after MikroTik's console
/// manual (https://help.mikrotik.com/docs/display/ROS/Console: "login_name
/// ::= user_name [ '+' parameters ]"). The scripted server lets in no other
/// name: the profile once logged in as `netops+cte200w`.
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

/// A terminal that acts on "\r\n" only, as Netmiko and scrapli send
/// Enter to RouterOS; a line ended by "\n" alone is off script.
fn cr_lf_only() -> TerminalBehaviour {
    TerminalBehaviour {
        enter: Some("\r\n"),
        ..TerminalBehaviour::default()
    }
}

/// RouterOS's terminal as scrapli_community describes it: after the echo
/// of a line it draws the bare prompt again, then the prompt with the line
/// once more, each in a packet of its own, before the answer. A reader
/// that takes the first prompt-looking last line as the end of an answer
/// takes the bare redraw for it: an empty answer, and every later answer
/// belongs to the line before.
fn redrawing() -> TerminalBehaviour {
    TerminalBehaviour {
        enter: Some("\r\n"),
        after_echo: vec!["\r{prompt}".to_owned(), "\r{prompt}{line}\r\n".to_owned()],
        prompt: PROMPT.to_owned(),
        wrap_at: None,
    }
}

fn routes() -> Vec<Step> {
    let mut steps = vec![Step::NewShell];
    steps.extend(route_lists());
    steps
}

/// The two lists, IPv4 then IPv6, after the shell has started.
fn route_lists() -> Vec<Step> {
    vec![
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

/// Issue 13, point 1: Netmiko (`default_enter = "\r\n"`) and scrapli
/// (`comms_return_char = "\r\n"`) both end a line with CR LF on RouterOS.
/// A router that takes only that ending sees every line of the list and
/// the batch; one ended by "\n" alone would be a mismatch here, and on a
/// build that wants CR a wait for the command timeout.
#[tokio::test]
async fn routeros_ends_every_line_with_cr_lf() {
    let mut steps = routes();
    steps.push(Step::NewShell);
    steps.extend(quiet(&batch_lines(), PROMPT));
    let lab = Transcript::start_on(
        cr_lf_only(),
        VendorName::RouterOs,
        LOGIN,
        GREETING,
        marked(steps),
    )
    .await;
    let outcomes = lab.list_and_apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

/// Issue 13, point 2: RouterOS draws its prompt again and echoes the line
/// a second time, each in a packet of its own (scrapli_community
/// `sync_driver.py`: `[user@HOSTNAME]> /command\r\n[user@HOSTNAME]>
/// /command\r\nOUTPUT`; Netmiko `MikrotikBase.strip_prompt`: "two trailing
/// instances of the prompt"). Taking the bare redraw for the end of an
/// answer would read an empty answer for the IPv4 list and the IPv4 routes
/// for the IPv6 one, and, in the batch, pin the refusal of the first add
/// on the replace after it.
#[tokio::test]
async fn routeros_prompt_redrawn_and_line_echoed_twice_shift_no_answer() {
    let lines = batch_lines();
    let mut steps = routes();
    steps.push(Step::NewShell);
    steps.push(answered(
        lines[0],
        "failure: already have such route\r\n",
        PROMPT,
    ));
    let lab = Transcript::start_on(
        redrawing(),
        VendorName::RouterOs,
        LOGIN,
        GREETING,
        marked(steps),
    )
    .await;
    let mut driver = lab.connect().await;

    let routes = list(&mut driver).await;
    let outcomes = apply(&mut driver, &batch()).await;

    // Both halves of the list, each from its own answer.
    assert_eq!(owned(&routes), owned_in_every_list());
    assert_eq!(
        foreign(&routes),
        [
            (net("11.11.2.0/24"), Some(address("192.168.3.4"))),
            (net("11.11.6.0/24"), Some(address("192.168.3.6"))),
            (net("11.11.7.0/24"), Some(address("192.168.3.7"))),
        ]
    );
    assert_eq!(
        summary(&outcomes),
        [
            "refused 11.11.5.0/24: failure: already have such route",
            "not attempted 11.11.1.0/24",
            "not attempted fd11:11:0:3::/64",
            "not attempted fd11:11:0:7::/64",
        ]
    );
    lab.assert_followed(driver).await;
}

/// Issue 13, point 3: a `/ipv6 route remove [find …]` line with full
/// addresses is longer than a terminal is wide unless the width travels
/// in the login name, as `+ct511w4098h` carries it (Netmiko
/// `MikrotikBase._modify_connection_params`: "511w: set term width"; the
/// server lets in no other name). Here the router wraps at 80 columns all
/// the same, as a console in between would: the echo and the redrawn line
/// come back broken over several screen lines. Every answer is still read
/// whole, and the refusal of the last line (which wraps too) lands on the
/// last change.
#[tokio::test]
async fn routeros_echo_wrapped_at_80_columns_still_ends_its_answer() {
    let lines = batch_lines();
    assert!(
        lines[3].len() > 120,
        "the IPv6 removal is the long line this test is about"
    );
    let mut steps = vec![Step::NewShell];
    steps.extend(quiet(&lines[..4], PROMPT));
    steps.push(answered(
        lines[4],
        "failure: already have such route\r\n",
        PROMPT,
    ));
    let terminal = TerminalBehaviour {
        wrap_at: Some(80),
        ..redrawing()
    };
    let lab = Transcript::start_on(
        terminal,
        VendorName::RouterOs,
        LOGIN,
        GREETING,
        marked(steps),
    )
    .await;
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        [
            "ok",
            "ok",
            "ok",
            "refused fd11:11:0:7::/64: failure: already have such route"
        ]
    );
}

/// An unlicensed router asks for Enter before its first prompt. The text
/// is the example in MikroTik's console manual
/// (https://help.mikrotik.com/docs/display/ROS/Console, "the demo license
/// prompt"); Netmiko (`MikrotikBase.special_login_handler`, `no_license_message
/// = 'Please press "Enter" to continue!'`) answers it with its Enter,
/// "\r\n", and so does the driver: an empty line, in every new shell.
const PRESS_ENTER_GREETING: &str = "\r\n\
    \x20 MikroTik RouterOS 7.14.3 (c) 1999-2024       https://www.mikrotik.com/\r\n\r\n\
    UPGRADE NOW FOR FULL SUPPORT\r\n\
    ----------------------------\r\n\
    FULL SUPPORT benefits:\r\n\
    - receive technical support\r\n\
    - one year feature support\r\n\
    - one year online upgrades\r\n\
    \x20   (avoid re-installation and re-configuring your router)\r\n\
    To upgrade, register your license \"software ID\"\r\n\
    on our account server www.mikrotik.com\r\n\r\n\
    Current installation \"software ID\": ABCD-456\r\n\r\n\
    Please press \"Enter\" to continue!";

/// Issue 13, point 4. The other first-login question, `Do you want to see
/// the software license? [Y/n]: `, Netmiko answers with the key `n` and no
/// Enter, and so does the driver; the scripted server only ever answers
/// whole lines, so a key without Enter cannot be scripted: that answer has
/// no transcript test.
#[tokio::test]
async fn routeros_press_enter_at_first_login_is_answered_with_enter() {
    let mut steps = vec![
        Step::NewShell,
        // The prompt comes after two empty lines, as a RouterOS 7.7
        // capture shows it.
        Step::line("", format!("\r\n\r\n{PROMPT}")),
    ];
    steps.extend(marked(route_lists()));
    let lab = Transcript::start_on(
        cr_lf_only(),
        VendorName::RouterOs,
        LOGIN,
        PRESS_ENTER_GREETING,
        steps,
    )
    .await;
    let mut driver = lab.connect().await;

    let routes = list(&mut driver).await;

    assert_eq!(owned(&routes), owned_in_every_list());
    lab.assert_followed(driver).await;
}

/// A RouterOS 7.24.4 first login as a test fixture in a public repository
/// captured it (stored-index file 69383366237; MikroTik's docs do not show
/// this question, and captures of earlier 7.x show it without the offer to
/// skip). No trusted driver answers it, and nativeroute must not: a line
/// typed here becomes the account's password.
const NEW_PASSWORD_GREETING: &str = "\r\n\r\r\r\n\
    \x20 MikroTik RouterOS 7.24.4 (c) 1999-2026       https://www.mikrotik.com/\r\n\r\n\r\n\
    Press F1 for help\r\n\r\n\r\n\r\n\
    Change your password (Ctrl-C to skip)\r\n\r\r\rnew password> ";

/// Issue 13, point 4: a router that wants a new password is left for a
/// person, with an error that says so, at once rather than after the
/// command timeout, and without a line typed.
#[tokio::test]
async fn routeros_new_password_question_fails_with_advice_to_log_in_by_hand() {
    let lab = Transcript::start_on(
        cr_lf_only(),
        VendorName::RouterOs,
        LOGIN,
        NEW_PASSWORD_GREETING,
        Vec::new(),
    )
    .await
    .command_timeout(Duration::from_secs(30));
    let mut driver = lab.connect().await;

    let started = std::time::Instant::now();
    let error = driver.list().await.expect_err("the list cannot start");

    let message = error.to_string();
    assert!(matches!(error, DriverError::Session { .. }), "{error:?}");
    assert!(message.contains("new password"), "{message}");
    assert!(message.contains("by hand"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for a prompt that never comes",
        started.elapsed()
    );
    assert_eq!(lab.server.received(), Vec::<String>::new());
    lab.assert_followed(driver).await;
}

/// A line that reads and changes nothing, typed by the probe so that the
/// first contact tries Enter, the echo and the end marker before any batch
/// does: Ansible's RouterOS facts (ansible-collections/community.routeros
/// `plugins/modules/facts.py`, `Default.COMMANDS`) start with it.
const PROBE_LINE: &str = "/system identity print without-paging";

/// Issue 13, point 10: `nativeroute check` on RouterOS. RouterOS has no
/// paging to turn off and no configuration mode, so the probe's only way
/// to see the echo (and the CR LF, and the `:put` marker every answer
/// ends at) is to type something harmless.
#[tokio::test]
async fn routeros_probe_recognises_the_prompt_and_sees_the_echo() {
    let steps = vec![
        Step::NewShell,
        answered(PROBE_LINE, "  name: edge-2\r\n", PROMPT),
    ];
    let lab = Transcript::start_on(
        redrawing(),
        VendorName::RouterOs,
        LOGIN,
        GREETING,
        marked(steps),
    )
    .await;
    let mut driver = lab.connect().await;

    let steps = probed(&probe(&mut driver).await);

    assert!(steps.iter().all(|step| step.ends_with(": ok")), "{steps:?}");
    assert_eq!(
        steps.first().map(String::as_str),
        Some("prompt recognised: ok")
    );
    assert!(
        steps.iter().any(|step| step == "echo seen: ok"),
        "the probe saw no echo, so Enter and the end marker are first tried by a batch: {steps:?}"
    );
    lab.assert_followed(driver).await;
}
