//! The daemon's memory budget: with default settings, its peak resident set
//! stays under 300 MiB while a program writes 1 GiB.

mod common;

use common::{sh, Vault};

const BUDGET_KIB: u64 = 300 * 1024;

/// The peak resident set (VmHWM) of process `pid`, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_one_gib_write_keeps_the_daemon_under_its_memory_budget() {
    let v = Vault::mounted();
    let big = v.path("big");
    // Random bytes: zeros would be stored as holes and never held.
    sh(&format!(
        "dd if=/dev/urandom of={} bs=1M count=1024 conv=fsync status=none",
        big.display()
    ));
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 1 << 30);
    let peak = peak_rss_kib(v.daemon_pid());
    assert!(
        peak < BUDGET_KIB,
        "the daemon peaked at {} MiB during a 1 GiB write (budget {} MiB)",
        peak / 1024,
        BUDGET_KIB / 1024
    );
    // Reading it back (past the page cache) keeps within the budget too.
    sh(&format!(
        "dd if={} of=/dev/null bs=1M iflag=direct status=none",
        big.display()
    ));
    let peak = peak_rss_kib(v.daemon_pid());
    assert!(
        peak < BUDGET_KIB,
        "the daemon peaked at {} MiB after reading 1 GiB back",
        peak / 1024
    );
}
