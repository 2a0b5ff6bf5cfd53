//! Sequential read-ahead: while the kernel copies one request's bytes to the
//! reader, the next blocks are already being decrypted on another core.
//!
//! The kernel does its own read-ahead, but it asks for the next window only
//! when the reader reaches it, and decrypting a block (AES-GCM-SIV) costs
//! more than copying it; without this, decryption and copying take turns.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::Vault;
use crate::catalog::Ino;

/// Blocks decrypted ahead of a sequential reader (1 MiB of 64 KiB blocks).
const WINDOW_BLOCKS: u64 = 16;

/// Per open file: where the last read ended and how far ahead is scheduled.
#[derive(Default)]
pub(super) struct ReadAhead {
    last_end: AtomicU64,
    scheduled_to: AtomicU64,
}

impl ReadAhead {
    /// Records a read of `offset..end`; when it continues the previous one,
    /// returns the block range to decrypt ahead (not yet scheduled).
    fn next_window(&self, offset: u64, end: u64, block_size: u64, size: u64) -> Option<(u64, u64)> {
        let sequential = self.last_end.swap(end, Ordering::Relaxed) == offset;
        if !sequential || end >= size {
            return None;
        }
        let first = (end - 1) / block_size + 1;
        let last = ((size - 1) / block_size).min(first + WINDOW_BLOCKS - 1);
        let from = first.max(self.scheduled_to.load(Ordering::Relaxed));
        if from > last {
            return None;
        }
        self.scheduled_to.store(last + 1, Ordering::Relaxed);
        Some((from, last))
    }
}

impl Vault {
    /// After a read of `offset..end` from `ino` (file size `size`): if it
    /// continues the previous read, decrypts the next window into the block
    /// cache in the background.
    pub(super) fn read_ahead(&self, ra: &ReadAhead, ino: Ino, offset: u64, end: u64, size: u64) {
        let Some((first, last)) = ra.next_window(offset, end, self.block_size, size) else {
            return;
        };
        let Some(vault) = self.me.upgrade() else {
            return;
        };
        rayon::spawn(move || {
            let extents = match vault.catalog.lock().live_extents(ino, first, last) {
                Ok(e) => e,
                Err(_) => return,
            };
            vault
                .packs
                .will_need(extents.iter().map(|(_, b)| b.location));
            // Cached blocks return at once; errors are left for the real
            // read to report.
            extents.par_iter().for_each(|(idx, b)| {
                let _ = vault.read_block(ino, *idx, b);
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sequential_reads_schedule_and_never_twice() {
        let ra = ReadAhead::default();
        let bs = 100;
        // First read from 0 counts as sequential (last_end starts at 0).
        assert_eq!(ra.next_window(0, 150, bs, 10_000), Some((2, 17)));
        // Continuing: only the blocks not yet scheduled.
        assert_eq!(ra.next_window(150, 300, bs, 10_000), Some((18, 18)));
        // A jump elsewhere schedules nothing.
        assert_eq!(ra.next_window(5_000, 5_100, bs, 10_000), None);
        // Reads that end at EOF have nothing ahead.
        assert_eq!(ra.next_window(5_100, 10_000, bs, 10_000), None);
        // Near the end, the window stops at the last block.
        let ra = ReadAhead::default();
        assert_eq!(ra.next_window(0, 900, bs, 1_000), Some((9, 9)));
    }
}
