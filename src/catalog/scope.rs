//! Where a path's subtree was over time, for `phivault audit --path`: every
//! node that was below a directory, with the intervals it was there.
//! Read-only; instants are on the history clock (see `history`). Knows
//! nothing of the audit trail: it answers in inode intervals.

use rusqlite::params;

use super::*;

/// An interval of the history clock, `from` inclusive, `until` exclusive
/// (`i64::MAX`: still there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeInterval {
    pub ino: Ino,
    pub kind: Kind,
    pub from: i64,
    pub until: i64,
}

/// Deeper than any real tree; stops the walk on a damaged catalog whose
/// entries form a cycle within one interval.
const MAX_DEPTH: i64 = 4096;

impl Catalog {
    /// Every entry that was below `dir` while `dir` held over [from, until),
    /// at any depth, each with the part of its own interval that lies within
    /// its parent's: a file renamed out of the subtree ends there, one renamed
    /// in starts there, a directory's entries inherit its interval. A node
    /// may come back several times (renamed away and back, hard links).
    pub fn subtree_intervals(&self, dir: Ino, from: i64, until: i64) -> Result<Vec<NodeInterval>> {
        let mut st = self.conn.prepare_cached(
            "WITH RECURSIVE below(ino, kind, f, u, depth) AS (
                 SELECT d.ino, d.kind, max(d.valid_from, ?2),
                        min(coalesce(d.valid_until, ?5), ?3), 1
                 FROM dentries d INDEXED BY dentries_by_parent
                 WHERE d.parent = ?1
                   AND max(d.valid_from, ?2) < min(coalesce(d.valid_until, ?5), ?3)
                 UNION ALL
                 SELECT d.ino, d.kind, max(d.valid_from, b.f),
                        min(coalesce(d.valid_until, ?5), b.u), b.depth + 1
                 FROM below b JOIN dentries d INDEXED BY dentries_by_parent
                      ON d.parent = b.ino
                 WHERE b.kind = ?4 AND b.depth < ?6
                   AND max(d.valid_from, b.f) < min(coalesce(d.valid_until, ?5), b.u)
             )
             SELECT ino, kind, f, u FROM below",
        )?;
        let rows = st.query_map(
            params![
                dir as i64,
                from,
                until,
                Kind::Dir as u8,
                i64::MAX,
                MAX_DEPTH
            ],
            |r| {
                Ok(NodeInterval {
                    ino: r.get::<_, i64>(0)? as Ino,
                    kind: r.get(1)?,
                    from: r.get(2)?,
                    until: r.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
