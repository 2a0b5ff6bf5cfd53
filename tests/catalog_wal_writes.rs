//! The catalog's WAL write gathering (`catalog::wal_writes`) holds SQLite's
//! WAL writes in memory until a commit frame is complete. A mistake there
//! shows as a committed transaction missing from the file (lost on kill -9)
//! or a reader seeing frames that are not written yet. These tests drive
//! real SQLite through the VFS with concurrent readers and checkpoints, and
//! after every commit copy the files as the OS holds them (what a kill -9
//! would leave) and open the copy with SQLite's default VFS.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::wal_gathering_catalog as open;
use phivault::catalog::wal_writes;
use rusqlite::{params, Connection};

/// A new database at `path` with the table the tests fill, `t(k, v)`.
fn open_with_table(path: &Path) -> Connection {
    let conn = open(path);
    conn.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        .expect("create");
    conn
}

type Model = BTreeMap<i64, Vec<u8>>;

fn contents(conn: &Connection) -> Model {
    let mut st = conn
        .prepare("SELECT k, v FROM t ORDER BY k")
        .expect("prepare");
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

/// The database as a kill -9 at this instant would leave it: the main file
/// and the WAL as the OS has them, opened with SQLite's default VFS (which
/// rebuilds the WAL index from the WAL, as after a crash).
fn as_after_kill(db: &Path, scratch: &Path) -> Model {
    let copy = scratch.join("copy.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
    }
    std::fs::copy(db, &copy).expect("copy db");
    std::fs::copy(
        format!("{}-wal", db.display()),
        format!("{}-wal", copy.display()),
    )
    .expect("copy wal");
    let conn = Connection::open(&copy).expect("open copy");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok", "the copy is corrupt");
    contents(&conn)
}

/// Compares without printing megabytes of blobs on failure.
fn same(got: &Model, want: &Model, what: &str) {
    if got == want {
        return;
    }
    let differ = want
        .iter()
        .filter(|(k, v)| got.get(k) != Some(v))
        .map(|(k, _)| *k)
        .chain(got.keys().filter(|k| !want.contains_key(k)).copied())
        .take(10)
        .collect::<Vec<_>>();
    panic!(
        "{what}: {} rows, expected {}; first differing keys {differ:?}",
        got.len(),
        want.len()
    );
}

fn payload(rng: &mut common::Rng, max: u64) -> Vec<u8> {
    let len = 1 + rng.below(max) as usize;
    let seed = rng.next();
    (0..len)
        .map(|i| (seed >> (i % 7 * 8)) as u8 ^ i as u8)
        .collect()
}

#[test]
fn every_commit_is_in_the_files_and_readers_see_only_written_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let writer = open_with_table(&db);
    let reader = open(&db);
    let checkpointer = open(&db);
    // Writes and flushes during the small transactions, which are what the
    // mount's closes look like.
    let (mut small_writes, mut small_flushes) = (0, 0);

    let mut rng = common::Rng(0x5eed_f3a1);
    let mut model = Model::new();
    for step in 0..600u32 {
        let before = wal_writes::stats();
        let tx = writer.unchecked_transaction().expect("begin");
        let mut next = model.clone();
        // Mostly small transactions like the mount's closes; now and then a
        // large one, which spills frames before its commit.
        let (changes, max_len) = if step % 97 == 1 {
            (1500, 3000)
        } else {
            (1 + rng.below(12), 200)
        };
        for _ in 0..changes {
            let k = rng.below(4000) as i64;
            if rng.below(5) == 0 {
                tx.execute("DELETE FROM t WHERE k = ?1", params![k])
                    .expect("delete");
                next.remove(&k);
            } else {
                let v = payload(&mut rng, max_len);
                tx.execute(
                    "INSERT OR REPLACE INTO t(k, v) VALUES (?1, ?2)",
                    params![k, v],
                )
                .expect("upsert");
                next.insert(k, v);
            }
        }
        if rng.below(10) == 0 {
            tx.rollback().expect("rollback");
        } else {
            tx.commit().expect("commit");
            model = next;
        }
        if changes < 100 {
            let after = wal_writes::stats();
            small_writes += after.writes - before.writes;
            small_flushes += after.flushes - before.flushes;
        }
        same(
            &contents(&reader),
            &model,
            &format!("reader after step {step}"),
        );
        if step % 5 == 0 {
            let files = as_after_kill(&db, dir.path());
            same(&files, &model, &format!("files after step {step}"));
        }
        if rng.below(8) == 0 {
            checkpointer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .expect("checkpoint");
        }
        if step % 150 == 149 {
            // Restarts the WAL from its first frame.
            writer
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .expect("truncate checkpoint");
        }
    }
    let ok: String = writer
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok");
    same(&contents(&writer), &model, "writer at the end");

    assert!(
        small_writes > 5_000,
        "the test wrote through the VFS ({small_writes} writes)"
    );
    assert!(
        small_flushes * 5 < small_writes,
        "writes were gathered: {small_writes} WAL writes reached the file in {small_flushes}"
    );
}

