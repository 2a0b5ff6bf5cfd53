//! The catalog's page cache wrapper (`catalog::page_cache`) skips truncates
//! that cannot drop a page. A wrong skip leaves stale pages in a cache, which
//! SQLite would then read as data: these tests drive real SQLite through page
//! splits, rollbacks, VACUUM and a second connection, and compare everything
//! with a model after every transaction.
//!
//! Its own test binary: the wrapper must be installed before SQLite's first
//! use in the process.

mod common;

use std::collections::BTreeMap;

use phivault::catalog::page_cache;
use rusqlite::{params, Connection, OpenFlags};

fn open(path: &std::path::Path, flags: OpenFlags) -> Connection {
    let conn = Connection::open_with_flags(path, flags).expect("open");
    // Small pages and a small cache: many splits, many evictions.
    conn.execute_batch(
        "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA cache_size=40;
         PRAGMA busy_timeout=10000;",
    )
    .expect("pragmas");
    conn
}

fn contents(conn: &Connection) -> BTreeMap<i64, Vec<u8>> {
    let mut stmt = conn.prepare("SELECT k, v FROM t ORDER BY k").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn value(rng: &mut common::Rng, key: i64) -> Vec<u8> {
    let len = 8 + rng.below(500) as usize;
    (0..len).map(|i| (key as usize * 31 + i) as u8).collect()
}

#[test]
fn splits_rollbacks_and_vacuum_read_back_exactly_what_was_committed() {
    page_cache::install();
    let seed = 0x05ee_d0fc_ac4e;
    println!("seed {seed:#x}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let mut writer = open(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    );
    writer
        .execute_batch(
            "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB, tag TEXT);
             CREATE INDEX t_tag ON t(tag);",
        )
        .unwrap();
    let reader = open(&path, OpenFlags::SQLITE_OPEN_READ_ONLY);

    let mut rng = common::Rng(seed);
    let mut model: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    for round in 0..400 {
        let mut pending = model.clone();
        let tx = writer.transaction().unwrap();
        for _ in 0..1 + rng.below(40) {
            let key = rng.below(3000) as i64;
            if rng.below(3) == 0 && pending.contains_key(&key) {
                tx.execute("DELETE FROM t WHERE k = ?1", params![key])
                    .unwrap();
                pending.remove(&key);
            } else {
                let v = value(&mut rng, key);
                // Tags in random order make the index split in its middle,
                // where balance_nonroot swaps page numbers.
                let tag = format!("{:016x}", rng.next());
                tx.execute(
                    "INSERT OR REPLACE INTO t(k, v, tag) VALUES (?1, ?2, ?3)",
                    params![key, v, tag],
                )
                .unwrap();
                pending.insert(key, v);
            }
        }
        if rng.below(4) == 0 {
            tx.rollback().unwrap();
        } else {
            tx.commit().unwrap();
            model = pending;
        }
        if round % 97 == 96 {
            // Shrinks the file: pages past the new end must leave every cache.
            writer
                .execute_batch("DELETE FROM t WHERE k % 3 = 0")
                .unwrap();
            model.retain(|k, _| k % 3 != 0);
            writer.execute_batch("VACUUM").unwrap();
        }
        assert_eq!(
            contents(&writer),
            model,
            "writer, round {round}, seed {seed:#x}"
        );
        assert_eq!(
            contents(&reader),
            model,
            "reader, round {round}, seed {seed:#x}"
        );
    }
    let check: String = writer
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    let stats = page_cache::stats();
    assert!(stats.installed, "the wrapper was not installed: {stats:?}");
    assert!(
        stats.truncates_skipped > 0,
        "no truncate was skipped, so the wrapper saves nothing: {stats:?}"
    );
    assert!(
        stats.truncates_passed > 0,
        "rollbacks and VACUUM must reach the default cache: {stats:?}"
    );
}
