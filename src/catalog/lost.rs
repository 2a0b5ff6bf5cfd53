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

/// Runs of losses remembered; the oldest are forgotten past this many. A disk
/// that stays full loses group after group, which `record` merges into one
/// run, so this bounds memory without forgetting one full-disk episode.
const KEPT: usize = 1024;

#[derive(Default)]
pub(super) struct LostChanges {
    groups: Vec<(Range<u64>, LossCause)>,
    inodes: Vec<(Range<Ino>, LossCause)>,
    /// Groups lost since the catalog opened, remembered or not.
    count: u64,
    last_cause: Option<LossCause>,
}

impl LostChanges {
    /// Group `group`, which had allocated `inodes`, was rolled back.
    pub(super) fn record(&mut self, group: u64, inodes: Range<Ino>, cause: LossCause) {
        self.count += 1;
        self.last_cause = Some(cause);
        push_run(&mut self.groups, group..group + 1, cause);
        if !inodes.is_empty() {
            push_run(&mut self.inodes, inodes, cause);
        }
    }

    pub(super) fn count(&self) -> (u64, Option<LossCause>) {
        (self.count, self.last_cause)
    }

    pub(super) fn of_group(&self, group: u64) -> Option<LossCause> {
        find(&self.groups, group)
    }

    pub(super) fn of_inode(&self, ino: Ino) -> Option<LossCause> {
        find(&self.inodes, ino)
    }
}

fn find(runs: &[(Range<u64>, LossCause)], n: u64) -> Option<LossCause> {
    runs.iter()
        .rev()
        .find(|(r, _)| r.contains(&n))
        .map(|(_, c)| *c)
}

/// Appends `range`, extending the newest run when it continues it.
fn push_run(runs: &mut Vec<(Range<u64>, LossCause)>, range: Range<u64>, cause: LossCause) {
    if let Some((last, c)) = runs.last_mut() {
        if *c == cause && last.end == range.start {
            last.end = range.end;
            return;
        }
    }
    if runs.len() == KEPT {
        runs.remove(0);
    }
    runs.push((range, cause));
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

    #[test]
    fn a_long_full_disk_episode_is_remembered_whole() {
        let mut lost = LostChanges::default();
        lost.record(1, 1..2, LossCause::Io);
        // Every group fails while the disk stays full, far more than KEPT.
        for g in 10..10 + 100 * KEPT as u64 {
            lost.record(g, g * 2..g * 2 + 2, LossCause::DiskFull);
        }
        assert_eq!(lost.groups.len(), 2, "consecutive losses merge");
        assert_eq!(lost.inodes.len(), 2, "so do the inodes they allocated");
        assert_eq!(lost.of_group(1), Some(LossCause::Io));
        assert_eq!(lost.of_group(10), Some(LossCause::DiskFull));
        assert_eq!(
            lost.of_group(9 + 100 * KEPT as u64),
            Some(LossCause::DiskFull)
        );
        assert_eq!(lost.of_group(5), None);
        assert_eq!(lost.of_inode(1), Some(LossCause::Io));
        assert_eq!(lost.of_inode(20), Some(LossCause::DiskFull));
        assert_eq!(
            lost.count(),
            (1 + 100 * KEPT as u64, Some(LossCause::DiskFull))
        );
    }
}
