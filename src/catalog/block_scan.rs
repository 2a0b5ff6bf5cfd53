//! The catalog as `verify` walks it: every pack that holds blocks (their
//! blocks: `gc::blocks_in_pack`), and the files and versions that use a
//! block.

use rusqlite::params;

use super::{Catalog, Ino, Result};

/// A file's use of a block: versions `from` up to `until` (exclusive; none:
/// still in the live file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockUse {
    pub ino: Ino,
    pub from: u64,
    pub until: Option<u64>,
}

impl Catalog {
    /// Every pack that holds blocks, with its block count, by id.
    pub fn packs_with_blocks(&self) -> Result<Vec<(i64, u64)>> {
        let mut st = self
            .conn
            .prepare("SELECT pack, count(*) FROM blocks GROUP BY pack ORDER BY pack")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Which files, in which versions, use block `block` (a `blocks` id).
    pub fn uses_of_block(&self, block: i64) -> Result<Vec<BlockUse>> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT ino, v_from, v_until FROM extents WHERE block=?1 ORDER BY ino, v_from",
        )?;
        let rows = st.query_map(params![block], |r| {
            Ok(BlockUse {
                ino: r.get::<_, i64>(0)? as Ino,
                from: r.get::<_, i64>(1)? as u64,
                until: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
