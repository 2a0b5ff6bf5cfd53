#!/usr/bin/env bash
# Replication and recovery throughput against a plain copy, in one run:
#
#   benches/replicate.sh [SIZE_MIB] [RUNS]      # default 1024 MiB, 3 runs
#
# A store is filled through a mount with SIZE_MIB of incompressible files.
# Then, RUNS times, caches dropped before each step:
#   cp -r of the store to a directory + sync   vs  `phivault replicate` to a
#   new directory remote (a first, whole pass);
#   cp -r of that remote + sync                vs  `phivault recover` of it;
#   and, if `s3s-fs` is installed (cargo install s3s-fs --features binary),
#   `replicate` to and `recover` from an S3 server of that disk on loopback.
# Work happens under $BENCH_DIR (default /var/tmp/phivault-bench-repl), so
# copies and the remote are on one disk. Needs root (drop_caches) and FUSE.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${1:-1024}
runs=${2:-3}
work=${BENCH_DIR:-/var/tmp/phivault-bench-repl}
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin=${PHIVAULT_BIN:-$here/target/release/phivault}

rm -rf "$work" && mkdir -p "$work"
pw=$work/passphrase
echo "replication bench passphrase $$ $(date +%s%N)" >"$pw"
chmod 600 "$pw"
store=$work/store mnt=$work/mnt
mkdir "$mnt"
"$bin" init "$store" --passphrase-file "$pw" >/dev/null
"$bin" mount "$store" "$mnt" --passphrase-file "$pw" --io-uring off >/dev/null
trap 'fusermount3 -u "$mnt" 2>/dev/null || true' EXIT
files=$((size_mib / 64))
for i in $(seq 1 "$files"); do
  head -c $((64 << 20)) /dev/urandom >"$mnt/f$i"
done
"$bin" umount "$mnt"
echo "store: $(du -sh "$store" | cut -f1) in $(find "$store/packs" -type f | wc -l) packs"

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# Milliseconds the command took.
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
row() { printf '%-24s %6d ms\n' "$1" "$2"; }

s3s=$(command -v "${S3S_FS:-s3s-fs}" || true)
if [[ -n $s3s ]]; then
  export AWS_ACCESS_KEY_ID=PHIVAULTBENCHKEY0001 AWS_SECRET_ACCESS_KEY=phivault-bench-secret-0123456789
  mkdir -p "$work/s3root/bench"
  port=$((20000 + RANDOM % 20000))
  "$s3s" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3root" >/dev/null 2>&1 &
  s3s_pid=$!
  trap 'kill $s3s_pid 2>/dev/null || true; fusermount3 -u "$mnt" 2>/dev/null || true' EXIT
  s3flags=(--endpoint "http://127.0.0.1:$port" --path-style --allow-http)
  sleep 1
fi

for run in $(seq 1 "$runs"); do
  echo "run $run"
  rm -rf "$work/copy" "$work/remote" "$work/recovered" "$work/remote-copy"
  "$bin" remote "$store" remove bench >/dev/null 2>&1 || true
  "$bin" remote "$store" add bench "dir:$work/remote" --passphrase-file "$pw" >/dev/null
  drop; row "cp -r store + sync" "$(ms bash -c "cp -r '$store' '$work/copy' && sync")"
  drop; row "replicate" "$(ms bash -c "'$bin' replicate '$store' --passphrase-file '$pw' && sync")"
  drop; row "cp -r remote + sync" "$(ms bash -c "cp -r '$work/remote' '$work/remote-copy' && sync")"
  drop; row "recover" "$(ms bash -c "'$bin' recover 'dir:$work/remote' '$work/recovered' --passphrase-file '$pw' && sync")"
  if [[ -n $s3s ]]; then
    rm -rf "$work/recovered"
    "$bin" remote "$store" remove bench >/dev/null
    "$bin" remote "$store" add bench "s3://bench/run$run" "${s3flags[@]}" --passphrase-file "$pw" >/dev/null
    drop; row "replicate to S3" "$(ms bash -c "'$bin' replicate '$store' --passphrase-file '$pw' && sync")"
    drop; row "recover from S3" "$(ms bash -c "'$bin' recover 's3://bench/run$run' '$work/recovered' ${s3flags[*]} --passphrase-file '$pw' && sync")"
    rm -rf "$work/s3root/bench/run$run"
  fi
done
rm -rf "$work"
