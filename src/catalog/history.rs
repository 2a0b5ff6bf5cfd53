//! The past states of inode attributes and extended attributes.
//!
//! An inode row holds its current attributes and the instant they took
//! effect (`since`). When they change, the state they replace moves to
//! `inode_history` with the interval it held, [since, until); extended
//! attributes likewise to `xattr_history`. Instants are on the history
//! clock (`vault::Tick::at`), the one directory entries and versions use.
//!
//! History has the resolution of the group commit: a state written in the
//! open group (not yet on disk, at most `GROUP_MAX_AGE` old) is replaced in
//! place when it changes again, and the replaced state keeps its `since`.
//! Untarring a file thus writes no history for its create, chown, chmod,
//! utimes and close, as its intermediate states were never durable either.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};

use super::*;

/// What the open group wrote: states that a change replaces in place.
#[derive(Default)]
pub(super) struct Fresh {
    pub(super) inodes: HashSet<Ino>,
    pub(super) xattrs: HashSet<(Ino, NameHash)>,
}

impl Fresh {
    pub(super) fn clear(&mut self) {
        self.inodes.clear();
        self.xattrs.clear();
    }
}

/// An inode's attributes as they were at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PastAttrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

impl PastAttrs {
    pub fn of(i: &Inode) -> Self {
        Self {
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
        }
    }
}

impl Catalog {
    /// Whether a change of `ino`'s attributes now writes one row only (its
    /// state is fresh, see the module doc), for `tx_one_row`.
    pub fn attrs_fresh(&self, ino: Ino) -> bool {
        self.fresh.borrow().inodes.contains(&ino)
    }

    /// Moves `old`'s attributes to the history if `new` changes them at
    /// `at`; returns the `since` the row keeps.
    pub(super) fn keep_past_attrs(&self, old: &Inode, new: &Inode, at: i64) -> Result<i64> {
        let (was, is) = (PastAttrs::of(old), PastAttrs::of(new));
        if was == is {
            return Ok(old.since);
        }
        if !self.fresh.borrow_mut().inodes.insert(old.ino) || at <= old.since {
            return Ok(old.since);
        }
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO inode_history(ino, since, until, mode, uid, gid, atime, mtime, ctime)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            )?
            .execute(params![
                old.ino as i64,
                old.since,
                at,
                was.mode,
                was.uid,
                was.gid,
                was.atime,
                was.mtime,
                was.ctime
            ])?;
        Ok(at)
    }

    /// `ino`'s attributes at instant `at`, None if it had none yet.
    pub fn attrs_at(&self, ino: Ino, at: i64) -> Result<Option<PastAttrs>> {
        let Some(now) = self.inode(ino)? else {
            return Ok(None);
        };
        if now.since <= at {
            return Ok(Some(PastAttrs::of(&now)));
        }
        let mut st = self.conn.prepare_cached(
            "SELECT since, mode, uid, gid, atime, mtime, ctime FROM inode_history
             WHERE ino=?1 AND until > ?2 ORDER BY until LIMIT 1",
        )?;
        let row = st
            .query_row(params![ino as i64, at], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    PastAttrs {
                        mode: r.get(1)?,
                        uid: r.get(2)?,
                        gid: r.get(3)?,
                        atime: r.get(4)?,
                        mtime: r.get(5)?,
                        ctime: r.get(6)?,
                    },
                ))
            })
            .optional()?;
        Ok(row.and_then(|(since, attrs)| (since <= at).then_some(attrs)))
    }

    /// Moves the current value of xattr (`ino`, `hash`), if any, to the
    /// history as replaced at `at`; returns the `since` a new value keeps.
    pub(super) fn keep_past_xattr(&self, ino: Ino, hash: &NameHash, at: i64) -> Result<i64> {
        if !self.fresh.borrow_mut().xattrs.insert((ino, *hash)) {
            let since: Option<i64> = self
                .conn
                .prepare_cached("SELECT since FROM xattrs WHERE ino=?1 AND hash=?2")?
                .query_row(params![ino as i64, &hash[..]], |r| r.get(0))
                .optional()?;
            return Ok(since.unwrap_or(at));
        }
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO xattr_history(ino, hash, name, value, since, until)
                 SELECT ino, hash, name, value, since, ?3 FROM xattrs
                 WHERE ino=?1 AND hash=?2 AND since < ?3",
            )?
            .execute(params![ino as i64, &hash[..], at])?;
        Ok(at)
    }

    /// `ino`'s extended attributes at instant `at`: (sealed name, sealed
    /// value) pairs in hash order.
    pub fn xattrs_at(&self, ino: Ino, at: i64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT hash, name, value FROM xattrs WHERE ino=?1 AND since <= ?2
             UNION ALL
             SELECT hash, name, value FROM xattr_history
             WHERE ino=?1 AND since <= ?2 AND until > ?2
             ORDER BY 1",
        )?;
        let rows = st.query_map(params![ino as i64, at], |r| {
            Ok((r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
