//! Counts for `phivault info`.

use super::*;

impl Catalog {
    pub fn stats(&self) -> Result<Stats> {
        let q = |sql: &str| -> Result<i64> { Ok(self.conn.query_row(sql, [], |r| r.get(0))?) };
        Ok(Stats {
            files: q("SELECT count(*) FROM inodes WHERE kind=1 AND nlink>0")? as u64,
            directories: q("SELECT count(*) FROM inodes WHERE kind=2 AND nlink>0")? as u64,
            other_inodes: q("SELECT count(*) FROM inodes WHERE kind>2 AND nlink>0")? as u64,
            logical_bytes: q("SELECT COALESCE(sum(size),0) FROM inodes WHERE kind=1 AND nlink>0")?
                as u64,
            referenced_bytes: q(
                "SELECT COALESCE(sum(b.plain_len),0) FROM extents e JOIN blocks b ON b.id=e.block
                 WHERE e.v_until IS NULL",
            )? as u64,
            unique_blocks: q("SELECT count(*) FROM blocks")? as u64,
            unique_plain_bytes: q("SELECT COALESCE(sum(plain_len),0) FROM blocks")? as u64,
            stored_block_bytes: q("SELECT COALESCE(sum(len),0) FROM blocks")? as u64,
            versions: q("SELECT count(*) FROM versions")? as u64,
            packs: q("SELECT count(*) FROM packs")? as u64,
        })
    }
}
