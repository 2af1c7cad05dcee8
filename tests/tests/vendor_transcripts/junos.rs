//! Junos: operational mode at login, a private candidate (an exclusive one
//! for a confirmed commit), `commit` and `exit`; `rollback 0` and `exit`
//! after an error. Junos prints `[edit]` above every configuration prompt.

use std::time::Duration;

use nativeroute_router_drivers::ssh::{SshDriver, VendorName};
use nativeroute_router_drivers::{DriverError, RouterDriver};
use nativeroute_tests::scripted_ssh::Step;

use nativeroute_router_drivers::Change;

use super::{
    Transcript, USER, address, all_fenced, all_refused, answered, apply, batch,
    every_probe_step_passed, foreign, list, net, owned, owned_in_every_list, probe, probed,
    replace_refused, route, summary, term_ends,
};

const OPERATIONAL: &str = "netops@mx1> ";
/// Junos says where in the hierarchy the next line goes, then prompts.
const EDIT: &str = "\r\n[edit]\r\nnetops@mx1# ";
const GREETING: &str = "Last login: Mon Nov 23 10:00:00 2026 from 10.0.0.5\r\n\
                        --- JUNOS 21.4R3-S5.4 Kernel 64-bit  JNPR-12.1-20230321.be2cc5d_buil\r\n\
                        netops@mx1> ";

/// A new terminal: paging off, wide lines, and no completion on space, so
/// the echo is exactly what was typed.
fn terminal() -> Vec<Step> {
    vec![
        Step::NewShell,
        answered(
            "set cli screen-length 0",
            "Screen length set to 0\r\n\r\n",
            OPERATIONAL,
        ),
        answered(
            "set cli screen-width 511",
            "Screen width set to 511\r\n\r\n",
            OPERATIONAL,
        ),
        answered(
            "set cli complete-on-space off",
            "Disabling complete-on-space\r\n\r\n",
            OPERATIONAL,
        ),
    ]
}

fn configuration() -> Vec<Step> {
    let mut steps = terminal();
    steps.push(answered(
        "show configuration routing-options | display inheritance | display set",
        "set routing-options router-id 10.0.0.1\r\n\
         set routing-options autonomous-system 65001\r\n\
         set routing-options static route 0.0.0.0/0 next-hop 10.0.0.254\r\n\
         set routing-options static route 10.20.0.0/16 next-hop 192.168.3.1\r\n\
         set routing-options static route 10.20.0.0/16 tag 1111\r\n\
         set routing-options static route 11.11.1.0/24 next-hop 192.168.3.3\r\n\
         set routing-options static route 11.11.1.0/24 tag 1111\r\n\
         set routing-options static route 11.11.2.0/24 next-hop 192.168.3.4\r\n\
         set routing-options static route 11.11.6.0/24 next-hop 192.168.3.6\r\n\
         set routing-options static route 11.11.6.0/24 next-hop 192.168.3.7\r\n\
         set routing-options static route 11.11.6.0/24 tag 1111\r\n\
         set routing-options static route 11.11.9.0/24 discard\r\n\
         set routing-options static route 11.11.9.0/24 tag 1111\r\n\
         set routing-options rib inet.3 static route 11.11.8.0/24 next-hop 192.168.3.8\r\n\
         set routing-options rib inet6.0 static route fd11:11:0:3::/64 next-hop fd00:3::3\r\n\
         set routing-options rib inet6.0 static route fd11:11:0:3::/64 tag 1111\r\n\r\n",
        OPERATIONAL,
    ));
    steps
}

fn enter(mode: &str) -> Step {
    answered(
        mode,
        "warning: uncommitted changes will be discarded on exit\r\nEntering configuration mode\r\n",
        EDIT,
    )
}

