//! Inode rows: attributes, symlink targets, open versions and generations.

use rusqlite::{params, OptionalExtension};

use super::*;

impl Catalog {
    /// The inode generations (see `generations`), which with its number
    /// name an inode in file handles. Fixed for as long as the catalog is
    /// open: they change only when a read-write open starts a new one.
    pub fn generations(&self) -> Generations {
        self.generations.clone()
    }

    pub(super) fn with_rows<T>(&self, f: impl FnOnce(&mut row_cache::RowCache) -> T) -> Option<T> {
        self.rows.borrow_mut().as_mut().map(f)
    }

    /// SQLite undid changes: what the row cache holds may be gone, and so
    /// may the history rows that made a state fresh.
    pub(super) fn forget_cached_rows(&self) {
        self.with_rows(|rows| rows.clear());
        self.fresh.borrow_mut().clear();
    }

    pub fn inode(&self, ino: Ino) -> Result<Option<Inode>> {
        if let Some(inode) = self.with_rows(|rows| rows.inode(ino)).flatten() {
            return Ok(Some(inode));
        }
        let mut st = self.conn.prepare_cached(
            "SELECT ino, kind, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, btime,
                    version, version_open, since FROM inodes WHERE ino=?1",
        )?;
        let inode = st.query_row([ino as i64], Inode::from_row).optional()?;
        if let Some(i) = &inode {
            self.with_rows(|rows| rows.put_inode(i));
        }
        Ok(inode)
    }

    pub fn insert_inode(&self, n: &NewInode) -> Result<Ino> {
        assert!(
            self.creates_inodes,
            "an inode created through a catalog opened to maintain it"
        );
        let ino = self.next_ino.get();
        let mut st = self.conn.prepare_cached(
            "INSERT INTO inodes(kind, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, btime,
                                version, version_open, target, ino, since)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?8, 0, 0, ?9, ?10, ?11)",
        )?;
        self.next_ino.set(ino + 1);
        st.execute(params![
            n.kind as u8,
            n.mode,
            n.uid,
            n.gid,
            n.nlink,
            n.size as i64,
            n.rdev,
            n.time,
            n.target,
            ino as i64,
            n.at
        ])?;
        self.fresh.borrow_mut().inodes.insert(ino);
        // The caller asks for the new file's attributes next, and untar
        // for its row about eight times before the close.
        self.with_rows(|rows| {
            rows.put_inode(&Inode {
                ino,
                kind: n.kind,
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                nlink: n.nlink,
                size: n.size,
                rdev: n.rdev,
                atime: n.time,
                mtime: n.time,
                ctime: n.time,
                btime: n.time,
                version: 0,
                version_open: false,
                since: n.at,
            });
            // Inode numbers are never reused, so no extent or extended
            // attribute names this one.
            rows.put_allocated(ino, 0);
            rows.put_no_xattrs(ino);
        });
        Ok(ino)
    }

    /// Writes back every mutable field of `i`, as of instant `at`. If its
    /// attributes changed, the state they replace goes to `inode_history`
    /// (see `history`).
    pub fn update_inode(&self, i: &Inode, at: i64) -> Result<()> {
        let mut i = i.clone();
        if let Some(old) = self.inode(i.ino)? {
            i.since = self.keep_past_attrs(&old, &i, at)?;
        }
        let mut st = self.conn.prepare_cached(
            "UPDATE inodes SET mode=?2, uid=?3, gid=?4, nlink=?5, size=?6, rdev=?7, atime=?8,
                    mtime=?9, ctime=?10, version=?11, version_open=?12, since=?13 WHERE ino=?1",
        )?;
        st.execute(params![
            i.ino as i64,
            i.mode,
            i.uid,
            i.gid,
            i.nlink,
            i.size as i64,
            i.rdev,
            i.atime,
            i.mtime,
            i.ctime,
            i.version as i64,
            i.version_open,
            i.since
        ])?;
        self.with_rows(|rows| rows.put_inode(&i));
        Ok(())
    }

    pub fn symlink_target(&self, ino: Ino) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT target FROM inodes WHERE ino=?1",
                [ino as i64],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Inodes with changes that were never recorded as a version (a crash
    /// before close): recovery records them.
    pub fn open_versions(&self) -> Result<Vec<Ino>> {
        let mut st = self
            .conn
            .prepare("SELECT ino FROM inodes WHERE version_open=1")?;
        let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .map(|i| i as Ino)
            .collect())
    }
}
