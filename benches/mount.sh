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

# Peak RSS of each phivault daemon (its VmHWM), sampled twice a second while
# the workloads run; the highest is printed at the end.
hwm_samples=$(mktemp)
sample_hwm() {
  while sleep 0.5; do
    for pid in $(pgrep -f "$(basename "$PHIVAULT_BIN") daemon"); do
      awk -v pid="$pid" '/^VmHWM:/ { print pid, $2 }' "/proc/$pid/status" 2>/dev/null || true
    done
  done
}
sample_hwm >"$hwm_samples" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true; rm -f "$hwm_samples"' EXIT

status=0
bash "$peers" || status=$?
kill "$sampler" 2>/dev/null || true
awk '{ if ($2 > peak[$1]) peak[$1] = $2 }
     END { for (pid in peak) { n++; if (peak[pid] > max) max = peak[pid] }
           if (n) printf "phivault daemon peak RSS (VmHWM): %.0f MiB, the highest of %d mounts\n", max / 1024, n
           else print "phivault daemon peak RSS: no daemon was seen" }' "$hwm_samples"
exit "$status"
