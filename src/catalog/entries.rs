//! Directory entries: names in time, looked up by keyed hash, listed in a
//! stable order. Names are stored sealed; this module never sees a plaintext.

use rusqlite::{params, OptionalExtension};

use super::*;

impl Catalog {
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
        let rows = st.query_map(
            params![dir as i64, after, until, limit as i64],
            DirRow::from_row,
        )?;
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
}
