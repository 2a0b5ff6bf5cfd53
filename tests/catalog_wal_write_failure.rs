//! A write of the catalog's gathered WAL frames that fails (a full disk)
//! must end the whole SQLite transaction, never let a commit publish frames
//! that are not in the file (`catalog::wal_writes`).
//!
//! This test has a process of its own: SQLite is built here with
//! SQLITE_ENABLE_MEMORY_MANAGEMENT, so all connections of a process share
//! one page cache, and whether the transaction below spills frames depends
//! on the other connections open at the time. Run next to the other WAL
//! tests, its cache sometimes held the whole transaction and nothing was
//! written while writes failed.

mod common;

use common::wal_gathering_catalog as open;
use rusqlite::Connection;

/// The WAL file whose writes fail, by inode; 0 for none.
static FAILING_WAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `pwrite` for the default VFS that fails with ENOSPC on `FAILING_WAL` and
/// writes everything else.
unsafe extern "C" fn pwrite_failing_one_file(
    fd: libc::c_int,
    buf: *const libc::c_void,
    len: libc::size_t,
    offset: libc::off64_t,
) -> libc::ssize_t {
    let ino = FAILING_WAL.load(std::sync::atomic::Ordering::SeqCst);
    if ino != 0 {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) == 0 && st.st_ino == ino {
            *libc::__errno_location() = libc::ENOSPC;
            return -1;
        }
    }
    libc::pwrite64(fd, buf, len, offset)
}

/// Routes the default VFS's writes through `pwrite_failing_one_file` for
/// the rest of the process (other files are not affected).
fn install_failing_pwrite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        let unix = rusqlite::ffi::sqlite3_vfs_find(std::ptr::null());
        let set = (*unix)
            .xSetSystemCall
            .expect("the unix VFS can swap system calls");
        type Pwrite = unsafe extern "C" fn(
            libc::c_int,
            *const libc::c_void,
            libc::size_t,
            libc::off64_t,
        ) -> libc::ssize_t;
        // SQLite keeps system calls as untyped function pointers.
        let f: rusqlite::ffi::sqlite3_syscall_ptr = Some(std::mem::transmute::<
            Pwrite,
            unsafe extern "C" fn(),
        >(pwrite_failing_one_file));
        for name in [c"pwrite", c"pwrite64"] {
            // The build uses one of the two; the other is absent.
            let _ = set(unix, name.as_ptr(), f);
        }
    });
}

/// Frames SQLite spills from a full cache in the middle of a transaction
/// are gathered; if their write fails later, at a read, SQLite must give up
/// the whole transaction, as it does when a spill's own write fails, not
/// just the statement: the frames it counts as written are not in the file,
/// and a commit would publish them (a corrupt catalog).
#[test]
fn a_failed_write_of_spilled_frames_ends_the_whole_transaction() {
    install_failing_pwrite();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let conn = open(&db);
    conn.execute_batch(
        "PRAGMA cache_size=20;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, u INTEGER UNIQUE);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<100)
         INSERT INTO t SELECT i, randomblob(300), i FROM c;",
    )
    .expect("committed rows");
    let wal_ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("{}-wal", db.display()))
            .expect("the WAL exists")
            .ino()
    };

    conn.execute_batch("BEGIN").expect("begin");
    // Far more than 20 pages: the cache spills frames to the WAL.
    conn.execute(
        "WITH RECURSIVE c(i) AS (SELECT 101 UNION ALL SELECT i+1 FROM c WHERE i<2100)
         INSERT INTO t SELECT i, randomblob(300), i FROM c",
        [],
    )
    .expect("insert in the transaction");
    FAILING_WAL.store(wal_ino, std::sync::atomic::Ordering::SeqCst);
    let failed = conn.execute("UPDATE t SET u = u + 1000000 WHERE id > 0", []);
    FAILING_WAL.store(0, std::sync::atomic::Ordering::SeqCst);
    assert!(
        failed.is_err(),
        "the update cannot succeed with the WAL unwritable"
    );
    if !conn.is_autocommit() {
        // SQLite kept the transaction: committing it must not publish
        // frames that were never written.
        let _ = conn.execute_batch("COMMIT");
    }

    let other = Connection::open(&db).expect("second connection");
    let ok: String = other
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(
        ok, "ok",
        "the catalog is intact after the failed transaction"
    );
    let rows: i64 = other
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 100, "the whole transaction was undone");
    assert!(conn.is_autocommit(), "SQLite gave up the whole transaction");
}
