//! Space that fallocate allocated to files and nothing has been written to
//! yet: per file the runs of such blocks (the catalog's `allocations`,
//! mirrored here) and the bytes they hold in the `SpaceGuard`, so that
//! writes into them cannot meet a disk that other files' writes filled.
//!
//! A block leaves its file's allocation when data is stored in it (the
//! write draws on what it held instead of claiming), or when truncate,
//! punch-hole or the file's removal drops it. Each change is written to the
//! catalog in the transaction that causes it and applied here once that
//! succeeded, under the catalog's lock; this map's lock is taken last.
//! Writes to files without an allocation look no further than one counter.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::{Result, Vault};
use crate::catalog::{BlockRun, Catalog, Ino};
use crate::store::room_per_block;

/// A set of block indexes, as disjoint runs `start -> end` (exclusive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct BlockSet(BTreeMap<u64, u64>);

impl BlockSet {
    fn runs(&self) -> Vec<BlockRun> {
        self.0.iter().map(|(&s, &e)| (s, e - s)).collect()
    }

    fn len(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, idx: u64) -> bool {
        self.0
            .range(..=idx)
            .next_back()
            .is_some_and(|(_, &end)| idx < end)
    }

    /// Adds [start, end), merging with the runs it touches.
    fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        let touching: Vec<(u64, u64)> = self
            .0
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.0.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    /// Takes [start, end) out; returns how many blocks were in it.
    fn remove(&mut self, start: u64, end: u64) -> u64 {
        let overlapping: Vec<(u64, u64)> = self
            .0
            .range(..end)
            .rev()
            .take_while(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        let mut removed = 0;
        for (s, e) in overlapping {
            self.0.remove(&s);
            removed += e.min(end) - s.max(start);
            if s < start {
                self.0.insert(s, start);
            }
            if e > end {
                self.0.insert(end, e);
            }
        }
        removed
    }

    /// The parts of [start, end) not in the set, skipping the sorted
    /// indexes `except`.
    fn missing_in(&self, start: u64, end: u64, except: &[u64]) -> BlockSet {
        let mut out = BlockSet::default();
        out.insert(start, end);
        for (&s, &e) in self.0.range(..end) {
            if e > start {
                out.remove(s, e);
            }
        }
        for &idx in except {
            out.remove(idx, idx + 1);
        }
        out
    }

    fn edit(&mut self, edit: &Edit) {
        match edit {
            Edit::Add(runs) => {
                for &(s, e) in runs {
                    self.insert(s, e);
                }
            }
            Edit::Remove(runs) => {
                for &(s, e) in runs {
                    self.remove(s, e);
                }
            }
        }
    }

    /// The runs that reach into [lo, hi).
    fn window(&self, lo: u64, hi: u64) -> BlockSet {
        let runs = self.0.range(..hi).rev().take_while(|(_, &e)| e > lo);
        BlockSet(runs.map(|(&s, &e)| (s, e)).collect())
    }
}

/// Block runs to add to or take out of a file's allocation.
enum Edit {
    Add(Vec<(u64, u64)>),
    Remove(Vec<(u64, u64)>),
}

impl Edit {
    /// The blocks whose runs an edit may change: one either side of it.
    fn bounds(&self) -> (u64, u64) {
        let (Edit::Add(runs) | Edit::Remove(runs)) = self;
        let lo = runs.iter().map(|r| r.0).min().unwrap_or(0);
        let hi = runs.iter().map(|r| r.1).max().unwrap_or(0);
        (lo.saturating_sub(1), hi.saturating_add(1))
    }
}

/// The allocations of every file that has one.
#[derive(Default)]
pub(super) struct Allocations {
    files: Mutex<HashMap<Ino, BlockSet>>,
    /// Number of entries in `files`; while 0 nothing else is looked at.
    count: AtomicUsize,
    /// The catalog's count of lost groups when `files` last matched it.
    losses_seen: AtomicU64,
}

/// An edit of a file's allocation that a catalog transaction wrote, to be
/// replayed here once that transaction succeeded.
#[must_use]
pub(super) struct Change {
    ino: Ino,
    edit: Edit,
    /// Blocks that left the allocation: their bytes are given back.
    removed: u64,
}

impl Allocations {
    fn with<T>(&self, ino: Ino, f: impl FnOnce(&BlockSet) -> T) -> Option<T> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.files.lock().get(&ino).map(f)
    }