fn batch_lines() -> Vec<Step> {
    [
        "set routing-options static route 11.11.5.0/24 next-hop 192.168.3.5",
        "set routing-options static route 11.11.5.0/24 tag 1111",
        "delete routing-options static route 11.11.1.0/24 next-hop 192.168.3.3",
        "set routing-options static route 11.11.1.0/24 next-hop 192.168.3.4",
        "delete routing-options rib inet6.0 static route fd11:11:0:3::/64 next-hop fd00:3::3",
        "delete routing-options rib inet6.0 static route fd11:11:0:3::/64",
        "set routing-options rib inet6.0 static route fd11:11:0:7::/64 next-hop fd00:3::7",
        "set routing-options rib inet6.0 static route fd11:11:0:7::/64 tag 1111",
    ]
    .into_iter()
    .map(|line| Step::line(line, EDIT))
    .collect()
}

fn commit() -> Step {
    answered("commit", "commit complete\r\n", EDIT)
}

fn exit() -> Step {
    answered("exit", "Exiting configuration mode\r\n\r\n", OPERATIONAL)
}

/// Back to the last commit, so that leaving asks nothing.
fn roll_back() -> Vec<Step> {
    vec![answered("rollback 0", "load complete\r\n", EDIT), exit()]
}

#[tokio::test]
async fn junos_list_owns_a_stanza_with_our_tag_and_one_next_hop() {
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, configuration()).await;
    let mut driver = lab.connect().await;

    let routes = list(&mut driver).await;

    assert_eq!(owned(&routes), owned_in_every_list());
    assert_eq!(
        foreign(&routes),
        [
            (net("11.11.2.0/24"), Some(address("192.168.3.4"))),
            (net("11.11.6.0/24"), None),
            (net("11.11.9.0/24"), None),
        ]
    );
    let two_hops = routes
        .foreign
        .iter()
        .find(|route| route.dst == net("11.11.6.0/24"))
        .expect("the route with two next hops is foreign");
    assert_eq!(
        two_hops.detail,
        "set routing-options static route 11.11.6.0/24 next-hop 192.168.3.6; \
         set routing-options static route 11.11.6.0/24 next-hop 192.168.3.7; \
         set routing-options static route 11.11.6.0/24 tag 1111"
    );
    lab.assert_followed(driver).await;
}

#[tokio::test]
async fn junos_batch_is_edited_privately_and_committed() {
    let mut steps = configuration();
    // The driver reads the router afresh before a batch that writes.
    steps.extend(configuration());
    steps.extend(terminal());
    steps.push(enter("configure private"));
    steps.extend(batch_lines());
    steps.push(commit());
    steps.push(exit());
    // saveConfig means nothing on Junos: a commit is persistent.
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.list_and_apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

#[tokio::test]
async fn junos_confirmed_commit_is_made_exclusively_and_confirmed() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure exclusive"));
    steps.extend(batch_lines());
    steps.push(answered(
        "commit confirmed 5",
        "commit confirmed will be automatically rolled back in 5 minutes unless confirmed\r\n\
         commit complete\r\n\r\n\
         # commit confirmed will be rolled back in 5 minutes\r\n",
        "[edit]\r\nnetops@mx1# ",
    ));
    steps.push(commit());
    steps.push(exit());
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps)
        .await
        .confirming(Duration::from_secs(300));
    let outcomes = lab.apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

/// A `commit confirmed` that gets no answer in time is left unconfirmed:
/// whatever it took, Junos rolls it back when the window ends. A read now
/// would show changes about to go, so none is settled by one: every change
/// fails, and no new connection is made for a read.
#[tokio::test]
async fn junos_confirmed_commit_without_an_answer_fails_every_change_unread() {
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure exclusive"));
    steps.extend(batch_lines());
    // Echoed, and then nothing: no prompt ever comes.
    steps.push(Step::line("commit confirmed 5", ""));
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps)
        .await
        .confirming(Duration::from_secs(300))
        .commit_timeout(Duration::from_secs(2));
    let mut driver = lab.connect().await;

    let outcomes = summary(&apply(&mut driver, &batch()).await);

    for (outcome, change) in outcomes.iter().zip(batch()) {
        let dst = change.route().dst;
        assert!(
            outcome.starts_with(&format!("refused {dst}: "))
                && outcome.contains("rolled back by the router"),
            "{outcome}"
        );
    }
    drop(driver);
    assert_eq!(lab.server.mismatches(), Vec::<String>::new());
    assert!(lab.server.finished(), "{:#?}", lab.server.received());
    assert_eq!(lab.server.connections(), 1, "no read after the timeout");
}

