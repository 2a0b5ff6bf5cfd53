//! What pruning reads and removes: a file's extent rows, blocks no extent
//! uses, packs to compact and packs to delete, and the `removals` journal
//! that lets a replica follow.
//!
//! Decides nothing about retention (that is `vault::retention`) and never
//! touches a pack file; each method is one step the engine runs inside its
//! own `tx`, under the catalog lock that writers hold too.

use rusqlite::{params, OptionalExtension};

use super::*;

/// One extent row, as pruning sees it.
#[derive(Clone, Copy, Debug)]
pub struct ExtentSpan {
    pub rowid: i64,
    pub block: i64,
    pub v_from: u64,
    /// None: the live file's block.
    pub v_until: Option<u64>,
}

/// A stored block pruning freed or moves.
#[derive(Clone, Debug)]
pub struct BlockRow {
    pub id: i64,
    pub hash: Vec<u8>,
    pub location: BlockLocation,
}

/// How much of a sealed pack blocks still use.
#[derive(Clone, Copy, Debug)]
pub struct PackUsage {
    pub pack: i64,
    pub size: u64,
    pub live_bytes: u64,
    pub live_blocks: u64,
}

/// What a `removals` row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Removal {
    /// A block left the index (`hash` says which, `pack` where it was).
    Block = 1,
    /// A pack left the catalog; its file is deleted after the commit.
    Pack = 2,
}

