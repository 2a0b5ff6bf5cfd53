//! Packs: which exist, which are sealed.

use rusqlite::params;

use super::*;

impl Catalog {
    /// Records what a pack append did besides placing records: a pack opened.
    pub fn record_append(&self, outcome: &AppendOutcome) -> Result<()> {
        // At every append, not only the one that opened the pack: the group
        // that recorded the opening may have been rolled back (see `lost`),
        // and committed blocks must never point into a pack the catalog
        // does not list (recovery, replication and gc go by that list). An
        // opened pack holds the append's records, so it is among these.
        let mut recorded = None;
        for pack in outcome.locations.iter().map(|l| l.pack) {
            if recorded != Some(pack) {
                self.insert_pack(pack.as_i64())?;
                recorded = Some(pack);
            }
        }
        Ok(())
    }

    pub fn insert_pack(&self, pack: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO packs(id, sealed, size) VALUES (?1, 0, 0)")?
            .execute([pack])?;
        Ok(())
    }

    pub fn mark_pack_sealed(&self, pack: i64, size: u64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO packs(id, sealed, size) VALUES (?1, 1, ?2)")?
            .execute(params![pack, size as i64])?;
        Ok(())
    }

    pub fn forget_pack(&self, pack: i64) -> Result<()> {
        self.conn.execute("DELETE FROM packs WHERE id=?1", [pack])?;
        Ok(())
    }

    /// Unsealed packs and the end of the last record the catalog references.
    pub fn unsealed_packs(&self) -> Result<Vec<(i64, u64)>> {
        let mut st = self.conn.prepare(
            "SELECT p.id, COALESCE((SELECT max(offset + len) FROM blocks WHERE pack = p.id), 0)
             FROM packs p WHERE p.sealed = 0",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