#[tokio::test]
async fn junos_syntax_error_rolls_back_and_commits_nothing() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure private"));
    steps.extend(batch_lines().into_iter().take(3));
    steps.push(answered(
        "set routing-options static route 11.11.1.0/24 next-hop 192.168.3.4",
        "                                                           ^\r\n\
         syntax error, expecting <command>.\r\n",
        EDIT,
    ));
    steps.extend(roll_back());
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        replace_refused("syntax error, expecting <command>.", true)
    );
}

#[tokio::test]
async fn junos_failed_commit_fails_every_change() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure private"));
    steps.extend(batch_lines());
    steps.push(answered(
        "commit",
        "[edit routing-options static route 11.11.5.0/24]\r\n\
         \x20 'next-hop 192.168.3.5'\r\n\
         \x20   Next hop is an address of this router\r\n\
         error: configuration check-out failed\r\n",
        EDIT,
    ));
    steps.extend(roll_back());
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        all_refused(
            "the router refused \"commit\": [edit routing-options static route 11.11.5.0/24]; \
             'next-hop 192.168.3.5'; Next hop is an address of this router; \
             error: configuration check-out failed"
        )
    );
}

/// The term ends between the two lines of the first change: the candidate
/// is rolled back and left, nothing is committed.
#[tokio::test]
async fn junos_term_ending_mid_batch_rolls_back_and_commits_nothing() {
    let (fence, term_ends) = term_ends();
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure private"));
    steps.extend(batch_lines().into_iter().take(1));
    steps.push(term_ends);
    steps.extend(roll_back());
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let outcomes = lab.apply_batch_fenced(&fence).await;

    assert_eq!(outcomes, all_fenced());
}

/// The term ends after `commit confirmed`: the driver types no confirming
/// `commit`, and Junos rolls the batch back when the window closes.
#[tokio::test]
async fn junos_term_ending_before_the_confirmation_leaves_the_commit_to_roll_back() {
    let (fence, term_ends) = term_ends();
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure exclusive"));
    steps.extend(batch_lines());
    steps.push(answered(
        "commit confirmed 5",
        "commit confirmed will be automatically rolled back in 5 minutes unless confirmed\r\n\
         commit complete\r\n",
        EDIT,
    ));
    steps.push(term_ends);
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps)
        .await
        .confirming(Duration::from_secs(300));
    let outcomes = lab.apply_batch_fenced(&fence).await;

    assert_eq!(outcomes, all_fenced());
}

/// Junos explains a refusal over several lines, and the error quotes them
/// all: credentials among them are masked before the error reaches a log
/// or an Event.
#[tokio::test]
async fn junos_refused_list_is_reported_with_credentials_masked() {
    let mut steps = terminal();
    steps.push(answered(
        "show configuration routing-options | display inheritance | display set",
        "set system root-authentication encrypted-password \"$6$rootsalt$roothash\"\r\n\
         set snmp v3 usm local-engine user mon authentication-sha authentication-key \"$9$authkey\"\r\n\
         error: the configuration could not be shown in full\r\n",
        OPERATIONAL,
    ));
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let error = driver.list().await.expect_err("the list was refused");

    let message = error.to_string();
    assert!(
        matches!(error, DriverError::Output { .. }) && message.contains("could not be shown"),
        "{message}"
    );
    assert!(
        message.contains("encrypted-password <redacted>"),
        "{message}"
    );
    for secret in ["$6$rootsalt$roothash", "$9$authkey"] {
        assert!(!message.contains(secret), "{message}");
    }
    lab.assert_followed(driver).await;
}

