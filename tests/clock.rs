//! Every time stamp comes from one clock, so the order of changes and the
//! order of their times agree. With the writeback cache the kernel stamps
//! some changes itself (a link's ctime, a write's mtime) from its coarse
//! clock; the daemon stamps the rest, and must not run ahead of it.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Vault;

fn ctime_ns(p: &Path) -> i128 {
    let m = fs::symlink_metadata(p).unwrap();
    m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128
}

fn mtime_ns(p: &Path) -> i128 {
    let m = fs::symlink_metadata(p).unwrap();
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// Enough rounds to meet a tick of the kernel's coarse clock many times.
const ROUNDS: usize = 300;

#[test]
fn a_link_never_moves_ctime_back() {
    let v = Vault::mounted();
    for i in 0..ROUNDS {
        let a = v.path(&format!("a{i}"));
        fs::write(&a, b"x").unwrap();
        let created = ctime_ns(&a);
        fs::hard_link(&a, v.path(&format!("b{i}"))).unwrap();
        // The kernel hands its cached times to the daemon when it writes
        // the inode back, at the latest at an fsync.
        fs::File::open(&a).unwrap().sync_all().unwrap();
        let linked = ctime_ns(&a);
        assert!(
            linked >= created,
            "round {i}: link() left ctime {linked}, {} ns before the create's {created}",
            created - linked
        );
    }
}

#[test]
fn a_write_after_a_create_is_not_stamped_before_it() {
    let v = Vault::mounted();
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(v.path("log"))
        .unwrap();
    for i in 0..ROUNDS {
        let new = v.path(&format!("n{i}"));
        fs::File::create(&new).unwrap();
        let created = ctime_ns(&new);
        log.write_all(b"line\n").unwrap();
        let written = mtime_ns(&v.path("log"));
        assert!(
            written >= created,
            "round {i}: a write after a create got mtime {written}, {} ns before it",
            created - written
        );
    }
}
