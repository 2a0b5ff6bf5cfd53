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

/// 3: indexes that answer each filter from the index alone (the place of
/// a record is looked up only for those returned), `rec_denied`, and
/// secondary indexes built after the rows when the index starts empty.
const SCHEMA: i64 = 3;

/// Records indexed per transaction (26 MB of rows): each commit writes
/// every page it touched, and the pages of `rec_ino` are touched at
/// random, so fewer, larger commits write far less (a burst of a million
/// onto an index of 13-15 million: 68,000 records/s in batches of
/// 100,000, 99,000/s in batches of 400,000).
const BATCH: usize = 400_000;

/// How often (in records) a catch-up asks whether to stop.
const STOP_EVERY: usize = 4096;

/// SQLite's page cache, and its size while catching up (KiB).
const CACHE_KIB: u32 = 128 << 10;
const CATCH_UP_CACHE_KIB: u32 = 512 << 10;

/// Refused: what `--denied` selects, written the same in the queries and
/// in `rec_denied` (SQLite matches them by their text).
const DENIED: &str = "result IN (13, 1)";

/// The secondary indexes. Each query is driven by one of them (or by seq)
/// and finds the seqs it returns without reading the table:
/// `rec_uid`/`rec_luid` carry the columns the other filters test.
const SECONDARY: [(&str, &str); 7] = [
    ("rec_time", "rec(time)"),
    ("rec_uid", "rec(uid, time, op, result)"),
    (
        "rec_luid",
        "rec(luid, time, op, result) WHERE luid IS NOT NULL",
    ),
    ("rec_ino", "rec(ino, time)"),
    ("rec_parent", "rec(parent, time) WHERE parent <> 0"),
    // result too: SQLite does not take it from the WHERE. By time for a
    // span, by seq for the newest N; both hold only refusals.
    (
        "rec_denied",
        "rec(time, uid, luid, op, result) WHERE result IN (13, 1)",
    ),
    (
        "rec_denied_seq",
        "rec(seq, time, uid, luid, op, result) WHERE result IN (13, 1)",
    ),
];

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

const _: () = assert!(libc::EACCES == 13 && libc::EPERM == 1);

/// What the index keeps of one record.
struct Row {
    place: Place,
    time: i64,
    uid: u32,
    /// The login uid where it is not uid (the only case a uid filter
    /// needs it for).
    luid: Option<u32>,
    op: u8,
    result: i32,
    ino: u64,
    parent: u64,
}

