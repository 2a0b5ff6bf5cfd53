//! Sealing ahead (`vault::seal_ahead`): after a write that ends inside a
//! file's last block, that block is compressed and encrypted in the
//! background from a copy, and the close uses the result. The danger is a
//! stale result: the block changed after the copy and the store keeps the
//! old bytes. These tests change the block in every way between the write
//! and the close, and read the file back from a reopened store (not from
//! the block cache).

mod common;

use std::time::{Duration, Instant};

use phivault::vault::Vault;

/// Writes `data` at `offset` (ending inside the last block) and waits until
/// the sealing thread has sealed the block, so the close finds a finished
/// result rather than sealing on its own.
fn write_and_wait_sealed(v: &Vault, ino: u64, offset: u64, data: &[u8]) {
    let n = v.seal_ahead_stats().sealed + 1;
    v.write(ino, offset, data).unwrap();
    let start = Instant::now();
    while v.seal_ahead_stats().sealed < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sealing thread sealed {:?}, expected {n}",
            v.seal_ahead_stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn read_all(v: &Vault, ino: u64) -> Vec<u8> {
    v.read(ino, 0, 1 << 20).unwrap()
}

/// Each case: the writes made before the close, and the content expected.
struct Case {
    name: &'static str,
    expected: Vec<u8>,
}

fn case(v: &Vault, name: &'static str, steps: impl FnOnce(&Vault, u64) -> Vec<u8>) -> (u64, Case) {
    let ino = common::engine_file(v, name);
    let expected = steps(v, ino);
    v.release_file(ino).unwrap();
    (ino, Case { name, expected })
}

#[test]
fn a_block_sealed_ahead_is_stored_only_if_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::open_engine(dir.path(), true, 0);
    let bs = 64 << 10;
    let text = common::pattern;
    let cases = [
        // Unchanged: the result is used.
        case(&v, "unchanged", |v, ino| {
            let data = text(1, 10_000);
            write_and_wait_sealed(v, ino, 0, &data);
            data
        }),
        // Overwritten in the middle after sealing: the store must not use it.
        case(&v, "overwritten", |v, ino| {
            let mut data = text(2, 10_000);
            write_and_wait_sealed(v, ino, 0, &data);
            v.write(ino, 100, b"changed").unwrap();
            data[100..107].copy_from_slice(b"changed");
            data
        }),
        // Cut short after sealing.
        case(&v, "truncated", |v, ino| {
            let data = text(3, 10_000);
            write_and_wait_sealed(v, ino, 0, &data);
            v.truncate(ino, 4_000).unwrap();
            data[..4_000].to_vec()
        }),
        // Extended with zeros after sealing (same prefix, longer block).
        case(&v, "extended", |v, ino| {
            let mut data = text(4, 10_000);
            write_and_wait_sealed(v, ino, 0, &data);
            v.truncate(ino, 12_000).unwrap();
            data.resize(12_000, 0);
            data
        }),
        // Several blocks, the last sealed ahead, then an earlier block
        // changes: the last block's result is still the right one.
        case(&v, "multi-block", |v, ino| {
            let mut data = text(5, 3 * bs + 500);
            write_and_wait_sealed(v, ino, 0, &data);
            v.write(ino, 10, b"early").unwrap();
            data[10..15].copy_from_slice(b"early");
            data
        }),
        // Appended to after sealing: a second job replaces the first.
        case(&v, "appended", |v, ino| {
            let mut data = text(6, 5_000);
            write_and_wait_sealed(v, ino, 0, &data);
            let more = text(7, 3_000);
            write_and_wait_sealed(v, ino, 5_000, &more);
            data.extend_from_slice(&more);
            data
        }),
    ];

    for (ino, case) in &cases {
        assert!(
            read_all(&v, *ino) == case.expected,
            "{} (open store)",
            case.name
        );
    }

    let stats = v.seal_ahead_stats();
    // From the packs, not from the block cache.
    v.shutdown().unwrap();
    drop(v);
    let v = common::open_engine(dir.path(), false, 0);
    for (ino, case) in &cases {
        let got = read_all(&v, *ino);
        assert_eq!(got.len(), case.expected.len(), "{} length", case.name);
        assert!(got == case.expected, "{} (reopened store)", case.name);
    }
    assert_eq!(
        stats.sealed, 7,
        "one job per write ending inside the last block"
    );
    // Used: unchanged, multi-block, appended (its second job), and
    // extended, whose truncate stores the unchanged block before growing.
    assert_eq!(stats.used, 4, "{stats:?}");
}
