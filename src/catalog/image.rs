//! The catalog's database file as of one committed state, page by page, as
//! a replica ships it: the pages that changed since the last pass travel,
//! and a recovery writes them back at their places.
//!
//! Pages are read through SQLite's `sqlite_dbpage` table inside one read
//! transaction: each is what the file would hold at that state after a
//! checkpoint, the writer is never held up, and nothing is copied whole. A
//! pass reads every page once to hash it and keeps only the ones it ships.

use rusqlite::{Connection, OpenFlags};

use super::Result;

/// A read transaction on the catalog file, begun at one committed state:
/// its pages can be read later, without holding up the writer meanwhile.
pub struct CatalogSnapshot {
    conn: Connection,
}

impl CatalogSnapshot {
    /// Begins the read transaction now: the image is of the state the
    /// catalog at `path` has committed at this instant.
    pub fn begin(path: &std::path::Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("BEGIN")?;
        // A read transaction starts at its first read.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        Ok(Self { conn })
    }

    pub fn image(self) -> Result<CatalogImage> {
        let conn = &self.conn;
        let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let page_count: u32 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let sealed_packs = {
            let mut st = conn.prepare("SELECT id, size FROM packs WHERE sealed=1 ORDER BY id")?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let removed_packs = {
            let mut st =
                conn.prepare("SELECT DISTINCT pack FROM removals WHERE kind=2 ORDER BY pack")?;
            let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        Ok(CatalogImage {
            page_size,
            page_count,
            sealed_packs,
            removed_packs,
            snapshot: self,
        })
    }
}

/// The catalog as of one committed state (its read transaction stays open
/// while this lives).
pub struct CatalogImage {
    pub page_size: u32,
    page_count: u32,
    /// Sealed packs the state names, with their sizes.
    pub sealed_packs: Vec<(i64, u64)>,
    /// Packs pruning removed (`removals` of kind 2).
    pub removed_packs: Vec<i64>,
    snapshot: CatalogSnapshot,
}

impl CatalogImage {
    pub fn page_count(&self) -> u32 {
        self.page_count
    }

    /// Calls `f` with each page, in order from page 1, read one at a time.
    pub fn for_each_page(&self, mut f: impl FnMut(u32, &[u8])) -> Result<()> {
        let mut st = self
            .snapshot
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let pgno: u32 = row.get(0)?;
            let page = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            f(pgno, page);
        }
        Ok(())
    }

    /// Pages `pgnos` (from 1), with their numbers.
    pub fn read_pages(&self, pgnos: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut st = self
            .snapshot
            .conn
            .prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")?;
        pgnos
            .iter()
            .map(|&pgno| Ok((pgno, st.query_row([pgno], |r| r.get::<_, Vec<u8>>(0))?)))
            .collect()
    }

    /// The whole file as of the state: what a recovery writes back.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.page_count as usize * self.page_size as usize);
        self.for_each_page(|_, page| out.extend_from_slice(page))?;
        Ok(out)
    }
}
