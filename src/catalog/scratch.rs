//! A private, upgraded copy of an older catalog, for reading it without
//! changing it: a read-only view of a store that no read-write mount of
//! this release has upgraded yet (on read-only media, or before its first
//! mount). The copy lives in a 0700 directory under the system's temporary
//! directory and goes with the catalog that reads it.

#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use rusqlite::Connection;

use super::{connect, schema, CatalogError, Result};

pub(super) struct ScratchCopy {
    dir: PathBuf,
}

impl ScratchCopy {
    /// Copies the catalog `conn` reads (any schema version this release
    /// knows) and upgrades the copy; returns it, open and query-only.
    pub(super) fn upgraded(conn: &Connection, from: i64) -> Result<(Connection, Self)> {
        let scratch = Self::new_dir()?;
        let copy = scratch.dir.join("catalog.db");
        let target = copy.to_str().ok_or_else(|| CatalogError::Io {
            path: copy.clone(),
            source: std::io::ErrorKind::InvalidInput.into(),
        })?;
        conn.execute("VACUUM INTO ?1", [target])?;
        let upgraded = connect(
            &copy,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        schema::upgrade(&upgraded, from)?;
        upgraded.execute_batch("PRAGMA query_only = 1;")?;
        Ok((upgraded, scratch))
    }

    fn new_dir() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let dir = base.join(format!(
                "phivault-catalog-{}-{}-{n}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Self { dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(CatalogError::Io { path: dir, source }),
            }
        }
        Err(CatalogError::Io {
            path: base,
            source: std::io::ErrorKind::AlreadyExists.into(),
        })
    }

    #[cfg(test)]
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