impl Catalog {
    /// Whether the catalog has the tables pruning needs (schema 4): a
    /// read-only open of an older catalog does not.
    pub fn has_prune_tables(&self) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='removals'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Up to `limit` inodes with recorded versions, numbered above `after`.
    pub fn inodes_with_versions(&self, after: Ino, limit: usize) -> Result<Vec<Ino>> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT ino FROM versions WHERE ino > ?1 ORDER BY ino LIMIT ?2",
        )?;
        let rows = st.query_map(params![after as i64, limit as i64], |r| {
            Ok(r.get::<_, i64>(0)? as Ino)
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many versions rows there are (for progress).
    pub fn count_versions(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM versions", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Every extent row of `ino`, live and past.
    pub fn extent_spans(&self, ino: Ino) -> Result<Vec<ExtentSpan>> {
        let mut st = self.conn.prepare_cached(
            "SELECT rowid, block, v_from, v_until FROM extents INDEXED BY extents_history WHERE ino=?1",
        )?;
        let rows = st.query_map([ino as i64], |r| {
            Ok(ExtentSpan {
                rowid: r.get(0)?,
                block: r.get(1)?,
                v_from: r.get::<_, i64>(2)? as u64,
                v_until: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether a live directory entry names `ino`.
    pub fn has_live_entry(&self, ino: Ino) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM dentries INDEXED BY dentries_by_ino WHERE ino=?1 AND valid_until IS NULL LIMIT 1",
        )?;
        Ok(st.query_row([ino as i64], |_| Ok(())).optional()?.is_some())
    }

    pub fn delete_version(&self, ino: Ino, version: u64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM versions WHERE ino=?1 AND version=?2")?
            .execute(params![ino as i64, version as i64])?;
        Ok(())
    }

    /// Deletes extent row `rowid`; with `live`, one the live file used.
    pub fn delete_extent(&self, ino: Ino, rowid: i64, live: bool) -> Result<()> {
        if live {
            self.with_rows(|rows| rows.forget_allocated(ino));
        }
        self.conn
            .prepare_cached("DELETE FROM extents WHERE rowid=?1")?
            .execute([rowid])?;
        Ok(())
    }

    /// Deletes the past of `ino`: the (ended) directory entries that named
    /// it and the past states of its attributes and extended attributes.
    /// For a file whose every version went: no past instant may show a
    /// name, or attributes, for content that is gone.
    pub fn forget_history(&self, ino: Ino) -> Result<()> {
        for sql in [
            "DELETE FROM dentries WHERE ino=?1 AND valid_until IS NOT NULL",
            "DELETE FROM inode_history WHERE ino=?1",
            "DELETE FROM xattr_history WHERE ino=?1",
        ] {
            self.conn.prepare_cached(sql)?.execute([ino as i64])?;
        }
        Ok(())
    }

    /// How many extent rows use block `block`.
    pub fn block_users(&self, block: i64) -> Result<u64> {
        let mut st = self.conn.prepare_cached(
            "SELECT count(*) FROM extents INDEXED BY extents_by_block WHERE block=?1",
        )?;
        Ok(st.query_row([block], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Same as `block_users`, on a catalog that may lack `extents_by_block`
    /// (a read-only look at an older catalog: a full scan then).
    pub fn block_users_any(&self, block: i64) -> Result<u64> {
        let mut st = self
            .conn
            .prepare_cached("SELECT count(*) FROM extents WHERE block=?1")?;
        Ok(st.query_row([block], |r| r.get::<_, i64>(0))? as u64)
    }

    pub fn block_row(&self, block: i64) -> Result<Option<BlockRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, hash, pack, offset, len FROM blocks WHERE id=?1")?;
        Ok(st.query_row([block], block_row).optional()?)
    }

    /// Removes block `block` from the index if no extent uses it, and
    /// journals it; returns its row if it went. Run it in the transaction
    /// that dropped its last user: a writer deduplicating against the block
    /// looks it up under the same lock, so it either sees it gone (and
    /// stores its own copy) or has already added a user.
    pub fn free_block_if_unused(&self, block: i64, time: i64) -> Result<Option<BlockRow>> {
        if self.block_users(block)? > 0 {
            return Ok(None);
        }
        let Some(row) = self.block_row(block)? else {
            return Ok(None);
        };
        self.conn
            .prepare_cached("DELETE FROM blocks WHERE id=?1")?
            .execute([block])?;
        self.journal_removal(
            time,
            Removal::Block,
            row.location.pack.as_i64(),
            Some(&row.hash),
        )?;
        Ok(Some(row))
    }

    fn journal_removal(
        &self,
        time: i64,
        kind: Removal,
        pack: i64,
        hash: Option<&[u8]>,
    ) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO removals(time, kind, pack, hash) VALUES (?1,?2,?3,?4)")?
            .execute(params![time, kind as u8, pack, hash])?;
        Ok(())
    }

    /// Sealed packs not yet doomed, and their sizes.
    pub fn sealed_packs(&self) -> Result<Vec<(i64, u64)>> {
        let doomed = if self.has_prune_tables()? {
            "AND id NOT IN (SELECT pack FROM doomed_packs)"
        } else {
            ""
        };
        let mut st = self.conn.prepare(&format!(
            "SELECT id, size FROM packs WHERE sealed = 1 {doomed} ORDER BY id"
        ))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// What of pack `pack` (of `size` bytes) blocks still use.
    pub fn pack_usage(&self, pack: i64, size: u64) -> Result<PackUsage> {
        let mut st = self.conn.prepare_cached(
            "SELECT coalesce(sum(len), 0), count(*) FROM blocks INDEXED BY blocks_by_pack WHERE pack=?1",
        )?;
        let (live_bytes, live_blocks) = st.query_row([pack], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(PackUsage {
            pack,
            size,
            live_bytes,
            live_blocks,
        })
    }

    /// The blocks stored in `pack`, in pack order.
    pub fn blocks_in_pack(&self, pack: i64) -> Result<Vec<BlockRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, hash, pack, offset, len FROM blocks INDEXED BY blocks_by_pack WHERE pack=?1 ORDER BY offset",
        )?;
        let rows = st.query_map([pack], block_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Points block `id` at its copy `to`, if it is still where `from`
    /// says (it may have been freed meanwhile: then nothing changes).
    pub fn move_block(&self, id: i64, from: &BlockLocation, to: &BlockLocation) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE blocks SET pack=?4, offset=?5, len=?6 WHERE id=?1 AND pack=?2 AND offset=?3",
            )?
            .execute(params![
                id,
                from.pack.as_i64(),
                from.offset as i64,
                to.pack.as_i64(),
                to.offset as i64,
                to.len
            ])?;
        Ok(n == 1)
    }

    /// Marks `pack` for deletion as of `since`, if no block is stored in
    /// it. Returns whether it is (now or already) doomed.
    pub fn doom_pack_if_unused(&self, pack: i64, since: i64) -> Result<bool> {
        let used: i64 = self.conn.query_row(
            "SELECT count(*) FROM blocks INDEXED BY blocks_by_pack WHERE pack=?1",
            [pack],
            |r| r.get(0),
        )?;
        if used > 0 {
            return Ok(false);
        }
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO doomed_packs(pack, since) VALUES (?1, ?2)")?
            .execute(params![pack, since])?;
        Ok(true)
    }

    /// Doomed packs and since when.
    pub fn doomed_packs(&self) -> Result<Vec<(i64, i64)>> {
        if !self.has_prune_tables()? {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare("SELECT pack, since FROM doomed_packs ORDER BY since")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Takes doomed `pack` out of the catalog and journals it, unless a
    /// block is stored in it again (then it is no longer doomed). Returns
    /// its recorded size if it went: the caller deletes the file after the
    /// commit.
    pub fn forget_doomed_pack(&self, pack: i64, time: i64) -> Result<Option<u64>> {
        self.conn
            .prepare_cached("DELETE FROM doomed_packs WHERE pack=?1")?
            .execute([pack])?;
        let used: i64 = self.conn.query_row(
            "SELECT count(*) FROM blocks INDEXED BY blocks_by_pack WHERE pack=?1",
            [pack],
            |r| r.get(0),
        )?;
        if used > 0 {
            return Ok(None);
        }
        let size: Option<i64> = self
            .conn
            .query_row("SELECT size FROM packs WHERE id=?1", [pack], |r| r.get(0))
            .optional()?;
        self.conn.execute("DELETE FROM packs WHERE id=?1", [pack])?;
        self.journal_removal(time, Removal::Pack, pack, None)?;
        Ok(Some(size.unwrap_or(0) as u64))
    }

    /// The packs the journal says were removed after entry `after`, with
    /// their entries: their files should be gone (a prune killed between
    /// the commit and the deletion leaves the file for the next one).
    pub fn removed_packs_after(&self, after: i64) -> Result<Vec<(i64, i64)>> {
        if !self.has_prune_tables()? {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare("SELECT seq, pack FROM removals WHERE seq > ?1 AND kind = ?2 ORDER BY seq")?;
        let rows = st.query_map(params![after, Removal::Pack as u8], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The journal entry up to which every removed pack's file is known
    /// to be gone (0: none yet).
    pub fn removals_checked(&self) -> Result<i64> {
        Ok(self
            .meta_get(REMOVALS_CHECKED)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    pub fn set_removals_checked(&self, seq: i64) -> Result<()> {
        self.meta_set(REMOVALS_CHECKED, &seq.to_string())
    }
}

/// `meta` key: see `removals_checked`.
const REMOVALS_CHECKED: &str = "removals_checked";

fn block_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BlockRow> {
    Ok(BlockRow {
        id: r.get(0)?,
        hash: r.get(1)?,
        location: BlockLocation {
            pack: crate::store::PackId::from_i64(r.get(2)?),
            offset: r.get::<_, i64>(3)? as u64,
            len: r.get(4)?,
        },
    })
}
