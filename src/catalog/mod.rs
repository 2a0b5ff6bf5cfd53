//! The catalog: one SQLite database (WAL mode) holding the tree, temporal
//! directory entries, per-version extents, the block index and packs.
//!
//! Stores names only as ciphertext plus a keyed lookup hash; never sees a key.
//! Every public method is one statement or runs inside the caller's `tx`.

mod allocations;
mod generations;
mod lost;
pub mod page_cache;
mod row_cache;
mod schema;
mod types;
pub mod wal_writes;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{AppendOutcome, BlockLocation};

pub use allocations::BlockRun;
pub use lost::LossCause;
pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("catalog {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog schema version {0} is not supported by this phivault (it reads versions 1 to {max}); use a release that does", max = schema::VERSION)]
    Schema(i64),
    #[error("upgrading the catalog to schema version {to} failed, it is left as it was: {source}")]
    Upgrade { to: i64, source: rusqlite::Error },
    #[error("catalog integrity check failed: {0}")]
    Integrity(String),
}

pub type Result<T> = std::result::Result<T, CatalogError>;

impl Drop for Catalog {
    /// A group still open at drop would be rolled back: commit it instead.
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!("catalog: final commit failed: {e}");
        }
    }
}

/// How long grouped changes may wait for a commit (see [`Catalog::tx`]).
pub const GROUP_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// Page size of new catalogs. Every close commits, and a commit writes each
/// page it touched to the WAL whole (about a dozen pages for a new file), so
/// small pages cut the bytes written per close by three quarters (measured:
/// untar of 8,400 files 10% faster than with 4 KiB pages).
const NEW_CATALOG_PAGE_SIZE: u32 = 1024;

/// WAL size at which a commit also checkpoints. Far above SQLite's 1000
/// pages: a page rewritten by many commits in between (a directory's inode,
/// the tail of a table) is copied into the database once, not once per
/// thousand frames (measured: untar a further 20% faster). The WAL on disk
/// grows to about this size; a clean unmount truncates it.
const WAL_CHECKPOINT_BYTES: u32 = 48 << 20;

pub struct Catalog {
    conn: Connection,
    /// When the open group of changes began (None: nothing uncommitted).
    group_started: Cell<Option<std::time::Instant>>,
    /// Number of the open group, or of the last one: groups count up from 1.
    group: Cell<u64>,
    /// Inode numbers are handed out here, never twice in a process, so that
    /// a number the kernel still holds is not reused after a rollback.
    next_ino: Cell<Ino>,
    /// `next_ino` when the open group began.
    group_first_ino: Cell<Ino>,
    /// `total_changes()` when the open group began.
    group_first_change: Cell<u64>,
    lost: RefCell<lost::LostChanges>,
    wal_path: PathBuf,
    /// `total_changes()` when `sync_wal` last made the WAL durable.
    synced: std::cell::Cell<u64>,
    /// Only in a read-write catalog (see `row_cache`).
    rows: RefCell<Option<row_cache::RowCache>>,
    generations: generations::Generations,
    /// Whether a file may hold allocated blocks (see `allocations`).
    allocating: Cell<bool>,
}

