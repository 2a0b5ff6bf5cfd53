//! Extended attributes, names and values sealed.

use rusqlite::{params, OptionalExtension};

use super::*;

impl Catalog {
    pub fn xattr_get(&self, ino: Ino, hash: &NameHash) -> Result<Option<Vec<u8>>> {
        if self.with_rows(|rows| rows.has_no_xattrs(ino)) == Some(true) {
            return Ok(None);
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT value FROM xattrs WHERE ino=?1 AND hash=?2")?;
        Ok(st
            .query_row(params![ino as i64, &hash[..]], |r| r.get(0))
            .optional()?)
    }

    /// Sets an extended attribute as of instant `at`; the value it
    /// replaces goes to the history (see `history`).
    pub fn xattr_set(
        &self,
        ino: Ino,
        hash: &NameHash,
        name: &[u8],
        value: &[u8],
        at: i64,
    ) -> Result<()> {
        self.with_rows(|rows| rows.forget_no_xattrs(ino));
        let since = self.keep_past_xattr(ino, hash, at)?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO xattrs(ino, hash, name, value, since) VALUES (?1,?2,?3,?4,?5)",
            )?
            .execute(params![ino as i64, &hash[..], name, value, since])?;
        Ok(())
    }

    /// Removes an extended attribute as of instant `at`; its value goes to
    /// the history.
    pub fn xattr_remove(&self, ino: Ino, hash: &NameHash, at: i64) -> Result<bool> {
        if self.xattr_get(ino, hash)?.is_none() {
            return Ok(false);
        }
        self.keep_past_xattr(ino, hash, at)?;
        Ok(self
            .conn
            .prepare_cached("DELETE FROM xattrs WHERE ino=?1 AND hash=?2")?
            .execute(params![ino as i64, &hash[..]])?
            > 0)
    }

    pub fn xattr_names(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        if self.with_rows(|rows| rows.has_no_xattrs(ino)) == Some(true) {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT name FROM xattrs WHERE ino=?1 ORDER BY hash")?;
        let rows = st.query_map([ino as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
