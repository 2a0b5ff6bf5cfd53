//! The catalog: one SQLite database (WAL mode) holding the tree, temporal
//! directory entries, per-version extents, the block index and packs.
//!
//! Stores names only as ciphertext plus a keyed lookup hash; never sees a key.
//! Every public method is one statement or runs inside the caller's `tx`.
//!
//! This file opens the connection and groups transactions (`tx`, the group
//! commit, lost groups); each submodule holds one kind of row: `inodes`,
//! `entries` (temporal directory entries), `content` (extents and the block
//! index), `versions`, `packs`, `xattrs`, `allocations` (fallocate) and
//! `generations` (file handles), plus `stats` for `info`.

mod allocations;
mod block_scan;
mod checkpointer;
mod content;
mod entries;
mod flush;
pub mod gc;
mod generations;
mod history;
mod image;
mod inodes;
mod lost;
mod packs;
pub mod page_cache;
mod past;
mod row_cache;
mod schema;
mod scope;
mod scratch;
mod stats;
mod types;
mod versions;
pub mod wal_writes;
mod xattrs;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{AppendOutcome, BlockLocation};

pub use allocations::BlockRun;
pub use block_scan::BlockUse;
pub use checkpointer::Checkpointer;
pub use flush::{fsync_path, FileFlush};
pub use generations::Generations;
pub use history::PastAttrs;
pub use image::{CatalogImage, CatalogSnapshot};
pub use lost::LossCause;
pub use past::{EntrySpan, PastDirRow};
pub use schema::VERSION as SCHEMA_VERSION;
pub use scope::NodeInterval;
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
    /// False for `open_to_maintain`: no generation was started, so no
    /// inode number may be handed out.
    creates_inodes: bool,
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
    /// Inodes and extended attributes whose current state was written in
    /// the open group (see `history`).
    fresh: RefCell<history::Fresh>,
    /// The upgraded copy a read-only catalog of an older schema reads;
    /// declared after the connection, so deleted once that is closed.
    scratch: Option<scratch::ScratchCopy>,
    /// Whether a file may hold allocated blocks (see `allocations`).
    allocating: Cell<bool>,
}

impl Catalog {
    /// Opens (or with `create`, creates) the catalog at `path`.
    pub fn open(path: &Path, create: bool) -> Result<Self> {
        Self::open_with(path, create, true)
    }

    /// A read-write open that will not create inodes (a replication pass,
    /// a verification): it starts no inode generation, so that opening the
    /// store to read it changes nothing a replica would have to ship.
    pub fn open_to_maintain(path: &Path) -> Result<Self> {
        Self::open_with(path, false, false)
    }

    fn open_with(path: &Path, create: bool, creates_inodes: bool) -> Result<Self> {
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
            schema::create(&cat.conn)?;
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
        cat.creates_inodes = creates_inodes;
        if !create && creates_inodes {
            cat.generations = generations::Generations::start(&cat.conn, max_ino as Ino + 1)?;
            cat.sync_wal()?;
        }
        Ok(cat)
    }

    /// Read-only access for `info` and the like, safe beside a running daemon.
    pub fn open_readonly(path: &Path) -> Result<Self> {
        let conn = connect(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.execute_batch("PRAGMA busy_timeout=10000;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let (conn, scratch) = match version {
            v if v == schema::VERSION => (conn, None),
            v if v > schema::VERSION => return Err(CatalogError::Schema(v)),
            // Not upgraded yet, and a reader must not write: it reads an
            // upgraded copy (see `scratch`).
            v => {
                let (copy, scratch) = scratch::ScratchCopy::upgraded(&conn, v)?;
                (copy, Some(scratch))
            }
        };
        let mut cat = Self::with_connection(conn, PathBuf::new());
        cat.scratch = scratch;
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
            creates_inodes: true,
            group_first_ino: Default::default(),
            group_first_change: Default::default(),
            lost: Default::default(),
            wal_path,
            synced: Default::default(),
            rows: Default::default(),
            generations: Default::default(),
            fresh: Default::default(),
            scratch: None,
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
                self.fresh.borrow_mut().clear();
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

#[cfg(test)]
mod tests;