/// A removal deletes the whole stanza, so it is sent only for a stanza the
/// fresh list shows as ours. Someone added a second next hop to ours since
/// the last list: the stanza is no longer ours, and nothing is sent.
#[tokio::test]
async fn junos_leaves_a_stanza_that_is_no_longer_ours_alone() {
    let mut steps = terminal();
    steps.push(answered(
        "show configuration routing-options | display inheritance | display set",
        "set routing-options static route 11.11.1.0/24 next-hop 192.168.3.3\r\n\
         set routing-options static route 11.11.1.0/24 next-hop 192.168.3.9\r\n\
         set routing-options static route 11.11.1.0/24 tag 1111\r\n\r\n",
        OPERATIONAL,
    ));
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let outcomes = apply(
        &mut driver,
        &[Change::Remove(route("11.11.1.0/24", "192.168.3.3"))],
    )
    .await;

    assert_eq!(summary(&outcomes), ["ok"]);
    lab.assert_followed(driver).await;
}

/// The batch must not go in: someone else holds the configuration. What
/// the error says.
async fn held(driver: &mut SshDriver) -> String {
    let error = driver
        .apply(&batch())
        .await
        .expect_err("nothing can be applied while someone else holds the configuration");
    assert!(
        matches!(error, DriverError::HeldByOthers { .. }),
        "{error:?}"
    );
    error.to_string()
}

/// Issue 13, point 8: someone has uncommitted edits in the shared
/// candidate, so `configure private` is refused and Junos stays in
/// operational mode. The reply is a live capture from cJunosEvolved
/// 26.2R1.7-EVO (field notes "live facts for `restore_junos.py`", §4, in a
/// public repository; stored-index file 68887465182): the one line, no
/// list of users. The router is held by others: nothing is typed after it,
/// not `rollback 0` (configuration was never entered, and a `rollback 0`
/// anywhere shared would discard their edits, §8 of the same notes).
#[tokio::test]
async fn junos_others_uncommitted_edits_hold_the_router_at_configure_private() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(answered(
        "configure private",
        "error: shared configuration database modified\r\n",
        OPERATIONAL,
    ));
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let message = held(&mut driver).await;

    assert!(
        message.contains("error: shared configuration database modified"),
        "{message}"
    );
    lab.assert_followed(driver).await;
}

/// Issue 13, point 8: a confirmed commit edits exclusively, and `configure
/// exclusive` is refused while another session has uncommitted edits. The
/// reply, with the users Junos lists, is the live capture of §8 of the
/// same cJunosEvolved notes. The error names who holds the router.
#[tokio::test]
async fn junos_others_uncommitted_edits_hold_the_router_at_configure_exclusive() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(answered(
        "configure exclusive",
        "Users currently editing the configuration:\r\n\
         \x20 admin terminal pts/0 (pid 31745) on since 2026-09-20 23:25:28 UTC\r\n\
         \x20     [edit]\r\n\
         error: configuration database modified\r\n",
        OPERATIONAL,
    ));
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps)
        .await
        .confirming(Duration::from_secs(300));
    let mut driver = lab.connect().await;

    let message = held(&mut driver).await;

    assert!(
        message.contains("error: configuration database modified"),
        "{message}"
    );
    assert!(
        message.contains("admin terminal pts/0 (pid 31745)"),
        "{message}"
    );
    lab.assert_followed(driver).await;
}

/// Issue 13, point 8: our private edits are in, but someone holds the
/// configuration exclusively, so the commit is refused. The reply is the
/// one openstack/networking-generic-switch feeds Netmiko's Juniper commit
/// in `networking_generic_switch/tests/unit/netmiko/test_juniper.py`
/// (which retries on it). The router is held by others; our own private
/// candidate is dropped (`rollback 0`, then `exit`), nothing of theirs.
#[tokio::test]
async fn junos_exclusive_lock_at_commit_holds_the_router_and_drops_our_edits() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure private"));
    steps.extend(batch_lines());
    steps.push(answered(
        "commit",
        "error: configuration database locked by:\r\n\
         \x20 user terminal p0 (pid 1234) on since 2017-1-1 00:00:00 UTC\r\n\
         \x20     exclusive private [edit]\r\n",
        EDIT,
    ));
    steps.extend(roll_back());
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let message = held(&mut driver).await;

    assert!(
        message.contains("error: configuration database locked by:"),
        "{message}"
    );
    assert!(message.contains("user terminal p0 (pid 1234)"), "{message}");
    lab.assert_followed(driver).await;
}

