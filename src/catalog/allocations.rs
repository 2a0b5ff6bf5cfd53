//! Blocks that fallocate allocated to a file and nothing has been stored in
//! since (table `allocations`), so that the space they hold outlives a mount.
//!
//! Holds block ranges only; which ranges, and the space they stand for, is
//! the engine's business.

use rusqlite::{params, OptionalExtension};

use super::{Catalog, Ino, Result};

/// A run of allocated blocks: `(first index, number of blocks)`.
pub type BlockRun = (u64, u64);

impl Catalog {
    /// Notes whether any file holds allocated blocks, so that a store
    /// where none ever did pays no lookup for them.
    pub(super) fn note_allocations(&self) -> Result<()> {
        let table: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='allocations'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let any = table.is_some()
            && self
                .conn
                .query_row("SELECT EXISTS(SELECT 1 FROM allocations)", [], |r| {
                    r.get::<_, bool>(0)
                })?;
        self.allocating.set(any);
        Ok(())
    }

    /// Drops the allocations of files that have no name left: removed while
    /// open when the daemon stopped, nothing can write to them any more.
    pub fn drop_orphan_allocations(&self) -> Result<()> {
        self.conn.execute(
            "DELETE FROM allocations WHERE ino NOT IN (SELECT ino FROM inodes WHERE nlink > 0)",
            [],
        )?;
        self.with_rows(|rows| rows.clear());
        Ok(())
    }

    /// Every file's allocated runs.
    pub fn allocations(&self) -> Result<Vec<(Ino, BlockRun)>> {
        let mut st = self
            .conn
            .prepare("SELECT ino, first, blocks FROM allocations ORDER BY ino, first")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as Ino,
                (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Changes the allocated runs of `ino`: deletes those starting at
    /// `gone`, adds `new`; `total` is how many blocks it then holds.
    pub fn edit_allocations(
        &self,
        ino: Ino,
        gone: &[u64],
        new: &[BlockRun],
        total: u64,
    ) -> Result<()> {
        let mut del = self
            .conn
            .prepare_cached("DELETE FROM allocations WHERE ino=?1 AND first=?2")?;
        for &first in gone {
            del.execute(params![ino as i64, first as i64])?;
        }
        let mut ins = self
            .conn
            .prepare_cached("INSERT INTO allocations(ino, first, blocks) VALUES (?1,?2,?3)")?;
        for &(first, blocks) in new {
            ins.execute(params![ino as i64, first as i64, blocks as i64])?;
        }
        self.with_rows(|rows| rows.put_unwritten(ino, total));
        if total > 0 {
            self.allocating.set(true);
        }
        Ok(())
    }

    /// Allocated blocks of `ino` that hold no data yet.
    pub(super) fn unwritten_blocks(&self, ino: Ino) -> Result<u64> {
        if !self.allocating.get() {
            return Ok(0);
        }
        if let Some(n) = self.with_rows(|rows| rows.unwritten(ino)).flatten() {
            return Ok(n);
        }
        let n: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(sum(blocks), 0) FROM allocations WHERE ino=?1")?
            .query_row([ino as i64], |r| r.get(0))?;
        self.with_rows(|rows| rows.put_unwritten(ino, n as u64));
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Kind, NewInode};

    fn file(cat: &Catalog) -> Ino {
        cat.tx(|c| {
            c.insert_inode(&NewInode {
                kind: Kind::File,
                mode: 0o600,
                uid: 0,
                gid: 0,
                nlink: 1,
                size: 0,
                rdev: 0,
                time: 1,
                at: 1,
                target: None,
            })
        })
        .unwrap()
    }

    #[test]
    fn allocated_blocks_count_in_the_allocation_until_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db"), true).unwrap();
        let ino = file(&cat);
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 0);
        cat.tx(|c| c.edit_allocations(ino, &[], &[(0, 3), (10, 5)], 8))
            .unwrap();
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 8);
        assert_eq!(
            cat.allocations().unwrap(),
            vec![(ino, (0, 3)), (ino, (10, 5))]
        );
        cat.tx(|c| c.edit_allocations(ino, &[0, 10], &[(11, 4)], 4))
            .unwrap();
        cat.commit().unwrap();
        drop(cat);

        let cat = Catalog::open(&dir.path().join("c.db"), false).unwrap();
        assert_eq!(
            cat.allocated_blocks(ino).unwrap(),
            4,
            "read back after reopening"
        );
        cat.tx(|c| c.edit_allocations(ino, &[11], &[], 0)).unwrap();
        assert_eq!(cat.allocated_blocks(ino).unwrap(), 0);
        assert!(cat.allocations().unwrap().is_empty());
    }
}
