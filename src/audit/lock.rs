//! The writers' lock, `STORE/audit/lock`: every process that appends to
//! the trail (a read-write daemon, read-only mounts and `--at` views of the
//! same store) holds it with flock(LOCK_EX) around each append, recovery,
//! segment roll and head write, and nowhere else.
//!
//! The file holds the first seq of the newest segment (u64, little-endian;
//! 0 for none), rewritten at each roll, so that a writer notices under the
//! lock that another one moved to a new segment. Only live writers read
//! it: after a crash, recovery lists the segments, so it need not be
//! durable, and nothing else in the store depends on it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use parking_lot::{Mutex, MutexGuard};

use super::trail::Trail;
use super::{AuditError, IoAt};

pub struct WritersLock {
    /// flock belongs to the open file description, which every thread of
    /// this process shares: the mutex makes one thread at a time its holder.
    file: Mutex<File>,
    path: PathBuf,
}

/// The lock, held until dropped.
pub struct Held<'a> {
    file: MutexGuard<'a, File>,
    path: &'a PathBuf,
}

impl WritersLock {
    pub fn open(trail: &Trail) -> Result<WritersLock, AuditError> {
        let path = trail.dir().join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .at(&path)?;
        Ok(WritersLock {
            file: Mutex::new(file),
            path,
        })
    }

    /// Waits for every other writer to be done, and keeps them out.
    pub fn lock(&self) -> Result<Held<'_>, AuditError> {
        let file = self.file.lock();
        file.lock().at(&self.path)?;
        Ok(Held {
            file,
            path: &self.path,
        })
    }
}

impl Held<'_> {
    /// The first seq of the newest segment, as the last roll wrote it.
    pub fn newest_segment(&self) -> Result<u64, AuditError> {
        let mut b = [0u8; 8];
        let n = self.file.read_at(&mut b, 0).at(self.path)?;
        // Shorter: a fresh lock file, or one a crash cut: no roll known.
        Ok(if n == 8 { u64::from_le_bytes(b) } else { 0 })
    }

    pub fn set_newest_segment(&self, first_seq: u64) -> Result<(), AuditError> {
        self.file
            .write_all_at(&first_seq.to_le_bytes(), 0)
            .at(self.path)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Fails only for a bad descriptor; closing it would release it too.
        let _ = self.file.unlock();
    }
}