    fn replay(&self, change: &Change) {
        let mut files = self.files.lock();
        let set = files.entry(change.ino).or_default();
        set.edit(&change.edit);
        if set.is_empty() {
            files.remove(&change.ino);
        }
        self.count.store(files.len(), Ordering::Release);
    }
}

impl Vault {
    fn room_per_block(&self) -> u64 {
        room_per_block(self.block_size)
    }

    /// Reads the allocations the catalog holds and holds their space again
    /// (at open, before any request).
    pub(super) fn load_allocations(&self) -> Result<()> {
        let cat = self.catalog.lock();
        cat.tx(|c| c.drop_orphan_allocations())?;
        self.reload_allocations(&cat)
    }

    /// Replaces the map, and the room held, by what the catalog holds.
    fn reload_allocations(&self, cat: &Catalog) -> Result<()> {
        let runs = cat.allocations()?;
        let mut files = self.allocated.files.lock();
        let before: u64 = files.values().map(BlockSet::len).sum();
        files.clear();
        for &(ino, (first, blocks)) in &runs {
            files.entry(ino).or_default().insert(first, first + blocks);
        }
        let after: u64 = runs.iter().map(|(_, run)| run.1).sum();
        self.space.release(before * self.room_per_block());
        self.space.rehold(after * self.room_per_block());
        self.allocated.count.store(files.len(), Ordering::Release);
        self.allocated
            .losses_seen
            .store(cat.losses().0, Ordering::Release);
        Ok(())
    }

    /// A catalog group that SQLite rolled back may have held changes of
    /// allocations already applied here: the catalog is the truth.
    fn resync_after_loss(&self, cat: &Catalog) -> Result<()> {
        if cat.losses().0 == self.allocated.losses_seen.load(Ordering::Acquire) {
            return Ok(());
        }
        tracing::warn!("catalog changes were lost; reading the allocations again");
        self.reload_allocations(cat)
    }

    /// Whether `ino` has blocks allocated and not written yet.
    pub(super) fn has_allocation(&self, ino: Ino) -> bool {
        self.allocated.with(ino, |_| ()).is_some()
    }

    /// Which of the blocks `idxs` of `ino` are allocated and not written.
    pub(super) fn allocated_among(&self, ino: Ino, idxs: impl Iterator<Item = u64>) -> Vec<u64> {
        self.allocated
            .with(ino, |set| idxs.filter(|&i| set.contains(i)).collect())
            .unwrap_or_default()
    }

    /// Writes `edit` of the allocation of `ino` in the transaction of `c`:
    /// only the rows of the runs it changes. None if it changes nothing.
    fn edit_in(&self, c: &Catalog, ino: Ino, edit: Edit) -> Result<Option<Change>> {
        self.resync_after_loss(c)?;
        let (lo, hi) = edit.bounds();
        let (before, total) = self
            .allocated
            .with(ino, |set| (set.window(lo, hi), set.len()))
            .unwrap_or_default();
        let mut after = before.clone();
        after.edit(&edit);
        if after == before {
            return Ok(None);
        }
        let gone: Vec<u64> = before
            .0
            .iter()
            .filter(|(s, e)| after.0.get(s) != Some(e))
            .map(|(&s, _)| s)
            .collect();
        let new: Vec<BlockRun> = after
            .runs()
            .into_iter()
            .filter(|(s, n)| before.0.get(s) != Some(&(s + n)))
            .collect();
        let total = total + after.len() - before.len();
        c.edit_allocations(ino, &gone, &new, total)?;
        let removed = before.len().saturating_sub(after.len());
        Ok(Some(Change { ino, edit, removed }))
    }

