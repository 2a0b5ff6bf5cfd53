//! File content: which stored block each block of a file holds, per version,
//! and the index of stored blocks; and its fall-back after a power loss.

use rusqlite::{params, OptionalExtension};

use super::*;

impl Catalog {
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
}
