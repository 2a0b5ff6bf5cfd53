//! The background copy of committed WAL frames into the database.

use std::path::Path;

use rusqlite::Connection;

use super::{connect_read_write, Result};

/// A second connection that copies committed WAL frames into the database
/// in the background. Its checkpoints are PASSIVE: they neither wait for the
/// writer nor block it. The writer's own checkpoint at `WAL_CHECKPOINT_BYTES`
/// (which alone can rewind the WAL) then finds little left to copy, so the
/// request that triggers it stalls for milliseconds instead of a tenth of a
/// second.
pub struct Checkpointer {
    conn: Connection,
}

impl Checkpointer {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = connect_read_write(path)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;")?;
        Ok(Self { conn })
    }

    /// Copies what was committed since the last call; returns the frames in
    /// the WAL and how many of them are in the database now. Returns at once
    /// if another checkpoint is running.
    pub fn copy_back(&self) -> Result<(u64, u64)> {
        let (frames, copied): (i64, i64) =
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(1)?, r.get(2)?))
                })?;
        Ok((frames.max(0) as u64, copied.max(0) as u64))
    }
}
