//! The writers' lock, `STORE/audit/lock`: every process that appends to
//! the trail (a read-write daemon, read-only mounts and `--at` views of the
//! same store) holds it around each append, recovery, segment roll and
//! head write, and nowhere else.
//!
//! The file's first page, mapped shared by every writer, holds the lock
//! itself, a process-shared robust mutex (taken without a syscall when
//! free; flock cost more than a third of an append), and a board where the
//! holder leaves what the next one must know: the newest segment (its
//! first seq), how long it is, and whether a write to the trail was under
//! way. A writer that finds the board as it left it knows that nobody
//! appended since. One that died holding the lock leaves it to the next
//! holder marked under way (the mutex being robust), and that holder looks
//! at the segments themselves.
//!
//! The page lives only while writers do: each holds a shared flock on the
//! file for its life, and the first writer to open it with no other alive
//! (after a reboot, say) sets it up afresh. Recovery at open looks at the
//! segments and rewrites the board, so none of it need be durable.

use std::cell::UnsafeCell;
use std::fs::{File, OpenOptions};
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::trail::Trail;
use super::{AuditError, IoAt};

/// Bytes of the lock file, mapped: a page.
const MAPPED: usize = 4096;

#[repr(C)]
struct Board {
    newest: AtomicU64,
    end: AtomicU64,
    under_way: AtomicU64,
    mutex: UnsafeCell<libc::pthread_mutex_t>,
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
    /// Open for the writer's life: its shared flock says a writer lives.
    _presence: File,
    board: NonNull<Board>,
    path: PathBuf,
}

// SAFETY: the board is used through atomics and the pthread mutex, which
// is made for threads of several processes.
unsafe impl Send for WritersLock {}
unsafe impl Sync for WritersLock {}

/// The lock, held until dropped, by the thread that took it.
pub struct Held<'a> {
    board: &'a Board,
    _not_send: PhantomData<*const ()>,
}

fn os_error(rc: libc::c_int, path: &Path) -> Result<(), AuditError> {
    match rc {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)).at(path),
    }
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
        // Writers open one at a time, so that only one can find itself
        // alone and set the page up.
        let dir = File::open(trail.dir()).at(trail.dir())?;
        dir.lock().at(trail.dir())?;
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
        let lock = WritersLock {
            board: NonNull::new(at.cast()).expect("mmap returns no null mapping"),
            _presence: file,
            path,
        };
        let alone = lock._presence.try_lock().is_ok();
        if alone {
            lock.set_up()?;
        }
        // From exclusive to shared, or shared from the start.
        lock._presence.lock_shared().at(&lock.path)?;
        Ok(lock)
    }

    /// A fresh mutex, and a board that sends the first holder to the
    /// segments. Only with no other writer alive.
    fn set_up(&self) -> Result<(), AuditError> {
        let board = self.board();
        board.under_way.store(1, Ordering::Relaxed);
        // SAFETY: attr is initialized before use and destroyed after; the
        // mutex is in the mapping, which nobody else uses now.
        unsafe {
            let mut attr = std::mem::zeroed::<libc::pthread_mutexattr_t>();
            os_error(libc::pthread_mutexattr_init(&mut attr), &self.path)?;
            let made = os_error(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                &self.path,
            )
            .and_then(|()| {
                os_error(
                    libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                    &self.path,
                )
            })
            .and_then(|()| {
                os_error(
                    libc::pthread_mutex_init(board.mutex.get(), &attr),
                    &self.path,
                )
            });
            libc::pthread_mutexattr_destroy(&mut attr);
            made
        }
    }

    fn board(&self) -> &Board {
        // SAFETY: mapped, page-aligned and zero-filled at first, so a
        // valid Board, for as long as `self`.
        unsafe { self.board.as_ref() }
    }

    /// Waits for every other writer to be done, and keeps them out.
    pub fn lock(&self) -> Result<Held<'_>, AuditError> {
        let board = self.board();
        // SAFETY: the mutex was set up by the first writer alive.
        let rc = unsafe { libc::pthread_mutex_lock(board.mutex.get()) };
        if rc == libc::EOWNERDEAD {
            tracing::warn!(
                "{}: a writer of the audit trail died holding its lock; checking the trail's end",
                self.path.display()
            );
            board.under_way.store(1, Ordering::Relaxed);
            // SAFETY: this thread holds the mutex.
            let rc = unsafe { libc::pthread_mutex_consistent(board.mutex.get()) };
            if let Err(e) = os_error(rc, &self.path) {
                // SAFETY: this thread holds the mutex.
                unsafe { libc::pthread_mutex_unlock(board.mutex.get()) };
                return Err(e);
            }
        } else {
            os_error(rc, &self.path)?;
        }
        Ok(Held {
            board,
            _not_send: PhantomData,
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
    /// What the last holder left (the mutex orders it before this).
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
        // SAFETY: taken by this thread in `lock` (Held is not Send).
        unsafe { libc::pthread_mutex_unlock(self.board.mutex.get()) };
    }
}