impl Row {
    fn of(place: Place, r: &Record) -> Row {
        Row {
            place,
            time: r.time_ns,
            uid: r.who.uid,
            luid: r.who.login_uid.filter(|&l| l != r.who.uid),
            op: r.op.code(),
            result: r.result,
            ino: r.ino,
            parent: r.parent,
        }
    }
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
            // A checkpoint every 64 MB of WAL rather than 4: pages that
            // several commits touch are copied into the database once.
            c.execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=2000;
                 PRAGMA temp_store=MEMORY; PRAGMA cache_size=-{CACHE_KIB};
                 PRAGMA wal_autocheckpoint=16384; PRAGMA journal_size_limit=67108864;"
            ))?;
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version != SCHEMA {
                // Derived data: an index of another layout is rebuilt
                // (dropping the table drops its indexes).
                c.execute_batch(&format!(
                    "BEGIN IMMEDIATE;
                     DROP TABLE IF EXISTS rec; DROP TABLE IF EXISTS meta;
                     CREATE TABLE rec(
                         seq INTEGER PRIMARY KEY, time INTEGER NOT NULL,
                         uid INTEGER NOT NULL, luid INTEGER, op INTEGER NOT NULL,
                         result INTEGER NOT NULL, ino INTEGER NOT NULL, parent INTEGER NOT NULL,
                         seg INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL);
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
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version != SCHEMA {
                // Not ours to rebuild: the reader reads the segments instead.
                return Err(AuditError::Damaged(format!(
                    "{}: index of layout {version}, not {SCHEMA}",
                    path.display()
                )));
            }
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
    /// (`verify` names it). Stops early, within `STOP_EVERY` records, if
    /// `stop` says so.
    pub fn catch_up(
        &mut self,
        trail: &Trail,
        keys: &AuditKeys,
        write: bool,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<Record>, AuditError> {
        let last = self.last()?;
        if !write {
            let mut tail = Vec::new();
            for_each_new_record(trail, keys, last, |_, rec| {
                tail.push(rec);
                Ok(true)
            })?;
            return Ok(tail);
        }
        // Empty (new, or rebuilt): the secondary indexes are built after
        // the rows, by sorting, many times faster than row by row.
        let from_nothing = last.is_none();
        self.set_secondary(!from_nothing)?;
        // A batch touches pages of rec_ino at random: room for them all
        // while catching up, so that none is written or read twice.
        self.conn
            .execute_batch(&format!("PRAGMA cache_size=-{CATCH_UP_CACHE_KIB}"))?;
        let result = self.insert_new(trail, keys, last, stop);
        self.conn
            .execute_batch(&format!("PRAGMA cache_size=-{CACHE_KIB}"))?;
        let stopped = result?;
        if from_nothing && !stopped {
            self.set_secondary(true)?;
        }
        Ok(Vec::new())
    }

    /// Indexes the records after `last`; returns whether `stop` stopped it.
    fn insert_new(
        &mut self,
        trail: &Trail,
        keys: &AuditKeys,
        last: Option<Place>,
        stop: &dyn Fn() -> bool,
    ) -> Result<bool, AuditError> {
        let mut pending = Vec::with_capacity(BATCH.min(STOP_EVERY));
        let mut stopped = false;
        for_each_new_record(trail, keys, last, |place, rec| {
            pending.push(Row::of(place, &rec));
            // A batch takes seconds at idle priority: a closing writer
            // does not wait for it (what was not committed is redone).
            if pending.len() % STOP_EVERY == 0 && stop() {
                stopped = true;
                return Ok(false);
            }
            if pending.len() >= BATCH {
                stopped = !self.insert(&pending, stop)?;
                pending.clear();
                return Ok(!stopped);
            }
            Ok(true)
        })?;
        if !stopped {
            stopped = !self.insert(&pending, stop)?;
        }
        Ok(stopped)
    }

    /// Creates the secondary indexes that are missing (`present`), or
    /// drops them.
    fn set_secondary(&self, present: bool) -> Result<(), AuditError> {
        let have: Vec<String> = self
            .conn
            .prepare_cached(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'rec'",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let sql: String = SECONDARY
            .iter()
            .filter(|(name, _)| have.iter().any(|h| h == name) != present)
            .map(|(name, on)| {
                if present {
                    format!("CREATE INDEX IF NOT EXISTS {name} ON {on};")
                } else {
                    format!("DROP INDEX IF EXISTS {name};")
                }
            })
            .collect();
        if !sql.is_empty() {
            self.conn
                .execute_batch(&format!("BEGIN IMMEDIATE; {sql} COMMIT;"))
                .inspect_err(|_| {
                    let _ = self.conn.execute_batch("ROLLBACK");
                })?;
        }
        Ok(())
    }

    /// Stores `rows` in one transaction; false if `stop` said to stop
    /// first (nothing is stored then).
    fn insert(&mut self, rows: &[Row], stop: &dyn Fn() -> bool) -> Result<bool, AuditError> {
        if rows.is_empty() {
            return Ok(true);
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO rec(seq, time, uid, luid, op, result, ino, parent, seg, off, len)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (i, r) in rows.iter().enumerate() {
                if i % STOP_EVERY == STOP_EVERY - 1 && stop() {
                    // Dropped uncommitted: rolled back.
                    return Ok(false);
                }
                let p = &r.place;
                st.execute(params![
                    p.seq as i64,
                    r.time,
                    r.uid,
                    r.luid,
                    r.op,
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
        Ok(true)
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
        }
        let (sql, args) = places_sql(q);
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        while let Some(row) = rows.next()? {
            if !each(place(row)?)? {
                break;
            }
        }
        Ok(())
    }

    /// How SQLite runs the query of `q` (for tests).
    #[cfg(test)]
    pub fn plan(&self, q: &Query) -> Result<Vec<String>, AuditError> {
        if q.nodes.is_some() {
            self.conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS spans(ino INTEGER, f INTEGER, u INTEGER);",
            )?;
        }
        let (sql, args) = places_sql(q);
        let mut st = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The SQL of `q` and its arguments. A query is driven by one index, in
/// this order of preference: the nodes of `--path` (`rec_ino`,
/// `rec_parent`), the users (`rec_uid`, `rec_luid`), refusals
/// (`rec_denied`, `rec_denied_seq`), else seq or time. Where an index drives it, the seqs
/// are chosen first, and the places of only those returned are read from
/// the table: read for every candidate, they cost a random read each on a
/// cold cache.
fn places_sql(q: &Query) -> (String, Vec<i64>) {
    let mut args: Vec<i64> = Vec::new();
    let mut arg = |v: i64| {
        args.push(v);
        format!("?{}", args.len())
    };
    // The filters every driver applies, on columns of `rec` as `r`.
    let mut filters = String::new();
    if let Some(s) = q.since {
        filters.push_str(&format!(" AND r.time >= {}", arg(s)));
    }
    if let Some(u) = q.until {
        filters.push_str(&format!(" AND r.time <= {}", arg(u)));
    }
    if let Some(a) = q.after_seq {
        filters.push_str(&format!(" AND r.seq > {}", arg(a as i64)));
    }
    if !q.ops.is_empty() {
        let ops = join(q.ops.iter().map(|o| o.code()));
        filters.push_str(&format!(" AND r.op IN ({ops})"));
    }
    if q.denied_only {
        filters.push_str(&format!(" AND r.{DENIED}"));
    }
    let users = (!q.uids.is_empty()).then(|| join(q.uids.iter()));
    let order = if q.newest_first { "DESC" } else { "ASC" };
    let limit = match (q.limit, &q.path_prefix) {
        (Some(n), None) => format!(" LIMIT {n}"),
        _ => String::new(),
    };
    let chosen = if q.nodes.is_some() {
        let by_user = users.as_ref().map_or(String::new(), |l| {
            format!(" AND (r.uid IN ({l}) OR r.luid IN ({l}))")
        });
        format!(
            "SELECT r.seq FROM temp.spans s JOIN rec r
                 ON r.ino = s.ino AND r.time BETWEEN s.f AND s.u WHERE 1{filters}{by_user}
             UNION SELECT r.seq FROM temp.spans s JOIN rec r
                 ON r.parent = s.ino AND r.parent <> 0 AND r.time BETWEEN s.f AND s.u
                 WHERE 1{filters}{by_user}"
        )
    } else if let Some(l) = &users {
        format!(
            "SELECT r.seq FROM rec r WHERE r.uid IN ({l}){filters}
             UNION SELECT r.seq FROM rec r
                 WHERE r.luid IN ({l}) AND r.luid IS NOT NULL{filters}"
        )
    } else if q.denied_only && !limit.is_empty() {
        // The newest (or next) N refusals: rec_denied_seq in seq order,
        // stopping after N.
        let sql = format!(
            "SELECT seq, seg, off, len FROM rec WHERE seq IN (
                 SELECT r.seq FROM rec r WHERE 1{filters} ORDER BY r.seq {order}{limit})
             ORDER BY seq {order}"
        );
        return (sql, args);
    } else if q.denied_only {
        format!("SELECT r.seq FROM rec r WHERE 1{filters}")
    } else {
        let sql = format!(
            "SELECT r.seq, r.seg, r.off, r.len FROM rec r WHERE 1{filters}
             ORDER BY r.seq {order}{limit}"
        );
        return (sql, args);
    };
    // MATERIALIZED: planned on its own, the driver is not traded for a
    // scan in seq order that would avoid the sort (and read every row
    // where the matches are rare).
    let sql = format!(
        "WITH chosen(seq) AS MATERIALIZED ({chosen})
         SELECT seq, seg, off, len FROM rec WHERE seq IN (
             SELECT seq FROM chosen ORDER BY seq {order}{limit})
         ORDER BY seq {order}"
    );
    (sql, args)
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
