//! The writers' lock, `STORE/audit/lock`: every process that appends to
//! the trail (a read-write daemon, read-only mounts and `--at` views of the
//! same store) holds it with flock(LOCK_EX) around each append, recovery,
//! segment roll and head write, and nowhere else.
//!
//! The file's first bytes, mapped shared by every writer, are a board
//! where the holder leaves what the next one must know: the newest
//! segment (its first seq), how long it is, and whether a write to the
//! trail was under way. A writer that finds the board as it left it knows
//! that nobody appended since, without a syscall; one that died in the
//! middle of a write leaves it marked under way, and the next holder looks
//! at the segments themselves. Only live writers read it: recovery at open
//! looks at the segments and rewrites it, so it need not be durable.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::trail::Trail;
use super::{AuditError, IoAt};

/// Bytes of the lock file, mapped: a page.
const MAPPED: usize = 4096;

#[repr(C)]
struct Board {
    newest: AtomicU64,
    end: AtomicU64,
    under_way: AtomicU64,
}

/// What the board says, read under the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The first seq of the newest segment; 0 for none.
    pub newest: u64,
    /// Its length after the last complete write.
    pub end: u64,
    /// A writer stopped in the middle of a write: look at the segments.
    pub under_way: bool,
}

pub struct WritersLock {
    /// flock belongs to the open file description, which every thread of
    /// this process shares: the mutex makes one thread at a time its holder.
    file: Mutex<File>,
    board: NonNull<Board>,
    path: PathBuf,
}

// SAFETY: the board is only read and written through atomics.
unsafe impl Send for WritersLock {}
unsafe impl Sync for WritersLock {}

/// The lock, held until dropped.
pub struct Held<'a> {
    file: MutexGuard<'a, File>,
    board: &'a Board,
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
        // Never shrunk: another writer may have it mapped.
        if file.metadata().at(&path)?.len() < MAPPED as u64 {
            file.set_len(MAPPED as u64).at(&path)?;
        }
        // SAFETY: a shared mapping of MAPPED bytes of a file at least that
        // long, which no writer truncates; unmapped in Drop.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAPPED,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).at(&path);
        }
        Ok(WritersLock {
            file: Mutex::new(file),
            board: NonNull::new(at.cast()).expect("mmap returns no null mapping"),
            path,
        })
    }

    /// Waits for every other writer to be done, and keeps them out.
    pub fn lock(&self) -> Result<Held<'_>, AuditError> {
        let file = self.file.lock();
        file.lock().at(&self.path)?;
        Ok(Held {
            file,
            // SAFETY: mapped, page-aligned and zero-filled at first, so a
            // valid Board, for as long as `self`.
            board: unsafe { self.board.as_ref() },
        })
    }
}

impl Drop for WritersLock {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`; no Held outlives `self`.
        unsafe { libc::munmap(self.board.as_ptr().cast(), MAPPED) };
    }
}

impl Held<'_> {
    /// What the last holder left. flock is a full barrier between holders,
    /// so relaxed loads see what they stored.
    pub fn seen(&self) -> Seen {
        Seen {
            newest: self.board.newest.load(Ordering::Relaxed),
            end: self.board.end.load(Ordering::Relaxed),
            under_way: self.board.under_way.load(Ordering::Relaxed) != 0,
        }
    }

    /// Marks a write to the trail as begun: a holder that dies before
    /// `wrote` leaves the next one to look at the segments.
    pub fn writing(&self) {
        self.board.under_way.store(1, Ordering::Relaxed);
    }

    /// The trail is whole again: its newest segment and that one's length.
    pub fn wrote(&self, newest: u64, end: u64) {
        self.board.newest.store(newest, Ordering::Relaxed);
        self.board.end.store(end, Ordering::Relaxed);
        self.board.under_way.store(0, Ordering::Relaxed);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Fails only for a bad descriptor; closing it would release it too.
        let _ = self.file.unlock();
    }
}