    /// Allocates blocks `first..end` of `ino`: those without data that are
    /// not allocated yet. With `zero`, the range is first made to read as
    /// zeros (FALLOC_FL_ZERO_RANGE), which frees its whole blocks. Fails
    /// with ENOSPC, allocating and zeroing nothing, if the room is not free.
    pub(super) fn allocate(&self, ino: Ino, offset: u64, end: u64, zero: bool) -> Result<()> {
        let bs = self.block_size;
        let (first, last) = (offset / bs, end.div_ceil(bs));
        let room = self.room_per_block();
        let missing = |written: &[u64]| {
            self.allocated
                .with(ino, |set| set.missing_in(first, last, written))
                .unwrap_or_else(|| BlockSet::default().missing_in(first, last, written))
        };
        // Zeroing cannot be undone: hold enough for every block first.
        let held = if zero {
            let upper = missing(&[]).len() * room;
            self.space.hold(upper)?;
            if let Err(e) = self.zero_range(ino, offset, end) {
                self.space.release(upper);
                return Err(e);
            }
            upper
        } else {
            0
        };
        let cat = self.catalog.lock();
        self.resync_after_loss(&cat)?;
        let written: Vec<u64> = cat
            .live_extents(ino, first, last.saturating_sub(1))?
            .into_iter()
            .map(|(idx, _)| idx)
            .collect();
        let added = missing(&written);
        let needed = added.len() * room;
        if needed > held {
            if let Err(e) = self.space.hold(needed - held) {
                self.space.release(held);
                return Err(e.into());
            }
        } else {
            self.space.release(held - needed);
        }
        if added.is_empty() {
            return Ok(());
        }
        let edit = Edit::Add(added.0.into_iter().collect());
        match cat.tx(|c| self.edit_in(c, ino, edit)) {
            Ok(change) => {
                self.apply(change);
                Ok(())
            }
            Err(e) => {
                self.space.release(needed);
                Err(e)
            }
        }
    }

    /// Writes, in the transaction of `c`, the allocation of `ino` without
    /// blocks `first..end`. None if none of them was allocated.
    pub(super) fn deallocate_in(
        &self,
        c: &Catalog,
        ino: Ino,
        first: u64,
        end: u64,
    ) -> Result<Option<Change>> {
        if !self.has_allocation(ino) || first >= end {
            return Ok(None);
        }
        self.edit_in(c, ino, Edit::Remove(vec![(first, end)]))
    }

    /// Writes, in the transaction of `c`, the allocation of `ino` without
    /// the blocks `filled` that data was just stored in.
    pub(super) fn fill_in(&self, c: &Catalog, ino: Ino, filled: &[u64]) -> Result<Option<Change>> {
        let mut runs = BlockSet::default();
        filled.iter().for_each(|&i| runs.insert(i, i + 1));
        self.edit_in(c, ino, Edit::Remove(runs.0.into_iter().collect()))
    }

    /// Applies a change whose transaction succeeded; call it before the
    /// catalog is unlocked.
    pub(super) fn apply(&self, change: Option<Change>) {
        if let Some(change) = change {
            self.allocated.replay(&change);
            self.space.release(change.removed * self.room_per_block());
        }
    }

