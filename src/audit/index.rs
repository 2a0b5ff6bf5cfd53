//! index.db: the columns queries filter on, and where each frame lies.
//! Derived from the segments: deleted, it is rebuilt. Holds no path or
//! name, only numbers (uids, inodes, ops, results) and the synced head.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::frame::{self, SEGMENT_HEADER};
use super::trail::{self, Trail};
use super::{AuditError, ChainHead, IoAt, Query, Record};
use crate::crypto::AuditKeys;

const SCHEMA: i64 = 2;

/// Records indexed per transaction.
const BATCH: usize = 20_000;

pub struct Index {
    conn: Connection,
    writable: bool,
}

/// Where a record's frame lies.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
}

impl Index {
    /// Opens index.db, creating it when `writable`.
    pub fn open(trail: &Trail, writable: bool) -> Result<Index, AuditError> {
        let path = trail.index_path();
        let conn = if writable {
            if !path.exists() {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(&path)
                    .at(&path)?;
            }
            let c = Connection::open(&path)?;
            c.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=2000;
                 PRAGMA temp_store=MEMORY; PRAGMA cache_size=-131072;",
            )?;
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version != SCHEMA {
                // Derived data: an index of another layout is rebuilt.
                c.execute_batch(&format!(
                    "BEGIN IMMEDIATE;
                     DROP TABLE IF EXISTS rec; DROP TABLE IF EXISTS meta;
                     CREATE TABLE rec(
                         seq INTEGER PRIMARY KEY, time INTEGER NOT NULL,
                         -- luid: the login uid where it is not uid (the
                         -- only case a uid filter needs it for).
                         uid INTEGER NOT NULL, luid INTEGER, op INTEGER NOT NULL,
                         result INTEGER NOT NULL, ino INTEGER NOT NULL, parent INTEGER NOT NULL,
                         seg INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL);
                     CREATE INDEX rec_time ON rec(time);
                     CREATE INDEX rec_uid ON rec(uid, time);
                     CREATE INDEX rec_luid ON rec(luid, time) WHERE luid IS NOT NULL;
                     CREATE INDEX rec_ino ON rec(ino, time);
                     CREATE INDEX rec_parent ON rec(parent, time) WHERE parent <> 0;
                     CREATE TABLE meta(k TEXT PRIMARY KEY, v BLOB NOT NULL);
                     PRAGMA user_version = {SCHEMA};
                     COMMIT;"
                ))?;
            }
            c
        } else {
            let c = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.execute_batch("PRAGMA busy_timeout=2000; PRAGMA temp_store=MEMORY;")?;
            // Fails here, not at the first query, if it is not an index.
            c.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))?;
            c
        };
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Index { conn, writable })
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The last record indexed.
    fn last(&self) -> Result<Option<Place>, AuditError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, seg, off, len FROM rec ORDER BY seq DESC LIMIT 1",
                [],
                place,
            )
            .optional()?)
    }

    /// Forgets records after `seq` (lost with a crash: the index may have
    /// reached the disk before the segment did).
    pub fn forget_after(&self, seq: u64) -> Result<(), AuditError> {
        self.conn
            .execute("DELETE FROM rec WHERE seq > ?1", [seq as i64])?;
        Ok(())
    }

    /// Forgets records before `seq` (pruned).
    pub fn forget_before(&self, seq: u64) -> Result<(), AuditError> {
        self.conn
            .execute("DELETE FROM rec WHERE seq < ?1", [seq as i64])?;
        Ok(())
    }

    /// Brings the index up to the end of the segments. With `write` false
    /// nothing is stored and the records missing from the index are
    /// returned instead. A frame that does not authenticate is left out
    /// (`verify` names it). Stops early, between batches, if `stop` says so.
    pub fn catch_up(
        &mut self,
        trail: &Trail,
        keys: &AuditKeys,
        write: bool,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<Record>, AuditError> {
        let last = self.last()?;
        let mut pending = Vec::new();
        let mut tail = Vec::new();
        for_each_new_record(trail, keys, last, |place, rec| {
            if write {
                pending.push((place, rec));
                if pending.len() >= BATCH {
                    self.insert(&std::mem::take(&mut pending))?;
                    return Ok(!stop());
                }
            } else {
                tail.push(rec);
            }
            Ok(true)
        })?;
        self.insert(&pending)?;
        Ok(tail)
    }

    fn insert(&mut self, rows: &[(Place, Record)]) -> Result<(), AuditError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO rec(seq, time, uid, luid, op, result, ino, parent, seg, off, len)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (p, r) in rows {
                st.execute(params![
                    p.seq as i64,
                    r.time_ns,
                    r.who.uid,
                    r.who.login_uid.filter(|&l| l != r.who.uid),
                    r.op.code(),
                    r.result,
                    r.ino as i64,
                    r.parent as i64,
                    p.segment as i64,
                    p.offset as i64,
                    p.len as i64,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Keeps `head` (authenticated) if it is newer than the one kept.
    pub fn store_head(&self, keys: &AuditKeys, head: &ChainHead) -> Result<(), AuditError> {
        if head.seq == 0 || self.head(keys)?.is_some_and(|h| h.seq >= head.seq) {
            return Ok(());
        }
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(k, v) VALUES ('head', ?1)",
            [trail::head_bytes(keys, head)],
        )?;
        Ok(())
    }

    /// The head kept here; None if none or if it does not authenticate.
    pub fn head(&self, keys: &AuditKeys) -> Result<Option<ChainHead>, AuditError> {
        let v: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT v FROM meta WHERE k = 'head'", [], |r| r.get(0))
            .optional()?;
        Ok(v.and_then(|v| trail::parse_head(keys, &v)))
    }

    /// The places of the records matching `q`'s indexed filters, in seq
    /// order, until `each` returns false. `q.path_prefix` is not applied
    /// here, nor `q.limit` when it is set.
    pub fn places(
        &self,
        q: &Query,
        each: &mut dyn FnMut(Place) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        let mut sql = String::from("SELECT seq, seg, off, len FROM rec WHERE 1");
        let mut args: Vec<i64> = Vec::new();
        if let Some(s) = q.since {
            sql.push_str(" AND time >= ?");
            args.push(s);
        }
        if let Some(u) = q.until {
            sql.push_str(" AND time <= ?");
            args.push(u);
        }
        if !q.uids.is_empty() {
            let list = join(q.uids.iter());
            sql.push_str(&format!(" AND (uid IN ({list}) OR luid IN ({list}))"));
        }
        if !q.ops.is_empty() {
            sql.push_str(&format!(
                " AND op IN ({})",
                join(q.ops.iter().map(|o| o.code()))
            ));
        }
        if q.denied_only {
            sql.push_str(&format!(
                " AND result IN ({}, {})",
                libc::EACCES,
                libc::EPERM
            ));
        }
        if let Some(spans) = &q.nodes {
            self.conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS spans(ino INTEGER, f INTEGER, u INTEGER);
                 DELETE FROM temp.spans;",
            )?;
            let mut ins = self
                .conn
                .prepare_cached("INSERT INTO temp.spans VALUES (?1, ?2, ?3)")?;
            for s in spans {
                ins.execute(params![s.ino as i64, s.from_ns, s.until_ns])?;
            }
            sql.push_str(
                " AND seq IN (SELECT r.seq FROM temp.spans s JOIN rec r
                      ON r.ino = s.ino AND r.time BETWEEN s.f AND s.u
                  UNION SELECT r.seq FROM temp.spans s JOIN rec r
                      ON r.parent = s.ino AND r.parent <> 0 AND r.time BETWEEN s.f AND s.u)",
            );
        }
        sql.push_str(if q.newest_first {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq"
        });
        if let (Some(n), None) = (q.limit, &q.path_prefix) {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        while let Some(row) = rows.next()? {
            if !each(place(row)?)? {
                break;
            }
        }
        Ok(())
    }
}

fn join<T: ToString>(it: impl Iterator<Item = T>) -> String {
    it.map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

fn place(r: &rusqlite::Row) -> rusqlite::Result<Place> {
    Ok(Place {
        seq: r.get::<_, i64>(0)? as u64,
        segment: r.get::<_, i64>(1)? as u64,
        offset: r.get::<_, i64>(2)? as u64,
        len: r.get::<_, i64>(3)? as u64,
    })
}

/// Every authentic record after `after` (all of them if None), in segment
/// order, with where it lies, until `each` returns false.
pub fn for_each_new_record(
    trail: &Trail,
    keys: &AuditKeys,
    after: Option<Place>,
    mut each: impl FnMut(Place, Record) -> Result<bool, AuditError>,
) -> Result<(), AuditError> {
    let segments = trail.segments()?;
    let (after_seq, from_segment, from_offset) = match after {
        Some(p) => (p.seq, p.segment, p.offset + p.len),
        None => (0, 0, SEGMENT_HEADER),
    };
    for &first in segments.iter().filter(|&&s| s >= from_segment) {
        let start = if first == from_segment {
            from_offset
        } else {
            SEGMENT_HEADER
        };
        let path = trail.segment_path(first);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(start)).at(&path)?;
                f.read_to_end(&mut bytes).at(&path)?;
            }
            // Pruned meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at(&path),
        }
        for (at, f) in frame::frames(&bytes) {
            if f.seq <= after_seq {
                continue;
            }
            let Some(rec) = f.open(keys) else { continue };
            let place = Place {
                seq: f.seq,
                segment: first,
                offset: start + at as u64,
                len: f.size as u64,
            };
            if !each(place, rec)? {
                return Ok(());
            }
        }
    }
    Ok(())
}
