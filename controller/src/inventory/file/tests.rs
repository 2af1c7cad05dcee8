use super::*;
use crate::config::PoolConfig;
use crate::ipam::{Claim, assign};

const GOOD: &str = "
nodes:
  - name: node1
    address: 192.168.2.1
  - name: node2
    address: 192.168.3.3
    annotations:
      nativeroute.io/subnet: 11.11.7.0/24
  - name: node3
    address: 192.168.3.4
";

fn pool() -> PoolConfig {
    PoolConfig {
        cidrs: vec!["11.11.0.0/16".parse().expect("cidr")],
        node_mask_v4: 24,
        node_mask_v6: 64,
        reserved: vec![],
    }
}

fn inventory_with(text: &str) -> (tempfile::TempDir, FileInventory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nodes.yaml");
    std::fs::write(&path, text).expect("write");
    let inventory = FileInventory::open(&path).expect("open");
    (dir, inventory)
}

fn rewrite(inventory: &FileInventory, text: &str) {
    std::fs::write(inventory.path(), text).expect("write");
}

#[test]
fn nodes_are_read_in_file_order_with_their_annotations() {
    let (_dir, mut inventory) = inventory_with(GOOD);
    let snapshot = inventory.read().expect("read");
    assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
    let names: Vec<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3"]);
    assert_eq!(snapshot.nodes[1].annotations.len(), 1);
}

#[test]
fn a_node_address_that_is_not_an_ip_costs_only_that_node() {
    let (_dir, mut inventory) = inventory_with(&GOOD.replace("192.168.3.3", "192.168.3.333"));
    let snapshot = inventory.read().expect("read");
    let names: Vec<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node3"]);
    assert_eq!(snapshot.problems.len(), 1);
    assert_eq!(snapshot.problems[0].node, "node2");
    assert!(
        snapshot.problems[0].message.contains("192.168.3.333"),
        "{:?}",
        snapshot.problems
    );
}

#[test]
fn a_broken_entry_keeps_the_nodes_last_good_entry() {
    let (_dir, mut inventory) = inventory_with(GOOD);
    let before = inventory.read().expect("read");
    rewrite(&inventory, &GOOD.replace("192.168.3.3", "not-an-address"));
    let after = inventory.read().expect("read");
    assert_eq!(after.nodes, before.nodes);
    assert!(
        after.problems[0]
            .message
            .contains("keeping its last good entry"),
        "{:?}",
        after.problems
    );
}

#[test]
fn an_unreadable_or_empty_file_is_an_error_not_an_empty_inventory() {
    let (_dir, mut inventory) = inventory_with("");
    assert!(matches!(inventory.read(), Err(FileError::Invalid { .. })));
    rewrite(&inventory, "nodes: [");
    assert!(matches!(inventory.read(), Err(FileError::Invalid { .. })));
    rewrite(&inventory, "nodes: []\n");
    assert_eq!(inventory.read().expect("explicitly empty").nodes.len(), 0);
}

#[test]
fn duplicate_and_badly_named_nodes_are_reported_and_skipped() {
    let text = format!(
        "{GOOD}  - name: node1\n    address: 192.168.2.9\n  - name: \"Node;rm\"\n    address: 192.168.2.8\n"
    );
    let (_dir, mut inventory) = inventory_with(&text);
    let snapshot = inventory.read().expect("read");
    assert_eq!(snapshot.nodes.len(), 3);
    assert_eq!(snapshot.problems.len(), 2, "{:?}", snapshot.problems);
}

#[test]
fn recorded_subnets_survive_a_restart_and_put_old_nodes_first() {
    let (dir, mut inventory) = inventory_with(GOOD);
    let mut ipam = Ipam::new(&pool());
    let snapshot = inventory.read().expect("read");
    let names: Vec<String> = snapshot.nodes.iter().map(|n| n.name.clone()).collect();
    assign(
        &mut ipam,
        names.iter().map(|name| Claim {
            node: name.clone(),
            wants_subnet: true,
            ..Claim::default()
        }),
    );
    assert!(inventory.record(&ipam, &names).expect("record"));
    assert!(
        !inventory.record(&ipam, &names).expect("record again"),
        "nothing changed, nothing written"
    );

    // A new node listed first in the file is still younger than the others.
    rewrite(
        &inventory,
        &format!(
            "nodes:\n  - name: node0\n    address: 192.168.2.7\n{}",
            &GOOD[8..]
        ),
    );
    let mut reopened = FileInventory::open(&dir.path().join("nodes.yaml")).expect("reopen");
    let snapshot = reopened.read().expect("read");
    let names: Vec<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3", "node0"]);
    assert_eq!(snapshot.nodes[0].recorded, ipam.subnets_of("node1"));
    assert!(snapshot.nodes[3].recorded.is_empty());
}

#[test]
fn removed_nodes_leave_the_state_file() {
    let (_dir, mut inventory) = inventory_with(GOOD);
    let mut ipam = Ipam::new(&pool());
    assign(
        &mut ipam,
        [Claim {
            node: "node1".into(),
            wants_subnet: true,
            ..Claim::default()
        }],
    );
    inventory.record(&ipam, &["node1".into()]).expect("record");
    ipam.release("node1");
    inventory.record(&ipam, &[]).expect("record");
    assert!(inventory.state().nodes.is_empty());
}

#[tokio::test]
async fn the_file_sources_progress_is_its_last_good_read() {
    use crate::inventory::NodeSource;
    let (dir, inventory) = inventory_with(GOOD);
    let mut source = FileSource::open(inventory, Duration::from_secs(3600)).expect("open");
    let progress = source.progress();
    let opened = *progress.borrow();
    source.next_snapshot().await.expect("the first read");
    let read = *progress.borrow();
    assert!(read > opened, "a read is progress");
    std::fs::write(dir.path().join("nodes.yaml"), "nodes: [").expect("write");
    assert!(source.next_snapshot().await.is_err(), "a broken file");
    assert_eq!(*progress.borrow(), read, "a failed read is none");
}
