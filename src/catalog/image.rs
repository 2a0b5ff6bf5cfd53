//! A consistent copy of the whole catalog database, page for page, as a
//! replica ships it: the pages that changed since the last copy shipped
//! travel, and a recovery writes them back at their places.

use rusqlite::backup::{Backup, StepResult};
use rusqlite::serialize::Data;
use rusqlite::{Connection, MAIN_DB};

use super::{Catalog, CatalogError, Result};

/// The catalog's database file as of one committed state.
pub struct CatalogImage {
    pub page_size: u32,
    /// The file's bytes: `page_size` times its page count. (Held as SQLite
    /// made them: a catalog of 100,000 files is 50 MB, not copied twice.)
    bytes: Data<'static>,
    /// Sealed packs the state names, with their sizes.
    pub sealed_packs: Vec<(i64, u64)>,
    /// Packs pruning removed (`removals` of kind 2).
    pub removed_packs: Vec<i64>,
}

impl CatalogImage {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn pages(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks(self.page_size as usize)
    }

    pub fn page_count(&self) -> u32 {
        (self.bytes.len() / self.page_size as usize) as u32
    }
}

impl Catalog {
    /// Copies the committed state (commit first: an open group is not in
    /// it) through SQLite's backup, into memory: the same pages, at the same
    /// numbers, as the file would hold after a checkpoint.
    pub fn image(&self) -> Result<CatalogImage> {
        image_of(&self.conn)
    }
}

/// A read transaction on the catalog file, begun at one committed state:
/// its image can be taken later, without holding up the writer meanwhile.
pub struct CatalogSnapshot {
    conn: Connection,
}

impl CatalogSnapshot {
    /// Begins the read transaction now: the image is of the state the
    /// catalog at `path` has committed at this instant.
    pub fn begin(path: &std::path::Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("BEGIN")?;
        // A read transaction starts at its first read.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        Ok(Self { conn })
    }

    pub fn image(&self) -> Result<CatalogImage> {
        image_of(&self.conn)
    }
}

fn image_of(conn: &Connection) -> Result<CatalogImage> {
    let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let mut copy = Connection::open_in_memory()?;
    copy.pragma_update(None, "page_size", page_size)?;
    // One step, every page: the source's state cannot change midway.
    match Backup::new(conn, &mut copy)?.step(-1)? {
        StepResult::Done => {}
        other => {
            return Err(CatalogError::Integrity(format!(
                "copying the catalog stopped short: {other:?}"
            )))
        }
    }
    let sealed_packs = {
        let mut st = copy.prepare("SELECT id, size FROM packs WHERE sealed=1 ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let removed_packs = {
        let mut st =
            copy.prepare("SELECT DISTINCT pack FROM removals WHERE kind=2 ORDER BY pack")?;
        let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    // A copy SQLite allocated: it outlives the in-memory database, whose
    // pages are freed at once.
    let bytes = match copy.serialize(MAIN_DB)? {
        Data::Owned(owned) => Data::Owned(owned),
        // Only a database of SQLite's memdb VFS is shared, never ":memory:".
        Data::Shared(_) => {
            return Err(CatalogError::Integrity(
                "SQLite shared the catalog's copy instead of handing it over".into(),
            ))
        }
    };
    drop(copy);
    Ok(CatalogImage {
        page_size,
        bytes,
        sealed_packs,
        removed_packs,
    })
}