/// The routes after a commit whose answer never came: the first two
/// changes are there, the last two are not. (Junos commits all or nothing,
/// so a real router shows all or none of them; a list showing half lets
/// one transcript prove that each change is judged by what the router
/// shows, not by the batch as a whole.)
const AFTER_THE_UNANSWERED_COMMIT: &str = "\
    set routing-options static route 11.11.1.0/24 next-hop 192.168.3.4\r\n\
    set routing-options static route 11.11.1.0/24 tag 1111\r\n\
    set routing-options static route 11.11.5.0/24 next-hop 192.168.3.5\r\n\
    set routing-options static route 11.11.5.0/24 tag 1111\r\n\
    set routing-options rib inet6.0 static route fd11:11:0:3::/64 next-hop fd00:3::3\r\n\
    set routing-options rib inet6.0 static route fd11:11:0:3::/64 tag 1111\r\n\r\n";

/// Issue 13, point 9: a commit may take longer than a command (Netmiko
/// gives a Junos commit 120 s: ktbyers/netmiko `netmiko/juniper/juniper.py`,
/// `commit(..., read_timeout: float = 120.0)`), and one that outlives its
/// own bound has an unknown outcome. With `commitTimeout` 2 s and the
/// command timeout 10 s, the driver gives up on the commit after 2 s, reads
/// the router again on a new connection, and settles each change by what
/// that read shows.
#[tokio::test]
async fn junos_commit_without_an_answer_is_settled_by_reading_the_router_again() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = configuration();
    steps.extend(terminal());
    steps.push(enter("configure private"));
    steps.extend(batch_lines());
    // Echoed, and then nothing: no prompt ever comes.
    steps.push(Step::line("commit", ""));
    // Then the read that settles the batch, on a new connection.
    steps.extend(terminal());
    steps.push(answered(
        "show configuration routing-options | display inheritance | display set",
        AFTER_THE_UNANSWERED_COMMIT,
        OPERATIONAL,
    ));
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps)
        .await
        .commit_timeout(Duration::from_secs(2));
    assert_eq!(lab.router.timeouts.command, Duration::from_secs(10));
    let mut driver = lab.connect().await;

    let started = std::time::Instant::now();
    let outcomes = summary(&apply(&mut driver, &batch()).await);
    let took = started.elapsed();

    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "the commit was given {took:?}, not its own 2 s"
    );
    assert_eq!(&outcomes[..2], ["ok", "ok"]);
    for (outcome, dst) in outcomes[2..]
        .iter()
        .zip(["fd11:11:0:3::/64", "fd11:11:0:7::/64"])
    {
        assert!(
            outcome.starts_with(&format!("refused {dst}: no prompt within 2s")),
            "{outcome}"
        );
        assert!(outcome.contains("does not show it taken"), "{outcome}");
    }
    drop(driver);
    assert_eq!(
        lab.server.mismatches(),
        Vec::<String>::new(),
        "lines received: {:#?}",
        lab.server.received()
    );
    assert!(lab.server.finished(), "{:#?}", lab.server.received());
    assert_eq!(
        lab.server.connections(),
        2,
        "the read after the timeout goes over a new connection"
    );
}

/// Issue 13, point 10: `nativeroute check` on Junos: the prompt, the CLI
/// settings, `configure private` and `exit` without a change, every line
/// echoed.
#[tokio::test]
async fn junos_probe_enters_a_private_candidate_and_leaves_it() {
    let mut steps = terminal();
    steps.push(enter("configure private"));
    steps.push(exit());
    let lab = Transcript::start(VendorName::Junos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let steps = probed(&probe(&mut driver).await);

    assert_eq!(steps, every_probe_step_passed());
    lab.assert_followed(driver).await;
}
