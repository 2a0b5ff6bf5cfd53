//! The tree as it was at an instant: entries valid then, the version each
//! file had reached, and that version's extents. Read-only; instants are on
//! the history clock (see `history`).

use rusqlite::{params, OptionalExtension};

use super::*;

impl Catalog {
    /// The entry (parent, hash) valid at `at`.
    pub fn lookup_at(&self, parent: Ino, hash: &NameHash, at: i64) -> Result<Option<(Ino, Kind)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT ino, kind FROM dentries INDEXED BY dentries_history
             WHERE parent=?1 AND hash=?2 AND valid_from <= ?3
               AND (valid_until IS NULL OR valid_until > ?3)
             ORDER BY valid_from DESC LIMIT 1",
        )?;
        Ok(st
            .query_row(params![parent as i64, &hash[..], at], |r| {
                Ok((r.get::<_, i64>(0)? as Ino, r.get::<_, Kind>(1)?))
            })
            .optional()?)
    }

    /// Entries of `dir` valid at `at`, at positions after `after`, in
    /// position order (as `list_dir`).
    pub fn list_dir_at(&self, dir: Ino, after: i64, at: i64, limit: usize) -> Result<Vec<DirRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, ino, kind FROM dentries INDEXED BY dentries_by_parent
             WHERE parent=?1 AND id > ?2 AND valid_from <= ?3
               AND (valid_until IS NULL OR valid_until > ?3)
             ORDER BY id LIMIT ?4",
        )?;
        let rows = st.query_map(
            params![dir as i64, after, at, limit as i64],
            DirRow::from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The directory that held directory `dir` at `at`.
    pub fn parent_at(&self, dir: Ino, at: i64) -> Result<Option<Ino>> {
        let mut st = self.conn.prepare_cached(
            "SELECT parent FROM dentries INDEXED BY dentries_by_ino
             WHERE ino=?1 AND valid_from <= ?2 AND (valid_until IS NULL OR valid_until > ?2)
             LIMIT 1",
        )?;
        Ok(st
            .query_row(params![dir as i64, at], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|p| p as Ino))
    }

    /// How many names `ino` had at `at`.
    pub fn links_at(&self, ino: Ino, at: i64) -> Result<u32> {
        let mut st = self.conn.prepare_cached(
            "SELECT count(*) FROM dentries INDEXED BY dentries_by_ino
             WHERE ino=?1 AND valid_from <= ?2 AND (valid_until IS NULL OR valid_until > ?2)",
        )?;
        Ok(st.query_row(params![ino as i64, at], |r| r.get::<_, u32>(0))?)
    }

    /// How many directories `dir` held at `at`.
    pub fn subdirs_at(&self, dir: Ino, at: i64) -> Result<u32> {
        let mut st = self.conn.prepare_cached(
            "SELECT count(*) FROM dentries INDEXED BY dentries_by_parent
             WHERE parent=?1 AND kind=?3 AND valid_from <= ?2
               AND (valid_until IS NULL OR valid_until > ?2)",
        )?;
        Ok(st.query_row(params![dir as i64, at, Kind::Dir as u8], |r| {
            r.get::<_, u32>(0)
        })?)
    }

    /// The newest version of `ino` recorded at or before `at`.
    pub fn version_at(&self, ino: Ino, at: i64) -> Result<Option<VersionRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT version, time, size, reason, uid FROM versions
             WHERE ino=?1 AND time <= ?2 ORDER BY version DESC LIMIT 1",
        )?;
        Ok(st
            .query_row(params![ino as i64, at], |r| {
                Ok(VersionRow {
                    ino,
                    version: r.get::<_, i64>(0)? as u64,
                    time: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    reason: r.get(3)?,
                    uid: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// The extents of version `version` of `ino` with idx in [first, last],
    /// in order: those written in it or before and not replaced until after.
    pub fn version_extents(
        &self,
        ino: Ino,
        version: u64,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, BlockRef)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT e.idx, b.hash, b.pack, b.offset, b.len, b.plain_len
             FROM extents e INDEXED BY extents_history JOIN blocks b ON b.id = e.block
             WHERE e.ino=?1 AND e.idx BETWEEN ?2 AND ?3 AND e.v_from <= ?4
               AND (e.v_until IS NULL OR e.v_until > ?4)
             ORDER BY e.idx",
        )?;
        let rows = st.query_map(
            params![
                ino as i64,
                first as i64,
                last.min(i64::MAX as u64) as i64,
                version as i64
            ],
            |r| Ok((r.get::<_, i64>(0)? as u64, BlockRef::from_offset_row(r, 1)?)),
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// The resolution of [`Catalog::change_marks`]: a quarter of an hour, which
/// every time zone's offset is a multiple of, so that an hour, day, week,
/// month or year of any zone is a run of whole quarters.
pub const CHANGE_MARK_NS: i64 = 15 * 60 * 1_000_000_000;

impl Catalog {
    /// For each quarter of an hour (see [`CHANGE_MARK_NS`]) in which the
    /// tree changed, the instant of its last change: a version recorded, a
    /// name made or removed, attributes or an extended attribute changed;
    /// from `fine_since` on, for each second instead. In no particular order.
    pub fn change_marks(&self, fine_since: i64) -> Result<Vec<i64>> {
        let mut st = self.conn.prepare_cached(
            "SELECT max(t) FROM (
                 SELECT time AS t FROM versions
                 UNION ALL SELECT valid_from FROM dentries
                 UNION ALL SELECT valid_until FROM dentries WHERE valid_until IS NOT NULL
                 UNION ALL SELECT since FROM inodes
                 UNION ALL SELECT since FROM inode_history
                 UNION ALL SELECT since FROM xattrs
                 UNION ALL SELECT until FROM xattr_history
             ) WHERE t > 0
             GROUP BY CASE WHEN t >= ?2 THEN t / 1000000000 ELSE -1 - t / ?1 END",
        )?;
        let rows = st.query_map(params![CHANGE_MARK_NS, fine_since], |r| r.get::<_, i64>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Catalog {
    /// The sealed value extended attribute (`ino`, `hash`) had at `at`.
    pub fn xattr_at(&self, ino: Ino, hash: &NameHash, at: i64) -> Result<Option<Vec<u8>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT value FROM xattrs WHERE ino=?1 AND hash=?2 AND since <= ?3
             UNION ALL
             SELECT value FROM xattr_history
             WHERE ino=?1 AND hash=?2 AND since <= ?3 AND until > ?3
             LIMIT 1",
        )?;
        Ok(st
            .query_row(params![ino as i64, &hash[..], at], |r| r.get(0))
            .optional()?)
    }

    /// How many blocks version `version` of `ino` holds among its first
    /// `blocks` (see `version_extents`).
    pub fn version_block_count(&self, ino: Ino, version: u64, blocks: u64) -> Result<u64> {
        let mut st = self.conn.prepare_cached(
            "SELECT count(*) FROM extents INDEXED BY extents_history
             WHERE ino=?1 AND idx < ?2 AND v_from <= ?3
               AND (v_until IS NULL OR v_until > ?3)",
        )?;
        let n: i64 = st.query_row(
            params![
                ino as i64,
                blocks.min(i64::MAX as u64) as i64,
                version as i64
            ],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

/// One directory entry as it was at an instant, with what `ls -l` shows of
/// its inode then (see `Catalog::list_dir_attrs_at`).
#[derive(Clone, Debug)]
pub struct PastDirRow {
    pub pos: i64,
    pub sealed_name: Vec<u8>,
    pub ino: Ino,
    pub kind: Kind,
    pub rdev: u32,
    /// The inode row's size: a symlink's target length.
    pub inode_size: u64,
    pub btime: i64,
    /// The attributes then; None if the inode had none yet (cannot happen
    /// for an entry valid then, but a damaged catalog is not trusted).
    pub attrs: Option<PastAttrs>,
    /// The size of the file's version then (None: no version yet).
    pub version_size: Option<u64>,
    /// How many names the inode had then.
    pub links: u32,
}

/// One name's tenure: `ino` was at (parent, hash) during [from, until).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntrySpan {
    pub pos: i64,
    pub parent: Ino,
    pub sealed_name: Vec<u8>,
    pub ino: Ino,
    pub kind: Kind,
    pub from: i64,
    /// None while the entry is live.
    pub until: Option<i64>,
    /// Whether another entry of the same inode began when this one ended:
    /// it was renamed (or linked) away rather than removed.
    pub moved: bool,
}

impl Catalog {
    /// Every entry `dir` held at `at`, with its inode's attributes, version
    /// size and link count then, in position order: one query for a whole
    /// directory (`ls -l --at`), where `Past::getattr` per entry would be
    /// several.
    pub fn list_dir_attrs_at(&self, dir: Ino, at: i64) -> Result<Vec<PastDirRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT d.id, d.name, d.ino, d.kind, i.rdev, i.size, i.btime,
                    i.since, i.mode, i.uid, i.gid, i.atime, i.mtime, i.ctime,
                    h.since, h.mode, h.uid, h.gid, h.atime, h.mtime, h.ctime,
                    (SELECT v.size FROM versions v WHERE v.ino = d.ino AND v.time <= ?2
                       ORDER BY v.version DESC LIMIT 1),
                    (SELECT count(*) FROM dentries x INDEXED BY dentries_by_ino
                       WHERE x.ino = d.ino AND x.valid_from <= ?2
                         AND (x.valid_until IS NULL OR x.valid_until > ?2))
             FROM dentries d INDEXED BY dentries_by_parent
             JOIN inodes i ON i.ino = d.ino
             LEFT JOIN inode_history h ON i.since > ?2 AND h.ino = d.ino
               AND h.until = (SELECT min(until) FROM inode_history
                              WHERE ino = d.ino AND until > ?2)
             WHERE d.parent = ?1 AND d.valid_from <= ?2
               AND (d.valid_until IS NULL OR d.valid_until > ?2)
             ORDER BY d.id",
        )?;
        let rows = st.query_map(params![dir as i64, at], |r| {
            let attrs_from = |base: usize| -> rusqlite::Result<Option<PastAttrs>> {
                let since: Option<i64> = r.get(base)?;
                Ok(match since {
                    Some(since) if since <= at => Some(PastAttrs {
                        mode: r.get(base + 1)?,
                        uid: r.get(base + 2)?,
                        gid: r.get(base + 3)?,
                        atime: r.get(base + 4)?,
                        mtime: r.get(base + 5)?,
                        ctime: r.get(base + 6)?,
                    }),
                    _ => None,
                })
            };
            let attrs = match attrs_from(7)? {
                Some(a) => Some(a),
                None => attrs_from(14)?,
            };
            Ok(PastDirRow {
                pos: r.get(0)?,
                sealed_name: r.get(1)?,
                ino: r.get::<_, i64>(2)? as Ino,
                kind: r.get(3)?,
                rdev: r.get(4)?,
                inode_size: r.get::<_, i64>(5)? as u64,
                btime: r.get(6)?,
                attrs,
                version_size: r.get::<_, Option<i64>>(21)?.map(|s| s as u64),
                links: r.get(22)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every entry ever named (parent, hash), oldest first: the inodes that
    /// held that name over time.
    pub fn entries_named(&self, parent: Ino, hash: &NameHash) -> Result<Vec<EntrySpan>> {
        let mut st = self.conn.prepare_cached(
            "SELECT d.id, d.name, d.ino, d.kind, d.valid_from, d.valid_until,
                    EXISTS(SELECT 1 FROM dentries e INDEXED BY dentries_by_ino
                           WHERE e.ino = d.ino AND e.valid_from = d.valid_until)
             FROM dentries d INDEXED BY dentries_history
             WHERE d.parent=?1 AND d.hash=?2 ORDER BY d.valid_from, d.id",
        )?;
        let rows = st.query_map(params![parent as i64, &hash[..]], |r| span(r, parent))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every entry `dir` ever held, live or ended, in position order.
    pub fn entries_ever(&self, dir: Ino) -> Result<Vec<EntrySpan>> {
        let mut st = self.conn.prepare_cached(
            "SELECT d.id, d.name, d.ino, d.kind, d.valid_from, d.valid_until,
                    EXISTS(SELECT 1 FROM dentries e INDEXED BY dentries_by_ino
                           WHERE e.ino = d.ino AND e.valid_from = d.valid_until)
             FROM dentries d INDEXED BY dentries_by_parent
             WHERE d.parent=?1 ORDER BY d.id",
        )?;
        let rows = st.query_map(params![dir as i64], |r| span(r, dir))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every entry that `ino` ever had, oldest first.
    pub fn entries_of_ino(&self, ino: Ino) -> Result<Vec<EntrySpan>> {
        let mut st = self.conn.prepare_cached(
            "SELECT d.id, d.name, d.ino, d.kind, d.valid_from, d.valid_until, 0, d.parent
             FROM dentries d INDEXED BY dentries_by_ino
             WHERE d.ino=?1 ORDER BY d.valid_from, d.id",
        )?;
        let rows = st.query_map(params![ino as i64], |r| {
            let parent = r.get::<_, i64>(7)? as Ino;
            span(r, parent)
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn span(r: &rusqlite::Row<'_>, parent: Ino) -> rusqlite::Result<EntrySpan> {
    Ok(EntrySpan {
        pos: r.get(0)?,
        parent,
        sealed_name: r.get(1)?,
        ino: r.get::<_, i64>(2)? as Ino,
        kind: r.get(3)?,
        from: r.get(4)?,
        until: r.get(5)?,
        moved: r.get(6)?,
    })
}
