#!/usr/bin/env bash
# Whole-mount workloads: phivault against gocryptfs and the native disk, side
# by side in one run, with the shared peers script (seq write/read, untar of
# the Linux source, ls -lR, read-all, fio 4k random writes, sqlite, rm).
#
#   benches/mount.sh                       # ext4 gocryptfs phivault
#   TARGETS="ext4 phivault" benches/mount.sh
#
# Needs root, /dev/fuse and: apt-get install gocryptfs fio sqlite3 fuse3 linux-source-6.1
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_SH:-$here/../shared/bench/peers.sh}
[[ -x $peers || -f $peers ]] || { echo "peers.sh not found at $peers (set PEERS_SH)" >&2; exit 2; }
cargo build --release --manifest-path "$here/Cargo.toml"
export PHIVAULT_BIN=${PHIVAULT_BIN:-$here/target/release/phivault}
export TARGETS=${TARGETS:-"ext4 gocryptfs phivault"}
# Peak RSS of the phivault daemon is sampled alongside (VmHWM at unmount).
exec bash "$peers"
