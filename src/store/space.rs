//! Room kept free on the store's filesystem for the catalog.
//!
//! SQLite undoes a whole transaction when its commit hits a full disk, and
//! the catalog groups the changes of many requests into one transaction:
//! creates and block records that were already answered. So data and new
//! names are refused (ENOSPC) while less than the reserve is free, and the
//! catalog's commits draw on what is left.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::{Result, StoreError};

/// The reserve of a store: enough for the catalog's WAL to take the commits
/// of every request in flight, the packs' indexes and a checkpoint's growth.
pub const DEFAULT_RESERVE: u64 = 16 << 20;

/// `statvfs` is asked again at least every this many claimed bytes, so that
/// other writers on the same filesystem are noticed while the reserve lasts.
const MAX_UNCHECKED: u64 = 4 << 20;

pub struct SpaceGuard {
    dir: PathBuf,
    reserve: u64,
    /// Bytes that may still be claimed before `statvfs` is asked again.
    unchecked: Mutex<u64>,
}

impl SpaceGuard {
    /// Guards the filesystem holding `dir`, keeping `reserve` bytes free
    /// (0 turns the guard off).
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
            unchecked: Mutex::new(0),
        }
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Claims `bytes` about to be written, or fails with `OutOfSpace` if
    /// writing them would leave less than the reserve free.
    pub fn claim(&self, bytes: u64) -> Result<()> {
        if self.reserve == 0 {
            return Ok(());
        }
        let mut unchecked = self.unchecked.lock();
        if *unchecked >= bytes {
            *unchecked -= bytes;
            return Ok(());
        }
        let available = available_bytes(&self.dir)?;
        let spare = available.saturating_sub(self.reserve);
        if spare < bytes {
            *unchecked = 0;
            return Err(StoreError::OutOfSpace {
                available,
                reserve: self.reserve,
            });
        }
        // Half of what is spare: two claims in a row cannot both overrun it.
        *unchecked = ((spare - bytes) / 2).min(MAX_UNCHECKED);
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
    fn a_zero_reserve_never_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let guard = SpaceGuard::new(dir.path(), 0);
        guard.claim(u64::MAX / 2).unwrap();
    }
}
