//! Inode rows and live-block counts as the store's only writer last read or
//! wrote them, so that the requests asking for attributes over and over
//! (getattr, lookup, each setattr, the close) skip SQLite.
//!
//! Untar asks for the same file's row about eight times between its create
//! and its close. Only a read-write catalog keeps one: it is the store's only
//! writer, so nothing changes a row behind it. Whatever SQLite undoes (an
//! operation's savepoint, a lost group, a recovery) empties it.

use std::num::NonZeroUsize;

use lru::LruCache;

use super::{Ino, Inode};

/// Rows kept: about 100 bytes each.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(16 * 1024).unwrap();

pub(super) struct RowCache {
    inodes: LruCache<Ino, Inode>,
    /// Number of live blocks (`allocated_blocks`) per inode.
    allocated: LruCache<Ino, u64>,
    /// Number of allocated blocks without data (`unwritten_blocks`) per inode.
    unwritten: LruCache<Ino, u64>,
    /// Inodes known to have no extended attributes: those created since the
    /// catalog opened, until one is set. The kernel asks a new file for
    /// `security.capability` at its first write and at its chown.
    without_xattrs: LruCache<Ino, ()>,
}

impl RowCache {
    pub(super) fn new() -> Self {
        Self {
            inodes: LruCache::new(CAPACITY),
            allocated: LruCache::new(CAPACITY),
            unwritten: LruCache::new(CAPACITY),
            without_xattrs: LruCache::new(CAPACITY),
        }
    }

    pub(super) fn inode(&mut self, ino: Ino) -> Option<Inode> {
        self.inodes.get(&ino).cloned()
    }

    /// `inode` is what the catalog now holds for its number.
    pub(super) fn put_inode(&mut self, inode: &Inode) {
        self.inodes.put(inode.ino, inode.clone());
    }

    pub(super) fn allocated(&mut self, ino: Ino) -> Option<u64> {
        self.allocated.get(&ino).copied()
    }

    pub(super) fn put_allocated(&mut self, ino: Ino, blocks: u64) {
        self.allocated.put(ino, blocks);
    }

    /// The live blocks of `ino` changed.
    pub(super) fn forget_allocated(&mut self, ino: Ino) {
        self.allocated.pop(&ino);
    }

    pub(super) fn unwritten(&mut self, ino: Ino) -> Option<u64> {
        self.unwritten.get(&ino).copied()
    }

    pub(super) fn put_unwritten(&mut self, ino: Ino, blocks: u64) {
        self.unwritten.put(ino, blocks);
    }

    pub(super) fn has_no_xattrs(&mut self, ino: Ino) -> bool {
        self.without_xattrs.get(&ino).is_some()
    }

    pub(super) fn put_no_xattrs(&mut self, ino: Ino) {
        self.without_xattrs.put(ino, ());
    }

    /// An extended attribute of `ino` may be written.
    pub(super) fn forget_no_xattrs(&mut self, ino: Ino) {
        self.without_xattrs.pop(&ino);
    }

    /// SQLite undid changes this cache may hold.
    pub(super) fn clear(&mut self) {
        self.inodes.clear();
        self.allocated.clear();
        self.unwritten.clear();
        self.without_xattrs.clear();
    }
}