impl Catalog {
    /// Opens (or with `create`, creates) the catalog at `path`.
    pub fn open(path: &Path, create: bool) -> Result<Self> {
        if create {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| CatalogError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let conn = connect_read_write(path)?;
        if create {
            // Only possible before the first table exists.
            conn.execute_batch(&format!("PRAGMA page_size={NEW_CATALOG_PAGE_SIZE};"))?;
        }
        // NORMAL: commits reach the OS at once (a killed daemon loses nothing)
        // and are made durable by `sync_wal`, on fsync or within a second.
        // SQLite's own checkpoints stay on: only the writer can rewind the
        // WAL, and with a group open most of the time a checkpoint from
        // another connection never catches up (measured: the WAL grew without
        // bound and untar slowed by a fifth). A `Checkpointer` does most of
        // the copying beforehand.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384;
             PRAGMA temp_store=MEMORY; PRAGMA busy_timeout=10000;",
        )?;
        let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint={};",
            WAL_CHECKPOINT_BYTES / page_size
        ))?;
        // Every statement the engine runs stays prepared (the default of 16
        // is fewer than the engine uses, and re-parsing costs more than running).
        conn.set_prepared_statement_cache_capacity(256);
        let mut cat = Self::with_connection(conn, PathBuf::from(format!("{}-wal", path.display())));
        *cat.rows.borrow_mut() = Some(row_cache::RowCache::new());
        if create {
            cat.conn.execute_batch(schema::SCHEMA)?;
        } else {
            let v: i64 = cat
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))?;
            schema::upgrade(&cat.conn, v)?;
        }
        cat.note_allocations()?;
        let max_ino: i64 =
            cat.conn
                .query_row("SELECT coalesce(max(ino), 0) FROM inodes", [], |r| r.get(0))?;
        cat.next_ino.set(max_ino as Ino + 1);
        // A new catalog's root keeps generation 0, which the kernel gives
        // every root; the first open of the store starts generation 1.
        if !create {
            cat.generations = generations::Generations::start(&cat.conn, max_ino as Ino + 1)?;
            cat.sync_wal()?;
        }
        Ok(cat)
    }

    /// Read-only access for `info` and the like, safe beside a running daemon.
    pub fn open_readonly(path: &Path) -> Result<Self> {
        let conn = connect(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.execute_batch("PRAGMA busy_timeout=10000;")?;
        let mut cat = Self::with_connection(conn, PathBuf::new());
        cat.generations = generations::Generations::load(&cat.conn)?;
        cat.note_allocations()?;
        Ok(cat)
    }

    /// A catalog on `conn` with no group open yet.
    fn with_connection(conn: Connection, wal_path: PathBuf) -> Self {
        Self {
            conn,
            group_started: Default::default(),
            group: Default::default(),
            next_ino: Default::default(),
            group_first_ino: Default::default(),
            group_first_change: Default::default(),
            lost: Default::default(),
            wal_path,
            synced: Default::default(),
            rows: Default::default(),
            generations: Default::default(),
            allocating: Default::default(),
        }
    }

    /// Runs `f` atomically: all of its changes or none (a savepoint).
    ///
    /// Changes are grouped: they join one open transaction that `commit`
    /// ends (on close, fsync and sync), or the background flusher once it is
    /// `GROUP_MAX_AGE` old. Until then a kill -9 of the daemon can lose them;
    /// grouping is what lets a file's create, writes, chmod, chown, utimes
    /// and close cost one commit instead of six.
    pub fn tx<T, E: From<CatalogError>>(
        &self,
        f: impl FnOnce(&Catalog) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.begin_group().map_err(E::from)?;
        self.run("SAVEPOINT op").map_err(E::from)?;
        let before = self.conn.total_changes();
        match f(self) {
            Ok(v) => {
                self.run("RELEASE op").map_err(E::from)?;
                Ok(v)
            }
            Err(e) => {
                if self.conn.is_autocommit() {
                    // SQLite itself gave up the whole transaction (a full
                    // disk or an I/O error while spilling pages).
                    self.group_lost();
                } else {
                    // Undoes only this operation; the group's earlier ones
                    // stay. Rows cached only follow writes that succeeded:
                    // an operation that wrote nothing (EEXIST, say, at each
                    // `mkdir -p`) leaves the cache as it is.
                    if self.conn.total_changes() != before {
                        self.forget_cached_rows();
                    }
                    let _ = self
                        .run("ROLLBACK TO op")
                        .and_then(|_| self.run("RELEASE op"));
                }
                Err(e)
            }
        }
    }

    /// `tx` for an operation that changes at most one row, with one
    /// statement, and can fail only before it: SQLite makes a statement
    /// atomic by itself, so this takes no savepoint (two statements, a
    /// quarter of a chmod's time).
    pub fn tx_one_row<T, E: From<CatalogError>>(
        &self,
        f: impl FnOnce(&Catalog) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.begin_group().map_err(E::from)?;
        let before = self.conn.total_changes();
        let res = f(self);
        let changed = self.conn.total_changes() - before;
        debug_assert!(changed <= 1, "tx_one_row changed more than one row");
        debug_assert!(
            res.is_ok() || changed == 0,
            "tx_one_row failed after its write, which no savepoint undoes"
        );
        if res.is_err() {
            if self.conn.is_autocommit() {
                self.group_lost();
            } else if changed != 0 {
                self.forget_cached_rows();
            }
        }
        res
    }

    /// `tx`, then commits: for operations that are versions (truncate,
    /// rename, delete), which survive a kill -9 of the daemon at once.
    pub fn tx_commit<T, E: From<CatalogError>>(
        &self,
        f: impl FnOnce(&Catalog) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let v = self.tx(f)?;
        self.commit().map_err(E::from)?;
        Ok(v)
    }

    fn run(&self, sql: &str) -> Result<()> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Opens a group for reading if none is open. Outside a transaction
    /// SQLite takes and drops its file and WAL locks around every statement,
    /// four fcntl calls each: 17% of the daemon's time under `ls -lR`. In a
    /// group they are taken once. The group ends like any other, within
    /// `GROUP_MAX_AGE` or at the next commit; a write in it makes it a write
    /// transaction (this connection is the store's only writer, so that
    /// never waits). Only for a catalog whose flusher runs, which ends it.
    pub fn begin_read(&self) -> Result<()> {
        self.open_group("BEGIN")
    }

    fn begin_group(&self) -> Result<()> {
        self.open_group("BEGIN IMMEDIATE")
    }

    /// Starts a group with `begin` unless one is open already.
    fn open_group(&self, begin: &str) -> Result<()> {
        if self.conn.is_autocommit() {
            self.group_lost();
            self.run(begin)?;
            self.group_started.set(Some(std::time::Instant::now()));
            self.group.set(self.group.get() + 1);
            self.group_first_ino.set(self.next_ino.get());
            self.group_first_change.set(self.conn.total_changes());
        }
        Ok(())
    }

    /// The open group's number (or the last one's): what a caller that just
    /// changed something in `tx` later asks `lost_in` about.
    pub fn group(&self) -> u64 {
        self.group.get()
    }

    /// True once every group up to `group` is committed or lost (groups
    /// end in order).
    pub fn settled(&self, group: u64) -> bool {
        group < self.group.get() || self.conn.is_autocommit()
    }

    /// Whether `group` was rolled back after its requests were answered,
    /// and why.
    pub fn lost_in(&self, group: u64) -> Option<LossCause> {
        self.lost.borrow().of_group(group)
    }

    /// Whether `ino` was created in a group that was rolled back.
    pub fn lost_inode(&self, ino: Ino) -> Option<LossCause> {
        self.lost.borrow().of_inode(ino)
    }

    /// How many groups were lost so far, and why the last one was.
    pub fn losses(&self) -> (u64, Option<LossCause>) {
        self.lost.borrow().count()
    }

    /// Records the open group as lost if SQLite ended it (to be called once
    /// the connection is in autocommit mode): a failed COMMIT, or a failed
    /// statement after which SQLite rolled back on its own. A group that
    /// changed nothing (a read group) loses nothing.
    fn group_lost(&self) {
        if self.group_started.take().is_none()
            || self.conn.total_changes() == self.group_first_change.get()
        {
            return;
        }
        self.forget_cached_rows();
        // SAFETY: reads the connection's last error code; no other use of
        // the handle.
        let code = unsafe { rusqlite::ffi::sqlite3_extended_errcode(self.conn.handle()) };
        let cause = if code & 0xff == rusqlite::ffi::SQLITE_FULL {
            LossCause::DiskFull
        } else {
            LossCause::Io
        };
        self.lost.borrow_mut().record(
            self.group.get(),
            self.group_first_ino.get()..self.next_ino.get(),
            cause,
        );
        tracing::error!(
            "catalog group {} was rolled back ({cause:?}); its changes are reported lost",
            self.group.get()
        );
    }

    /// Commits the open group, if any: its changes reach the OS (they survive
    /// a kill -9 of the daemon); `sync_wal` makes them durable.
    pub fn commit(&self) -> Result<()> {
        if self.conn.is_autocommit() {
            // Nothing open, or a group SQLite ended by itself.
            self.group_lost();
            return Ok(());
        }
        match self.run("COMMIT") {
            Ok(()) => {
                self.group_started.set(None);
                Ok(())
            }
            Err(e) => {
                if self.conn.is_autocommit() {
                    // SQLite gave up the transaction (disk full or I/O error):
                    // the group's changes are gone, which must not go unnoticed.
                    self.group_lost();
                }
                // Otherwise the group stays open and the next commit retries.
                Err(e)
            }
        }
    }

    /// Rolls the open group back and records it lost, as when SQLite gives
    /// up a transaction (tests of what the engine then reports).
    #[cfg(test)]
    pub(crate) fn lose_open_group(&self) {
        self.run("ROLLBACK").expect("a group is open");
        self.group_lost();
    }

    /// Commits the open group if it is older than `GROUP_MAX_AGE`.
    pub fn commit_if_old(&self) -> Result<()> {
        match self.group_started.get() {
            Some(t) if t.elapsed() >= GROUP_MAX_AGE => self.commit(),
            _ => Ok(()),
        }
    }

    /// What `sync_wal` would flush: the WAL's path and the change count it
    /// covers, or None if nothing changed since the last sync. Lets the caller
    /// fsync without holding the catalog.
    pub fn wal_to_sync(&self) -> Option<(PathBuf, u64)> {
        debug_assert!(self.conn.is_autocommit(), "commit before syncing the WAL");
        let changes = self.conn.total_changes();
        (changes != self.synced.get()).then(|| (self.wal_path.clone(), changes))
    }

    pub fn mark_wal_synced(&self, changes: u64) {
        if changes > self.synced.get() {
            self.synced.set(changes);
        }
    }

    /// Makes every committed transaction durable (fsync of the WAL).
    pub fn sync_wal(&self) -> Result<()> {
        self.commit()?;
        if let Some((path, changes)) = self.wal_to_sync() {
            fsync_path(&path)?;
            self.mark_wal_synced(changes);
        }
        Ok(())
    }

    pub fn checkpoint(&self) -> Result<()> {
        self.commit()?;
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }

    pub fn integrity_check(&self) -> Result<()> {
        let res: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if res == "ok" {
            Ok(())
        } else {
            Err(CatalogError::Integrity(res))
        }
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Sets `key` unless it is set: once it is, a call changes no page.
    pub fn meta_set_once(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)")?
            .execute(params![key, value])?;
        Ok(())
    }

    pub fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    // ---------------------------------------------------------------- inodes

    /// The generation of inode `ino` (see `generations`), which with its
    /// number names it in file handles.
    pub fn generation(&self, ino: Ino) -> u64 {
        self.generations.of(ino)
    }

    fn with_rows<T>(&self, f: impl FnOnce(&mut row_cache::RowCache) -> T) -> Option<T> {
        self.rows.borrow_mut().as_mut().map(f)
    }

    /// SQLite undid changes: what the row cache holds may be gone.
    fn forget_cached_rows(&self) {
        self.with_rows(|rows| rows.clear());
    }

    pub fn inode(&self, ino: Ino) -> Result<Option<Inode>> {
        if let Some(inode) = self.with_rows(|rows| rows.inode(ino)).flatten() {
            return Ok(Some(inode));
        }
        let mut st = self.conn.prepare_cached(
            "SELECT ino, kind, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, btime,
                    version, version_open FROM inodes WHERE ino=?1",
        )?;
        let inode = st.query_row([ino as i64], Inode::from_row).optional()?;
        if let Some(i) = &inode {
            self.with_rows(|rows| rows.put_inode(i));
        }
        Ok(inode)
    }

    pub fn insert_inode(&self, n: &NewInode) -> Result<Ino> {
        let ino = self.next_ino.get();
        let mut st = self.conn.prepare_cached(
            "INSERT INTO inodes(kind, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, btime,
                                version, version_open, target, ino)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?8, 0, 0, ?9, ?10)",
        )?;
        self.next_ino.set(ino + 1);
        st.execute(params![
            n.kind as u8,
            n.mode,
            n.uid,
            n.gid,
            n.nlink,
            n.size as i64,
            n.rdev,
            n.time,
            n.target,
            ino as i64
        ])?;
        // The caller asks for the new file's attributes next, and untar
        // for its row about eight times before the close.
        self.with_rows(|rows| {
            rows.put_inode(&Inode {
                ino,
                kind: n.kind,
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                nlink: n.nlink,
                size: n.size,
                rdev: n.rdev,
                atime: n.time,
                mtime: n.time,
                ctime: n.time,
                btime: n.time,
                version: 0,
                version_open: false,
            });
            // Inode numbers are never reused, so no extent or extended
            // attribute names this one.
            rows.put_allocated(ino, 0);
            rows.put_no_xattrs(ino);
        });
        Ok(ino)
    }

    /// Writes back every mutable field of `i`.
    pub fn update_inode(&self, i: &Inode) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE inodes SET mode=?2, uid=?3, gid=?4, nlink=?5, size=?6, rdev=?7, atime=?8,
                    mtime=?9, ctime=?10, version=?11, version_open=?12 WHERE ino=?1",
        )?;
        st.execute(params![
            i.ino as i64,
            i.mode,
            i.uid,
            i.gid,
            i.nlink,
            i.size as i64,
            i.rdev,
            i.atime,
            i.mtime,
            i.ctime,
            i.version as i64,
            i.version_open
        ])?;
        self.with_rows(|rows| rows.put_inode(i));
        Ok(())
    }

    pub fn symlink_target(&self, ino: Ino) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT target FROM inodes WHERE ino=?1",
                [ino as i64],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Inodes with changes that were never recorded as a version (a crash
    /// before close): recovery records them.
    pub fn open_versions(&self) -> Result<Vec<Ino>> {
        let mut st = self
            .conn
            .prepare("SELECT ino FROM inodes WHERE version_open=1")?;
        let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .map(|i| i as Ino)
            .collect())
    }

    // -------------------------------------------------------------- entries

    pub fn lookup(&self, parent: Ino, hash: &NameHash) -> Result<Option<(Ino, Kind)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT ino, kind FROM dentries INDEXED BY dentries_live WHERE parent=?1 AND hash=?2 AND valid_until IS NULL",
        )?;
        Ok(st
            .query_row(params![parent as i64, &hash[..]], |r| {
                Ok((r.get::<_, i64>(0)? as Ino, r.get::<_, Kind>(1)?))
            })
            .optional()?)
    }

    pub fn insert_entry(&self, e: &NewEntry<'_>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO dentries(parent, hash, name, ino, kind, valid_from) VALUES (?1,?2,?3,?4,?5,?6)",
        )?;
        st.execute(params![
            e.parent as i64,
            &e.hash[..],
            e.sealed_name,
            e.ino as i64,
            e.kind as u8,
            e.time
        ])?;
        Ok(())
    }

    /// Ends the live entry (parent, hash) at `time`; its row stays as history.
    pub fn end_entry(&self, parent: Ino, hash: &NameHash, time: i64) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "UPDATE dentries INDEXED BY dentries_live SET valid_until=?3 WHERE parent=?1 AND hash=?2 AND valid_until IS NULL",
        )?;
        Ok(st.execute(params![parent as i64, &hash[..], time])? > 0)
    }

    /// The sealed name of a live entry, to move it under a new parent.
    pub fn entry_name(&self, parent: Ino, hash: &NameHash) -> Result<Option<Vec<u8>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT name FROM dentries INDEXED BY dentries_live WHERE parent=?1 AND hash=?2 AND valid_until IS NULL",
        )?;
        Ok(st
            .query_row(params![parent as i64, &hash[..]], |r| r.get(0))
            .optional()?)
    }

    pub fn has_children(&self, dir: Ino) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM dentries INDEXED BY dentries_list WHERE parent=?1 AND valid_until IS NULL LIMIT 1",
        )?;
        Ok(st.exists([dir as i64])?)
    }

    /// Live entries of `dir` at positions in (`after`, `until`], in a
    /// stable order. An entry's position is its row id, and a rename or a
    /// create writes a new row: so entries added after `until` was taken
    /// (see `last_entry_pos`) are left out, and a listing that renames what
    /// it reads does not meet its own renames again.
    pub fn list_dir(&self, dir: Ino, after: i64, until: i64, limit: usize) -> Result<Vec<DirRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, ino, kind FROM dentries INDEXED BY dentries_list
             WHERE parent=?1 AND valid_until IS NULL AND id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4",
        )?;
        let rows = st.query_map(params![dir as i64, after, until, limit as i64], |r| {
            Ok(DirRow {
                pos: r.get(0)?,
                sealed_name: r.get(1)?,
                ino: r.get::<_, i64>(2)? as Ino,
                kind: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The position of the newest entry of any directory (0 if none).
    /// Positions only grow: entry rows are never deleted.
    pub fn last_entry_pos(&self) -> Result<i64> {
        let mut st = self
            .conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM dentries")?;
        Ok(st.query_row([], |r| r.get(0))?)
    }

    /// The directory holding `dir` (directories have exactly one live entry).
    pub fn parent_of(&self, dir: Ino) -> Result<Option<Ino>> {
        let mut st = self.conn.prepare_cached(
            "SELECT parent FROM dentries INDEXED BY dentries_by_ino WHERE ino=?1 AND valid_until IS NULL LIMIT 1",
        )?;
        Ok(st
            .query_row([dir as i64], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|p| p as Ino))
    }

    /// One live (parent, sealed name) of `ino`.
    pub fn entry_of(&self, ino: Ino) -> Result<Option<(Ino, Vec<u8>)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT parent, name FROM dentries INDEXED BY dentries_by_ino WHERE ino=?1 AND valid_until IS NULL LIMIT 1",
        )?;
        Ok(st
            .query_row([ino as i64], |r| {
                Ok((r.get::<_, i64>(0)? as Ino, r.get(1)?))
            })
            .optional()?)
    }

    // --------------------------------------------------------- file content

    pub fn live_extent(&self, ino: Ino, idx: u64) -> Result<Option<BlockRef>> {
        let mut st = self.conn.prepare_cached(
            "SELECT b.hash, b.pack, b.offset, b.len, b.plain_len FROM extents e INDEXED BY extents_live
             JOIN blocks b ON b.id = e.block
             WHERE e.ino=?1 AND e.idx=?2 AND e.v_until IS NULL",
        )?;
        Ok(st
            .query_row(params![ino as i64, idx as i64], BlockRef::from_row)
            .optional()?)
    }

    /// Live extents of `ino` with idx in [first, last], in order.
    pub fn live_extents(&self, ino: Ino, first: u64, last: u64) -> Result<Vec<(u64, BlockRef)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT e.idx, b.hash, b.pack, b.offset, b.len, b.plain_len FROM extents e INDEXED BY extents_live
             JOIN blocks b ON b.id = e.block
             WHERE e.ino=?1 AND e.idx BETWEEN ?2 AND ?3 AND e.v_until IS NULL ORDER BY e.idx",
        )?;
        let rows = st.query_map(params![ino as i64, first as i64, last as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, BlockRef::from_offset_row(r, 1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn block_by_hash(&self, hash: &[u8]) -> Result<Option<i64>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM blocks WHERE hash=?1")?;
        Ok(st.query_row([hash], |r| r.get(0)).optional()?)
    }

    /// Indexes a block appended at `loc`; returns its row (the existing row
    /// if the block was already stored).
    pub fn insert_block(&self, hash: &[u8], loc: &BlockLocation, plain_len: u32) -> Result<i64> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO blocks(hash, pack, offset, len, plain_len) VALUES (?1,?2,?3,?4,?5)
             ON CONFLICT(hash) DO NOTHING",
        )?;
        let inserted = st.execute(params![
            hash,
            loc.pack.as_i64(),
            loc.offset as i64,
            loc.len,
            plain_len
        ])?;
        // Not RETURNING: SQLite gathers its rows in a temporary table, which
        // cost more than the lookup it saves.
        if inserted == 1 {
            return Ok(self.conn.last_insert_rowid());
        }
        Ok(self.block_by_hash(hash)?.expect("the row in the way"))
    }

    /// Points block `idx` of `ino` at `block` as of `version`. A row written
    /// in the same (still open) version is replaced; an older one is closed.
    pub fn put_extent(&self, ino: Ino, idx: u64, block: i64, version: u64) -> Result<()> {
        let mut ins = self
            .conn
            .prepare_cached("INSERT INTO extents(ino, idx, block, v_from) VALUES (?1,?2,?3,?4)")?;
        if self.with_rows(|rows| rows.allocated(ino)).flatten() == Some(0) {
            // A file without blocks (a new one, say) has no extent to
            // replace or end: two lookups fewer for each block untar stores.
            ins.execute(params![ino as i64, idx as i64, block, version as i64])?;
            self.with_rows(|rows| rows.put_allocated(ino, 1));
            return Ok(());
        }
        self.with_rows(|rows| rows.forget_allocated(ino));
        let mut upd = self.conn.prepare_cached(
            "UPDATE extents INDEXED BY extents_live SET block=?3 WHERE ino=?1 AND idx=?2 AND v_until IS NULL AND v_from=?4",
        )?;
        if upd.execute(params![ino as i64, idx as i64, block, version as i64])? > 0 {
            return Ok(());
        }
        let mut close = self.conn.prepare_cached(
            "UPDATE extents INDEXED BY extents_live SET v_until=?3 WHERE ino=?1 AND idx=?2 AND v_until IS NULL",
        )?;
        close.execute(params![ino as i64, idx as i64, version as i64])?;
        ins.execute(params![ino as i64, idx as i64, block, version as i64])?;
        Ok(())
    }

    /// Removes blocks idx >= `from_idx` (and <= `to_idx`) from the live file as of `version`.
    pub fn drop_extents(&self, ino: Ino, from_idx: u64, to_idx: u64, version: u64) -> Result<()> {
        self.with_rows(|rows| rows.forget_allocated(ino));
        let mut del = self.conn.prepare_cached(
            "DELETE FROM extents INDEXED BY extents_live WHERE ino=?1 AND idx BETWEEN ?2 AND ?3 AND v_until IS NULL AND v_from=?4",
        )?;
        let to = to_idx.min(i64::MAX as u64) as i64;
        del.execute(params![ino as i64, from_idx as i64, to, version as i64])?;
        let mut close = self.conn.prepare_cached(
            "UPDATE extents INDEXED BY extents_live SET v_until=?4 WHERE ino=?1 AND idx BETWEEN ?2 AND ?3 AND v_until IS NULL",
        )?;
        close.execute(params![ino as i64, from_idx as i64, to, version as i64])?;
        Ok(())
    }

    /// Blocks `ino` takes (what `st_blocks` counts): those holding data,
    /// and those allocated to it and not written yet.
    pub fn allocated_blocks(&self, ino: Ino) -> Result<u64> {
        Ok(self.live_blocks(ino)? + self.unwritten_blocks(ino)?)
    }

    fn live_blocks(&self, ino: Ino) -> Result<u64> {
        if let Some(n) = self.with_rows(|rows| rows.allocated(ino)).flatten() {
            return Ok(n);
        }
        let mut st = self.conn.prepare_cached(
            "SELECT count(*) FROM extents INDEXED BY extents_live WHERE ino=?1 AND v_until IS NULL",
        )?;
        let n = st.query_row([ino as i64], |r| r.get::<_, i64>(0))? as u64;
        self.with_rows(|rows| rows.put_allocated(ino, n));
        Ok(n)
    }

    // ------------------------------------------------------------- versions

    pub fn insert_version(&self, v: &VersionRow) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO versions(ino, version, time, size, reason) VALUES (?1,?2,?3,?4,?5)",
        )?;
        st.execute(params![
            v.ino as i64,
            v.version as i64,
            v.time,
            v.size as i64,
            v.reason as u8
        ])?;
        Ok(())
    }

    pub fn versions(&self, ino: Ino) -> Result<Vec<VersionRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT ino, version, time, size, reason FROM versions WHERE ino=?1 ORDER BY version",
        )?;
        let rows = st.query_map([ino as i64], |r| {
            Ok(VersionRow {
                ino: r.get::<_, i64>(0)? as Ino,
                version: r.get::<_, i64>(1)? as u64,
                time: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---------------------------------------------------------------- packs

    /// Records what a pack append did besides placing records: a pack opened.
    pub fn record_append(&self, outcome: &AppendOutcome) -> Result<()> {
        // At every append, not only the one that opened the pack: the group
        // that recorded the opening may have been rolled back (see `lost`),
        // and committed blocks must never point into a pack the catalog
        // does not list (recovery, replication and gc go by that list). An
        // opened pack holds the append's records, so it is among these.
        let mut recorded = None;
        for pack in outcome.locations.iter().map(|l| l.pack) {
            if recorded != Some(pack) {
                self.insert_pack(pack.as_i64())?;
                recorded = Some(pack);
            }
        }
        Ok(())
    }

    pub fn insert_pack(&self, pack: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO packs(id, sealed, size) VALUES (?1, 0, 0)")?
            .execute([pack])?;
        Ok(())
    }

    pub fn mark_pack_sealed(&self, pack: i64, size: u64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO packs(id, sealed, size) VALUES (?1, 1, ?2)")?
            .execute(params![pack, size as i64])?;
        Ok(())
    }

    pub fn forget_pack(&self, pack: i64) -> Result<()> {
        self.conn.execute("DELETE FROM packs WHERE id=?1", [pack])?;
        Ok(())
    }

    /// Unsealed packs and the end of the last record the catalog references.
    pub fn unsealed_packs(&self) -> Result<Vec<(i64, u64)>> {
        let mut st = self.conn.prepare(
            "SELECT p.id, COALESCE((SELECT max(offset + len) FROM blocks WHERE pack = p.id), 0)
             FROM packs p WHERE p.sealed = 0",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// After a power loss took the tail of pack `pack` (records from
    /// `intact_end` on): every live extent that points at a lost block falls
    /// back to the block it replaced (or a hole), the lost blocks leave the
    /// index so dedup never reuses them, and the file's size returns to the
    /// version before. Returns (inode, version that fell back) pairs.
    pub fn fall_back_from_lost_blocks(
        &self,
        pack: i64,
        intact_end: u64,
    ) -> Result<Vec<(Ino, u64)>> {
        self.forget_cached_rows();
        let lost: Vec<i64> = {
            let mut st = self
                .conn
                .prepare("SELECT id FROM blocks WHERE pack=?1 AND offset + len > ?2")?;
            let rows = st
                .query_map(params![pack, intact_end.min(i64::MAX as u64) as i64], |r| {
                    r.get(0)
                })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut affected = Vec::new();
        for block in lost {
            let hits: Vec<(i64, i64, i64, i64)> = {
                let mut st = self
                    .conn
                    .prepare("SELECT rowid, ino, idx, v_from FROM extents WHERE block=?1 AND v_until IS NULL")?;
                let rows = st.query_map([block], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (rowid, ino, idx, v_from) in hits {
                self.conn
                    .execute("DELETE FROM extents WHERE rowid=?1", [rowid])?;
                self.conn.execute(
                    "UPDATE extents SET v_until=NULL WHERE ino=?1 AND idx=?2 AND v_until=?3",
                    params![ino, idx, v_from],
                )?;
                let prev_size: Option<i64> = self
                    .conn
                    .query_row(
                        "SELECT size FROM versions WHERE ino=?1 AND version<?2 ORDER BY version DESC LIMIT 1",
                        params![ino, v_from],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(size) = prev_size {
                    self.conn
                        .execute("UPDATE inodes SET size=?2 WHERE ino=?1", params![ino, size])?;
                }
                affected.push((ino as Ino, v_from as u64));
            }
            self.conn
                .execute("DELETE FROM blocks WHERE id=?1", [block])?;
        }
        Ok(affected)
    }

    // ---------------------------------------------------------------- xattrs

    pub fn xattr_get(&self, ino: Ino, hash: &NameHash) -> Result<Option<Vec<u8>>> {
        if self.with_rows(|rows| rows.has_no_xattrs(ino)) == Some(true) {
            return Ok(None);
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT value FROM xattrs WHERE ino=?1 AND hash=?2")?;
        Ok(st
            .query_row(params![ino as i64, &hash[..]], |r| r.get(0))
            .optional()?)
    }

    pub fn xattr_set(&self, ino: Ino, hash: &NameHash, name: &[u8], value: &[u8]) -> Result<()> {
        self.with_rows(|rows| rows.forget_no_xattrs(ino));
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO xattrs(ino, hash, name, value) VALUES (?1,?2,?3,?4)",
            )?
            .execute(params![ino as i64, &hash[..], name, value])?;
        Ok(())
    }

    pub fn xattr_remove(&self, ino: Ino, hash: &NameHash) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM xattrs WHERE ino=?1 AND hash=?2")?
            .execute(params![ino as i64, &hash[..]])?
            > 0)
    }

    pub fn xattr_names(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        if self.with_rows(|rows| rows.has_no_xattrs(ino)) == Some(true) {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT name FROM xattrs WHERE ino=?1 ORDER BY hash")?;
        let rows = st.query_map([ino as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---------------------------------------------------------------- stats

    pub fn stats(&self) -> Result<Stats> {
        let q = |sql: &str| -> Result<i64> { Ok(self.conn.query_row(sql, [], |r| r.get(0))?) };
        Ok(Stats {
            files: q("SELECT count(*) FROM inodes WHERE kind=1 AND nlink>0")? as u64,
            directories: q("SELECT count(*) FROM inodes WHERE kind=2 AND nlink>0")? as u64,
            other_inodes: q("SELECT count(*) FROM inodes WHERE kind>2 AND nlink>0")? as u64,
            logical_bytes: q("SELECT COALESCE(sum(size),0) FROM inodes WHERE kind=1 AND nlink>0")?
                as u64,
            referenced_bytes: q(
                "SELECT COALESCE(sum(b.plain_len),0) FROM extents e JOIN blocks b ON b.id=e.block
                 WHERE e.v_until IS NULL",
            )? as u64,
            unique_blocks: q("SELECT count(*) FROM blocks")? as u64,
            unique_plain_bytes: q("SELECT COALESCE(sum(plain_len),0) FROM blocks")? as u64,
            stored_block_bytes: q("SELECT COALESCE(sum(len),0) FROM blocks")? as u64,
            versions: q("SELECT count(*) FROM versions")? as u64,
            packs: q("SELECT count(*) FROM packs")? as u64,
        })
    }
}

/// A second connection that copies committed WAL frames into the database
/// in the background. Its checkpoints are PASSIVE: they neither wait for the
/// writer nor block it. The writer's own checkpoint at `WAL_CHECKPOINT_BYTES`
/// (which alone can rewind the WAL) then finds little left to copy, so the
/// request that triggers it stalls for milliseconds instead of a tenth of a
/// second.
pub struct Checkpointer {
    conn: Connection,
}

impl Checkpointer {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = connect_read_write(path)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;")?;
        Ok(Self { conn })
    }

    /// Copies what was committed since the last call; returns the frames in
    /// the WAL and how many of them are in the database now. Returns at once
    /// if another checkpoint is running.
    pub fn copy_back(&self) -> Result<(u64, u64)> {
        let (frames, copied): (i64, i64) =
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(1)?, r.get(2)?))
                })?;
        Ok((frames.max(0) as u64, copied.max(0) as u64))
    }
}

/// A connection to an existing catalog, used by one thread at a time.
fn connect_read_write(path: &Path) -> Result<Connection> {
    connect(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Every catalog connection: the page cache wrapper installed before
/// SQLite's first use, WAL writes gathered, and fixed query plans.
fn connect(path: &Path, flags: rusqlite::OpenFlags) -> Result<Connection> {
    page_cache::install();
    let conn = match wal_writes::vfs_name() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs)?,
        None => Connection::open_with_flags(path, flags)?,
    };
    keep_query_plans(&conn)?;
    Ok(conn)
}

/// The engine's queries have one right plan whatever their parameters. By
/// default SQLite (built with STAT4) marks a statement whose plan could
/// depend on a bound value, such as `LIMIT ?`, and parses and plans it
/// again whenever that value changes: the directory listing was re-prepared
/// at every readdir, 7% of the daemon's time under `ls -lR`.
fn keep_query_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// fdatasync of a file by path; false if it is missing (nothing to flush).
pub fn fsync_path(path: &Path) -> Result<bool> {
    match FileFlush::start(path)? {
        Some(flush) => flush.finish().map(|()| true),
        None => Ok(false),
    }
}

/// An fdatasync in two steps: `start` hands the file's dirty pages to the
/// device without waiting, so that they travel while the caller waits for
/// other writes; `finish` waits for them and flushes the device's cache.
pub struct FileFlush {
    file: File,
    path: PathBuf,
}

impl FileFlush {
    /// None if the file is missing (nothing to flush).
    pub fn start(path: &Path) -> Result<Option<Self>> {
        let io_error = |source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a descriptor we own; 0 bytes means "to the end".
        if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) }
            != 0
        {
            return Err(io_error(std::io::Error::last_os_error()));
        }
        Ok(Some(Self {
            file,
            path: path.to_path_buf(),
        }))
    }

    pub fn finish(self) -> Result<()> {
        self.file.sync_data().map_err(|source| CatalogError::Io {
            path: self.path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_inode(target: Vec<u8>) -> NewInode {
        NewInode {
            kind: Kind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            nlink: 1,
            size: target.len() as u64,
            rdev: 0,
            time: 0,
            target: Some(target),
        }
    }

    #[test]
    fn a_read_group_takes_writes_and_ends_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open(&path, true).unwrap();
        let reader = Catalog::open_readonly(&path).unwrap();

        cat.begin_read().unwrap();
        assert!(cat.inode(ROOT_INO + 1000).unwrap().is_none());
        // A write inside the read group upgrades it; nothing is visible
        // to another connection before the commit, everything after.
        let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
        assert!(reader.inode(ino).unwrap().is_none());
        cat.commit().unwrap();
        assert!(reader.inode(ino).unwrap().is_some());
        assert!(cat.conn.is_autocommit(), "the commit ended the group");

        // A read group that saw no write ends as old groups do.
        cat.begin_read().unwrap();
        std::thread::sleep(GROUP_MAX_AGE);
        cat.commit_if_old().unwrap();
        assert!(cat.conn.is_autocommit(), "the flusher's check ended it");
    }

    /// Without a savepoint, a failed statement must still leave the group
    /// open with the changes made before it, and nothing of its own.
    #[test]
    fn a_one_row_operation_that_fails_keeps_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open(&path, true).unwrap();
        let reader = Catalog::open_readonly(&path).unwrap();
        let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
        let hash: NameHash = [5; crate::crypto::names::LOOKUP_LEN];
        let entry = NewEntry {
            parent: ROOT_INO,
            hash: &hash,
            sealed_name: b"sealed",
            ino,
            kind: Kind::Symlink,
            time: 1,
        };
        cat.tx_one_row(|c| c.insert_entry(&entry)).unwrap();
        let dup = cat.tx_one_row(|c| c.insert_entry(&entry));
        assert!(dup.is_err(), "the same live name twice");
        assert!(!cat.conn.is_autocommit(), "the group is still open");

        cat.commit().unwrap();
        assert!(reader.inode(ino).unwrap().is_some());
        assert_eq!(
            reader.lookup(ROOT_INO, &hash).unwrap().map(|e| e.0),
            Some(ino)
        );
        let live: i64 = reader
            .conn
            .query_row("SELECT count(*) FROM dentries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(live, 1, "the failed insert left no row");
    }

    /// A new file's first extent skips the lookups for one to replace; the
    /// counts kept must stay what SQLite counts, through every path.
    #[test]
    fn block_counts_kept_match_the_extents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open(&path, true).unwrap();
        let reader = Catalog::open_readonly(&path).unwrap();
        let loc = BlockLocation {
            pack: crate::store::PackId(1),
            offset: 0,
            len: 10,
        };
        let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
        let steps: [(u64, u8, u64); 5] = [(0, 1, 1), (0, 2, 1), (1, 3, 1), (0, 4, 2), (2, 5, 2)];
        for (idx, content, version) in steps {
            cat.tx(|c| {
                let block = c.insert_block(&[content; 32], &loc, 10)?;
                c.put_extent(ino, idx, block, version)
            })
            .unwrap();
            cat.commit().unwrap();
            assert_eq!(
                cat.allocated_blocks(ino).unwrap(),
                reader.allocated_blocks(ino).unwrap(),
                "after block {content} at {idx}"
            );
        }
        assert_eq!(reader.allocated_blocks(ino).unwrap(), 3);

        // Emptied (a truncate to 0), counted again as 0, then written.
        cat.tx(|c| c.drop_extents(ino, 0, u64::MAX, 3)).unwrap();
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 0);
        let undone: Result<()> = cat.tx(|c| {
            let block = c.insert_block(&[6; 32], &loc, 10)?;
            c.put_extent(ino, 4, block, 3)?;
            assert_eq!(c.allocated_blocks(ino)?, 1);
            Err(CatalogError::Integrity("this operation fails".into()))
        });
        assert!(undone.is_err());
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 0, "the undone extent");
        cat.tx(|c| {
            let block = c.insert_block(&[7; 32], &loc, 10)?;
            c.put_extent(ino, 1, block, 3)
        })
        .unwrap();
        cat.commit().unwrap();
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 1);
        assert_eq!(reader.allocated_blocks(ino).unwrap(), 1);
        let versions: i64 = reader
            .conn
            .query_row(
                "SELECT count(*) FROM extents WHERE ino=?1",
                [ino as i64],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(versions, 5, "block 0 of version 1 is kept as history");
    }

    /// A new inode is known to have no extended attributes until one is
    /// set, and an undone set leaves it without again.
    #[test]
    fn a_new_inode_has_no_xattrs_until_one_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open(&path, true).unwrap();
        let reader = Catalog::open_readonly(&path).unwrap();
        let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
        let (a, b): (NameHash, NameHash) = ([1; 16], [2; 16]);
        assert_eq!(cat.xattr_get(ino, &a).unwrap(), None);
        assert!(cat.xattr_names(ino).unwrap().is_empty());

        let undone: Result<()> = cat.tx(|c| {
            c.xattr_set(ino, &a, b"name a", b"undone")?;
            assert_eq!(c.xattr_get(ino, &a)?.as_deref(), Some(&b"undone"[..]));
            Err(CatalogError::Integrity("this operation fails".into()))
        });
        assert!(undone.is_err());
        assert_eq!(cat.xattr_get(ino, &a).unwrap(), None);

        cat.tx(|c| c.xattr_set(ino, &b, b"name b", b"kept"))
            .unwrap();
        assert_eq!(
            cat.xattr_get(ino, &b).unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        assert_eq!(cat.xattr_names(ino).unwrap(), vec![b"name b".to_vec()]);
        cat.commit().unwrap();
        assert_eq!(
            reader.xattr_get(ino, &b).unwrap().as_deref(),
            Some(&b"kept"[..])
        );
    }

    #[test]
    fn cached_rows_follow_what_sqlite_keeps_and_undoes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open(&path, true).unwrap();
        let ino = cat.tx(|c| c.insert_inode(&new_inode(vec![1; 10]))).unwrap();
        cat.commit().unwrap();
        let before = cat.inode(ino).unwrap().expect("inserted");
        let fail = |c: &Catalog, mode: u32| -> Result<()> {
            let mut i = c.inode(ino)?.expect("inserted");
            i.mode = mode;
            c.update_inode(&i)?;
            assert_eq!(
                c.inode(ino)?.unwrap().mode,
                mode,
                "a write is read back at once"
            );
            Err(CatalogError::Integrity("this operation fails".into()))
        };

        // A failed operation's savepoint is undone, and so is the row it wrote.
        assert!(cat.tx(|c| fail(c, 0o700)).is_err());
        assert_eq!(cat.inode(ino).unwrap().unwrap(), before);

        // Live blocks: counted again once an extent changes, and the count
        // of an undone extent is forgotten too.
        let loc = BlockLocation {
            pack: crate::store::PackId(1),
            offset: 0,
            len: 10,
        };
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 0);
        cat.tx(|c| {
            let block = c.insert_block(&[1; 32], &loc, 10)?;
            c.put_extent(ino, 0, block, 1)
        })
        .unwrap();
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 1);
        let failed: Result<()> = cat.tx(|c| {
            let block = c.insert_block(&[2; 32], &loc, 10)?;
            c.put_extent(ino, 1, block, 1)?;
            assert_eq!(c.allocated_blocks(ino)?, 2);
            Err(CatalogError::Integrity("this operation fails".into()))
        });
        assert!(failed.is_err());
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 1);
        cat.commit().unwrap();

        // A read-only catalog keeps no rows: it sees every later commit.
        let reader = Catalog::open_readonly(&path).unwrap();
        assert_eq!(reader.inode(ino).unwrap().unwrap().mode, before.mode);
        cat.tx(|c| {
            let mut i = c.inode(ino)?.unwrap();
            i.mode = 0o640;
            c.update_inode(&i)
        })
        .unwrap();
        cat.commit().unwrap();
        assert_eq!(reader.inode(ino).unwrap().unwrap().mode, 0o640);
    }

    #[test]
    fn a_block_indexed_twice_keeps_its_first_row() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("catalog.db"), true).unwrap();
        let at = |offset| BlockLocation {
            pack: crate::store::PackId(1),
            offset,
            len: 10,
        };
        let first = cat.insert_block(&[1; 32], &at(0), 10).unwrap();
        let other = cat.insert_block(&[2; 32], &at(10), 10).unwrap();
        assert_ne!(first, other);
        assert_eq!(cat.insert_block(&[1; 32], &at(20), 10).unwrap(), first);
        assert_eq!(cat.block_by_hash(&[1; 32]).unwrap(), Some(first));
        let offset: i64 = cat
            .conn
            .query_row("SELECT offset FROM blocks WHERE id=?1", [first], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(offset, 0, "the first location stays");
    }

    #[test]
    fn background_copies_let_the_writer_rewind_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open(&path, true).unwrap();
        let commit_rows = |n: usize| {
            for _ in 0..n {
                cat.tx(|c| c.insert_inode(&new_inode(vec![7; 100])))
                    .unwrap();
                cat.commit().unwrap();
            }
        };
        commit_rows(200);
        let background = Checkpointer::open(&path).unwrap();
        let (frames, copied) = background.copy_back().unwrap();
        assert!(frames > 200, "one frame or more per commit, got {frames}");
        assert_eq!(
            copied, frames,
            "a passive copy with the writer idle copies all"
        );

        // All copied: the writer's next transaction starts the WAL over.
        commit_rows(1);
        let (after, _) = background.copy_back().unwrap();
        assert!(
            after < 20,
            "the WAL was not rewound: {after} frames after {frames}"
        );
    }

    #[test]
    fn new_catalogs_use_small_pages_and_keep_the_wal_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open(&path, true).unwrap();
        let page_size: u32 = cat
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(page_size, NEW_CATALOG_PAGE_SIZE);

        // Twice the checkpoint size through the WAL, one commit at a time:
        // the file stays within the checkpoint size, a commit and the zeros
        // kept ahead of the frames.
        let row = vec![0x5a; 64 << 10];
        let commits = 2 * WAL_CHECKPOINT_BYTES as usize / row.len();
        for _ in 0..commits {
            cat.tx(|c| c.insert_inode(&new_inode(row.clone()))).unwrap();
            cat.commit().unwrap();
        }
        let wal = std::fs::metadata(&cat.wal_path).unwrap().len();
        assert!(
            wal <= WAL_CHECKPOINT_BYTES as u64 + (6 << 20),
            "the WAL grew to {wal} bytes after {commits} commits of 64 KiB"
        );
    }
}