    /// Drops the allocation of `ino` once it has neither a name nor an open
    /// handle: nothing can write into it any more.
    pub(super) fn deallocate_if_orphaned(&self, ino: Ino) -> Result<()> {
        if !self.has_allocation(ino) {
            return Ok(());
        }
        let open = self.files.lock().get(&ino).is_some_and(|e| e.handles() > 0);
        if open {
            return Ok(());
        }
        let cat = self.catalog.lock();
        if cat.inode(ino)?.is_some_and(|i| i.nlink > 0) {
            return Ok(());
        }
        let change = cat.tx(|c| self.deallocate_in(c, ino, 0, u64::MAX))?;
        self.apply(change);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::test_support::{new_file, open_vault};

    const KEEP_SIZE: i32 = 0x01;

    fn set(runs: &[(u64, u64)]) -> BlockSet {
        let mut s = BlockSet::default();
        for &(a, b) in runs {
            s.insert(a, b);
        }
        s
    }

    #[test]
    fn runs_merge_when_they_touch_or_overlap() {
        let s = set(&[(0, 2), (5, 7), (2, 3), (6, 9), (20, 21)]);
        assert_eq!(s.runs(), vec![(0, 3), (5, 4), (20, 1)]);
        assert_eq!(s.len(), 8);
        assert!(s.contains(0) && s.contains(8) && s.contains(20));
        assert!(!s.contains(3) && !s.contains(9) && !s.contains(21));
        assert_eq!(set(&[(3, 5), (0, 10)]).runs(), vec![(0, 10)]);
    }

    #[test]
    fn removing_splits_runs_and_counts_what_was_there() {
        let mut s = set(&[(0, 10), (20, 30)]);
        assert_eq!(s.remove(5, 25), 10);
        assert_eq!(s.runs(), vec![(0, 5), (25, 5)]);
        assert_eq!(s.remove(2, 3), 1);
        assert_eq!(s.runs(), vec![(0, 2), (3, 2), (25, 5)]);
        assert_eq!(s.remove(40, 50), 0);
        assert_eq!(s.remove(0, u64::MAX), 9);
        assert!(s.is_empty());
    }

    #[test]
    fn a_window_holds_the_runs_reaching_into_it() {
        let s = set(&[(0, 2), (4, 6), (8, 10)]);
        assert_eq!(s.window(2, 4).runs(), vec![]);
        assert_eq!(s.window(1, 5).runs(), vec![(0, 2), (4, 2)]);
        assert_eq!(s.window(5, 100).runs(), vec![(4, 2), (8, 2)]);
    }

    #[test]
    fn missing_leaves_out_the_set_and_the_exceptions() {
        let s = set(&[(2, 4), (8, 12)]);
        let m = s.missing_in(0, 10, &[5, 6]);
        assert_eq!(m.runs(), vec![(0, 2), (4, 1), (7, 1)]);
        assert_eq!(set(&[]).missing_in(3, 3, &[]).len(), 0);
    }

    /// Blocks leave the allocation as data is stored in them, and give
    /// back the room they held; a block of zeros stays allocated (it is a
    /// hole, which takes no room yet).
    #[test]
    fn stored_blocks_leave_the_allocation_and_give_back_their_room() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let bs = v.block_size;
        let room = v.room_per_block();
        let file = new_file(&v, "f");
        v.fallocate(file, 0, 4 * bs, KEEP_SIZE).unwrap();
        assert_eq!(v.space.held(), 4 * room);
        assert_eq!(v.getattr(file).unwrap().allocated, 4 * bs);

        let data: Vec<u8> = (0..bs).map(|i| (i % 251) as u8 + 1).collect();
        v.write(file, bs, &data).unwrap();
        v.write(file, 2 * bs, &vec![0; bs as usize]).unwrap();
        v.release_file(file).unwrap();
        assert_eq!(
            v.space.held(),
            3 * room,
            "the zero block is still allocated"
        );
        assert_eq!(v.getattr(file).unwrap().allocated, 4 * bs);
        assert_eq!(v.getattr(file).unwrap().size, 3 * bs);
        assert_eq!(
            v.allocated.with(file, BlockSet::runs),
            Some(vec![(0, 1), (2, 2)])
        );

        v.truncate(file, bs + 1).unwrap();
        assert_eq!(v.space.held(), room, "only block 0 is left");
        assert_eq!(v.getattr(file).unwrap().allocated, 2 * bs);
    }

    /// Removing a file gives its allocation back only once no handle is open.
    #[test]
    fn an_unlinked_file_keeps_its_allocation_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let file = new_file(&v, "f");
        v.fallocate(file, 0, 8 * v.block_size, 0).unwrap();
        v.unlink(
            &crate::vault::Caller::root(),
            crate::catalog::ROOT_INO,
            b"f",
        )
        .unwrap();
        assert_eq!(v.space.held(), 8 * v.room_per_block());
        v.release_file(file).unwrap();
        assert_eq!(v.space.held(), 0);
        assert!(!v.has_allocation(file));
    }

    /// A rolled-back group took back what it did to allocations: the next
    /// change of an allocation goes by the catalog again.
    #[test]
    fn allocations_follow_the_catalog_after_a_lost_group() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let bs = v.block_size;
        let room = v.room_per_block();
        let file = new_file(&v, "f");
        v.fallocate(file, 0, 4 * bs, KEEP_SIZE).unwrap();
        v.catalog.lock().commit().unwrap();

        let data: Vec<u8> = (0..bs).map(|i| (i % 251) as u8 + 1).collect();
        v.write(file, 0, &data).unwrap();
        assert_eq!(v.space.held(), 3 * room);
        v.catalog.lock().lose_open_group();

        let other = new_file(&v, "other");
        v.fallocate(other, 0, bs, KEEP_SIZE).unwrap();
        assert_eq!(v.space.held(), 5 * room, "block 0 is allocated again");
        assert_eq!(v.allocated.with(file, BlockSet::len), Some(4));
    }
}
