//! Room kept free on the store's filesystem for the catalog.
//!
//! SQLite undoes a whole transaction when its commit hits a full disk, and
//! the catalog groups the changes of many requests into one transaction:
//! creates and block records that were already answered. So data and new
//! names are refused (ENOSPC) while less than the reserve is free, and the
//! catalog's commits draw on what is left.
//!
//! It also holds the space that fallocate set aside for blocks not yet
//! written: ordinary claims may not take it, and it is given back as those
//! blocks are stored or their allocation is dropped.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::{Result, StoreError, RECORD_HEADER_LEN};

/// The reserve of a store: enough for the catalog's WAL to take the commits
/// of every request in flight, the packs' indexes and a checkpoint's growth.
pub const DEFAULT_RESERVE: u64 = 16 << 20;

/// `statvfs` is asked again at least every this many claimed bytes, so that
/// other writers on the same filesystem are noticed while the reserve lasts.
const MAX_UNCHECKED: u64 = 4 << 20;

/// Room one allocated block may take once written, whatever it holds: a
/// raw record (format byte and AEAD tag on top of the plaintext, since zstd
/// is only used when it saves) and its entry in the pack's index.
pub fn room_per_block(block_size: u64) -> u64 {
    const FRAMING: u64 = 1 + 16;
    const INDEX_ENTRY: u64 = 32 + 8 + 4 + 4;
    RECORD_HEADER_LEN as u64 + FRAMING + block_size + INDEX_ENTRY
}

pub struct SpaceGuard {
    dir: PathBuf,
    reserve: u64,
    budget: Mutex<Budget>,
}

#[derive(Default)]
struct Budget {
    /// Bytes that may still be claimed before `statvfs` is asked again.
    unchecked: u64,
    /// Bytes held for allocated blocks (see `hold`).
    held: u64,
}

impl SpaceGuard {
    /// Guards the filesystem holding `dir`, keeping `reserve` bytes free
    /// (0 turns the guard off).
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
            budget: Mutex::default(),
        }
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes held for allocated blocks not yet written.
    pub fn held(&self) -> u64 {
        self.budget.lock().held
    }

    /// Holds `bytes` for blocks a program allocated, or fails with
    /// `OutOfSpace` (holding nothing) if they are not free beyond the
    /// reserve and what is held already. Always asks `statvfs`.
    pub fn hold(&self, bytes: u64) -> Result<()> {
        let mut budget = self.budget.lock();
        let available = available_bytes(&self.dir)?;
        let kept = self.reserve + budget.held;
        if available.saturating_sub(kept) < bytes {
            return Err(StoreError::OutOfSpace {
                available,
                reserve: self.reserve,
                held: budget.held,
            });
        }
        budget.held += bytes;
        budget.unchecked = 0;
        Ok(())
    }

    /// Holds `bytes` again without asking whether they are free: the
    /// allocations a store already had when it was opened.
    pub fn rehold(&self, bytes: u64) {
        self.budget.lock().held += bytes;
    }

    /// Gives back held bytes: their blocks were written (the write drew on
    /// them instead of claiming) or their allocation was dropped.
    pub fn release(&self, bytes: u64) {
        let mut budget = self.budget.lock();
        debug_assert!(budget.held >= bytes, "releasing more than is held");
        budget.held = budget.held.saturating_sub(bytes);
    }

    /// Claims `bytes` about to be written, or fails with `OutOfSpace` if
    /// writing them would leave less than the reserve and the held bytes free.
    pub fn claim(&self, bytes: u64) -> Result<()> {
        let mut budget = self.budget.lock();
        if self.reserve == 0 && budget.held == 0 {
            return Ok(());
        }
        if budget.unchecked >= bytes {
            budget.unchecked -= bytes;
            return Ok(());
        }
        let available = available_bytes(&self.dir)?;
        let spare = available.saturating_sub(self.reserve + budget.held);
        if spare < bytes {
            budget.unchecked = 0;
            return Err(StoreError::OutOfSpace {
                available,
                reserve: self.reserve,
                held: budget.held,
            });
        }
        // Half of what is spare: two claims in a row cannot both overrun it.
        budget.unchecked = ((spare - bytes) / 2).min(MAX_UNCHECKED);
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the filesystem of `dir`.
fn available_bytes(dir: &Path) -> Result<u64> {
    let st = statvfs(dir)?;
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// statvfs(2) of the filesystem holding `dir`.
pub fn statvfs(dir: &Path) -> Result<libc::statvfs> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| StoreError::Io {
        path: dir.to_path_buf(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    // SAFETY: statvfs is plain old data; the call fills it or fails.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and an out-pointer to a live statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(StoreError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_beyond_the_free_space_less_the_reserve_fail() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        // Half of the free space is reserved, half may be claimed; wide
        // margins, since other programs write to the same filesystem.
        let guard = SpaceGuard::new(dir.path(), free / 2);
        guard.claim(1 << 20).unwrap();
        let err = guard.claim(free).unwrap_err();
        assert!(matches!(err, StoreError::OutOfSpace { .. }), "{err}");
        assert!(err.to_string().contains("for its catalog"), "{err}");
        // What fits is still allowed after a refusal.
        guard.claim(1 << 20).unwrap();
    }

    #[test]
    fn held_bytes_are_not_claimed_by_others_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        let guard = SpaceGuard::new(dir.path(), 1 << 20);
        let err = guard.hold(free).unwrap_err();
        assert!(
            matches!(err, StoreError::OutOfSpace { held: 0, .. }),
            "{err}"
        );
        assert_eq!(guard.held(), 0, "a refused hold holds nothing");
        // Most of the free space held: a claim of a quarter of it fails.
        let held = free / 4 * 3;
        guard.hold(held).unwrap();
        assert_eq!(guard.held(), held);
        let err = guard.claim(free / 4 + (1 << 20)).unwrap_err();
        assert!(err.to_string().contains("allocated"), "{err}");
        guard.release(held);
        assert_eq!(guard.held(), 0);
        guard.claim(free / 4).unwrap();
    }

    #[test]
    fn a_zero_reserve_never_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let guard = SpaceGuard::new(dir.path(), 0);
        guard.claim(u64::MAX / 2).unwrap();
    }
}