/// Size of the WAL file and where its valid frames end (1 KiB pages). The
/// frame count is `mxFrame` of the WAL index header, at byte 16 of the
/// shared-memory file in native order: reading it does not checkpoint,
/// which would let the next commit rewind the WAL over older frames.
fn wal_extent(db: &Path) -> (u64, u64) {
    let shm = std::fs::read(format!("{}-shm", db.display())).expect("read WAL index");
    let frames = u32::from_ne_bytes(shm[16..20].try_into().expect("4 bytes"));
    let size = std::fs::metadata(format!("{}-wal", db.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    (size, 32 + frames as u64 * (24 + 1024))
}

/// On ext4 (and XFS) the WAL keeps zeros written ahead of its frames, so
/// that fsyncs through the mount overwrite allocated blocks instead of
/// growing the file; SQLite still finds exactly the committed transactions,
/// in the live connection and in the files a kill -9 leaves. On tmpfs,
/// where it would gain nothing, the WAL ends at its last frame.
#[test]
fn zeros_are_kept_ahead_of_the_wal_where_they_make_fsyncs_cheaper() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        phivault::store::overwrites_skip_journal(dir.path()),
        "this test needs its temporary directory on ext4 or XFS (as on CI)"
    );
    let fs = common::Tmpfs::new("64m");
    for (base, ahead) in [(dir.path(), true), (fs.path(), false)] {
        let db = base.join("t.db");
        let conn = open_with_table(&db);
        let mut rng = common::Rng(0xa11e);
        let mut model = Model::new();
        for k in 0..3000i64 {
            let v = payload(&mut rng, 1500);
            conn.execute("INSERT INTO t(k, v) VALUES (?1, ?2)", params![k, v])
                .expect("insert");
            model.insert(k, v);
            if k % 250 != 0 {
                continue;
            }
            let (size, frames_end) = wal_extent(&db);
            if ahead {
                assert!(
                    size >= frames_end + (2 << 20),
                    "after row {k}: WAL of {size} bytes, frames end at {frames_end}"
                );
                let wal = std::fs::read(format!("{}-wal", db.display())).expect("read WAL");
                assert!(
                    wal[frames_end as usize..].iter().all(|&b| b == 0),
                    "after row {k}: only zeros follow the frames"
                );
            } else {
                assert_eq!(size, frames_end, "after row {k} on tmpfs");
            }
            let scratch = tempfile::tempdir().expect("tempdir");
            same(
                &as_after_kill(&db, scratch.path()),
                &model,
                &format!("files after row {k}"),
            );
            if k == 1500 {
                // A truncating checkpoint empties the WAL; zeros follow the
                // frames written after it again.
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .expect("truncate checkpoint");
                assert_eq!(wal_extent(&db).0, 0, "truncated WAL");
            }
        }
        same(&contents(&conn), &model, "the live connection");
    }
}

/// A commit whose WAL write fails (a full filesystem) fails as it would
/// without gathering: SQLite reports it and rolls back, the earlier commits
/// stay intact, and commits work again once space is freed.
#[test]
fn a_full_disk_fails_the_commit_and_keeps_earlier_ones() {
    // Mounting a tmpfs needs root, as CI has.
    let fs = common::Tmpfs::new("4m");
    let mnt = fs.path();

    // Most of the space goes to a ballast file, deleted later to free it.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0x55u8; 3 << 20]).expect("write ballast");
    let db = mnt.join("t.db");
    let conn = open_with_table(&db);
    let mut rng = common::Rng(7);
    let mut model = Model::new();
    let mut full = None;
    for k in 0..10_000i64 {
        let v = payload(&mut rng, 3000);
        match conn.execute("INSERT INTO t(k, v) VALUES (?1, ?2)", params![k, v]) {
            Ok(_) => {
                model.insert(k, v);
            }
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let err = full.expect("the small filesystem fills up");
    assert!(
        err.to_string().contains("full") || err.to_string().contains("disk"),
        "the error says the disk is full: {err}"
    );
    same(
        &contents(&conn),
        &model,
        "earlier commits, as SQLite sees them",
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let files = as_after_kill(&db, scratch.path());
    same(&files, &model, "earlier commits, in the files");

    std::fs::remove_file(&ballast).expect("remove ballast");
    conn.execute("DELETE FROM t WHERE k % 2 = 0", [])
        .expect("delete");
    model.retain(|k, _| k % 2 != 0);
    conn.execute("INSERT INTO t(k, v) VALUES (-1, x'01')", [])
        .expect("insert after freeing");
    model.insert(-1, vec![1]);
    drop(conn);
    let conn = open(&db);
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok");
    same(&contents(&conn), &model, "after reopening");
}
