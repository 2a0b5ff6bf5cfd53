//! Grouped changes that SQLite undid after their requests were answered.
//!
//! A commit that fails on a full disk or an I/O error rolls back the whole
//! group: creates, block records and versions of requests that already got
//! their reply. The engine must not go on as if they existed, so the catalog
//! remembers which groups and which new inodes were lost, and the engine
//! reports that loss (ENOSPC or EIO) to the next close, fsync or access.

use std::ops::Range;

use super::Ino;

/// Why a group was undone; decides what the loss is reported as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossCause {
    DiskFull,
    Io,
}

/// Losses remembered; the oldest are forgotten past this many.
const KEPT: usize = 1024;

#[derive(Default)]
pub(super) struct LostChanges {
    groups: Vec<(u64, LossCause)>,
    inodes: Vec<(Range<Ino>, LossCause)>,
    /// Groups lost since the catalog opened, remembered or not.
    count: u64,
}

impl LostChanges {
    /// Group `group`, which had allocated `inodes`, was rolled back.
    pub(super) fn record(&mut self, group: u64, inodes: Range<Ino>, cause: LossCause) {
        self.count += 1;
        push_bounded(&mut self.groups, (group, cause));
        if !inodes.is_empty() {
            push_bounded(&mut self.inodes, (inodes, cause));
        }
    }

    pub(super) fn count(&self) -> (u64, Option<LossCause>) {
        (self.count, self.groups.last().map(|(_, c)| *c))
    }

    pub(super) fn of_group(&self, group: u64) -> Option<LossCause> {
        self.groups
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, c)| *c)
    }

    pub(super) fn of_inode(&self, ino: Ino) -> Option<LossCause> {
        self.inodes
            .iter()
            .find(|(r, _)| r.contains(&ino))
            .map(|(_, c)| *c)
    }
}

fn push_bounded<T>(v: &mut Vec<T>, item: T) {
    if v.len() == KEPT {
        v.remove(0);
    }
    v.push(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lost_groups_and_inodes_only() {
        let mut lost = LostChanges::default();
        lost.record(5, 10..13, LossCause::DiskFull);
        lost.record(9, 20..20, LossCause::Io);
        assert_eq!(lost.of_group(4), None);
        assert_eq!(lost.of_group(5), Some(LossCause::DiskFull));
        assert_eq!(lost.of_group(9), Some(LossCause::Io));
        assert_eq!(lost.of_group(10), None);
        assert_eq!(lost.count(), (2, Some(LossCause::Io)));
        assert_eq!(lost.of_inode(9), None);
        assert_eq!(lost.of_inode(12), Some(LossCause::DiskFull));
        assert_eq!(lost.of_inode(13), None);
        assert_eq!(lost.of_inode(20), None);
    }
}
