//! The recorded versions of each file.

use rusqlite::params;

use super::*;

impl Catalog {
    pub fn insert_version(&self, v: &VersionRow) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO versions(ino, version, time, size, reason, uid) VALUES (?1,?2,?3,?4,?5,?6)",
        )?;
        st.execute(params![
            v.ino as i64,
            v.version as i64,
            v.time,
            v.size as i64,
            v.reason as u8,
            v.uid
        ])?;
        Ok(())
    }

    pub fn versions(&self, ino: Ino) -> Result<Vec<VersionRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT ino, version, time, size, reason, uid FROM versions WHERE ino=?1 ORDER BY version",
        )?;
        let rows = st.query_map([ino as i64], |r| {
            Ok(VersionRow {
                ino: r.get::<_, i64>(0)? as Ino,
                version: r.get::<_, i64>(1)? as u64,
                time: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                reason: r.get(4)?,
                uid: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
