#!/usr/bin/env bash
# Sets up a fresh machine, builds nativeroute, and brings up the seed-000
# lab (a router, a switch, three nodes with containers, all in network
# namespaces) with the controller running against it; then shows its status.
# Needs root (re-runs itself under sudo when it is not root). Tear down
# with: target/release/nativeroute lab down
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/as-root.sh

bash scripts/setup.sh
cargo build --release --locked -p nativeroute

target/release/nativeroute lab up
target/release/nativeroute lab status
