//! Inode generations: with the inode number, what an NFS file handle names.
//!
//! Numbers are never handed out twice by one process, but an inode created
//! in a group that never reached the disk (a kill -9 or power loss before
//! the commit) leaves its number free for the next process, while a client
//! may still hold a handle of it. So every read-write open starts a new
//! generation, durably, before it hands out a number: the numbers it gives
//! have the new generation and a handle of a lost inode no longer matches.
//!
//! Stored as runs (`generations` table): an inode has the generation of the
//! row with the greatest `first_ino` at or below it, 0 if there is none.

use rusqlite::{Connection, OptionalExtension};

use super::{Ino, Result};

/// The generation runs of a catalog, as of its open.
#[derive(Clone, Debug, Default)]
pub struct Generations {
    /// (first_ino, generation), ascending by first_ino.
    runs: Vec<(Ino, u64)>,
}

impl Generations {
    /// Reads the runs; a catalog without the table (a version 1 catalog
    /// opened read-only, so not upgraded) has none.
    pub(super) fn load(conn: &Connection) -> Result<Self> {
        let exists = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='generations'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Ok(Self::default());
        }
        let mut st =
            conn.prepare("SELECT first_ino, generation FROM generations ORDER BY first_ino")?;
        let runs = st
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as Ino, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self { runs })
    }

    /// Records, in its own transaction, that inodes from `first_ino` on have
    /// a generation no inode had before. The caller makes it durable before
    /// handing out a number. A run that starts at the same number replaces
    /// the previous one: none of that run's inodes survived.
    pub(super) fn start(conn: &Connection, first_ino: Ino) -> Result<Self> {
        conn.execute(
            "INSERT OR REPLACE INTO generations(first_ino, generation)
             SELECT ?1, coalesce(max(generation), 0) + 1 FROM generations",
            [first_ino as i64],
        )?;
        Self::load(conn)
    }

    pub fn of(&self, ino: Ino) -> u64 {
        let after = self.runs.partition_point(|&(first, _)| first <= ino);
        after.checked_sub(1).map_or(0, |i| self.runs[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(crate::catalog::schema::GENERATIONS)
            .unwrap();
        c
    }

    #[test]
    fn inodes_before_the_first_run_have_generation_zero() {
        let c = conn();
        let g = Generations::start(&c, 2).unwrap();
        assert_eq!(g.of(1), 0);
        assert_eq!(g.of(2), 1);
        assert_eq!(g.of(1000), 1);
    }

    #[test]
    fn a_number_handed_out_again_gets_a_new_generation() {
        let c = conn();
        Generations::start(&c, 2).unwrap();
        // Inodes 2..=9 were created; 10.. were lost with the process.
        let g = Generations::start(&c, 10).unwrap();
        assert_eq!(g.of(9), 1);
        assert_eq!(g.of(10), 2);
        // Nothing of the last process survived: its run is replaced.
        let g = Generations::start(&c, 10).unwrap();
        assert_eq!(g.of(9), 1);
        assert_eq!(g.of(10), 3);
    }

    #[test]
    fn a_catalog_without_the_table_has_generation_zero() {
        let c = Connection::open_in_memory().unwrap();
        assert_eq!(Generations::load(&c).unwrap().of(5), 0);
    }
}
