//! Sealing a file's last block before the close that stores it.
//!
//! A program that writes a small file and closes it (tar, cp, an editor's
//! save) sends the data in one WRITE, a few requests before the FLUSH that
//! stores it, and waits for each. Compressing and encrypting the block was
//! half of that FLUSH's time, while the other core mostly waited. So after
//! a WRITE that ends inside the file's last block, that block is sealed in
//! the background from a copy. The store takes the result if the block
//! still holds exactly the copied bytes, and seals it itself otherwise: a
//! later write, truncate or anything else only costs the wasted work.
//!
//! One thread seals, fed by a channel: it sleeps in the kernel while idle.
//! (Rayon's workers spin for a while after each task, and on two cores
//! that spinning took the CPU the program and the requests needed.) A job
//! still queued when its block is stored is sealed by the store itself, so
//! a busy sealer never delays a close.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::Vault;
use crate::crypto::{BlockSealer, SealedBlock};

/// One block being sealed ahead; shared by the open file and the task.
pub(super) struct SealAhead {
    /// The block's index in its file.
    pub(super) idx: u64,
    /// The bytes being sealed (the block cut at end of file).
    plain: Vec<u8>,
    /// The queue's count of bytes held, which `plain` is part of.
    held: Arc<AtomicUsize>,
    state: Mutex<State>,
    done: Condvar,
}

enum State {
    Queued,
    Running,
    Done(SealedBlock),
    /// The store took the result, or decided without it.
    Taken,
}

impl SealAhead {
    /// The sealed block, if it was sealed from exactly `plain`. Waits if
    /// the task is running; if it has not started, it never will (the
    /// caller seals on its own thread rather than wait for a free one).
    pub(super) fn take(&self, plain: &[u8]) -> Option<SealedBlock> {
        let mut state = self.state.lock();
        if self.plain != plain {
            *state = State::Taken;
            return None;
        }
        while matches!(*state, State::Running) {
            self.done.wait(&mut state);
        }
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(sealed) => Some(sealed),
            _ => None,
        }
    }

    /// Gives up on the result: a task that has not started does nothing.
    pub(super) fn cancel(&self) {
        let mut state = self.state.lock();
        if matches!(*state, State::Queued) {
            *state = State::Taken;
        }
    }

    /// Seals the block unless the job was given up; true if it sealed.
    fn run(&self, sealer: &BlockSealer) -> bool {
        {
            let mut state = self.state.lock();
            if !matches!(*state, State::Queued) {
                return false;
            }
            *state = State::Running;
        }
        // A panic must not leave the job running forever: a store waiting
        // for it would hang with the file locked. The store then seals on
        // its own thread, where a panic is reported like any other.
        let sealed = std::panic::catch_unwind(AssertUnwindSafe(|| sealer.seal(&self.plain)));
        let done = sealed.is_ok();
        *self.state.lock() = match sealed {
            Ok(sealed) => State::Done(sealed),
            Err(_) => State::Taken,
        };
        self.done.notify_all();
        done
    }
}

impl Drop for SealAhead {
    fn drop(&mut self) {
        self.held.fetch_sub(self.plain.len(), Ordering::Relaxed);
    }
}

impl Vault {
    pub fn seal_ahead_stats(&self) -> SealAheadStats {
        self.sealer.stats()
    }
}

/// Plaintext copies held by jobs, beyond which no block is sealed ahead: a
/// program holding many files open while it writes them must not make the
/// daemon hold a copy of each.
const HELD_LIMIT: usize = 32 << 20;

/// The sealing thread's queue. The thread is started with the vault, from
/// the thread that opens it: one started later by a request thread would
/// inherit that thread's pinning to one CPU. It ends when the vault (and
/// with it the queue) is dropped.
pub(super) struct SealerQueue {
    jobs: Option<Sender<Arc<SealAhead>>>,
    /// Bytes of plaintext copies in live jobs.
    held: Arc<AtomicUsize>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    sealed: AtomicU64,
    used: AtomicU64,
}

/// What sealing ahead did so far in this vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealAheadStats {
    /// Blocks the sealing thread sealed.
    pub sealed: u64,
    /// Of those, blocks a store used (the rest changed before they were stored).
    pub used: u64,
}

impl SealerQueue {
    pub(super) fn start(sealer: Arc<BlockSealer>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<SealAhead>>();
        let counts = Arc::new(Counts::default());
        let thread_counts = counts.clone();
        let started = std::thread::Builder::new()
            .name("phivault-sealer".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    if job.run(&sealer) {
                        thread_counts.sealed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        Self {
            // Without the thread, every block is sealed by its store.
            jobs: started.ok().map(|_| tx),
            held: Default::default(),
            counts,
        }
    }

    /// For a read-only vault, which never writes.
    pub(super) fn none() -> Self {
        Self {
            jobs: None,
            held: Default::default(),
            counts: Default::default(),
        }
    }

    /// Notes that a store used a block sealed ahead.
    pub(super) fn used(&self) {
        self.counts.used.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn stats(&self) -> SealAheadStats {
        SealAheadStats {
            sealed: self.counts.sealed.load(Ordering::Relaxed),
            used: self.counts.used.load(Ordering::Relaxed),
        }
    }

    /// Starts sealing block `idx`, whose current bytes are `plain`. Returns
    /// the handle to keep with the open file, or None when too much is held.
    pub(super) fn seal_ahead(&self, idx: u64, plain: &[u8]) -> Option<Arc<SealAhead>> {
        let jobs = self.jobs.as_ref()?;
        if self.held.fetch_add(plain.len(), Ordering::Relaxed) + plain.len() > HELD_LIMIT {
            self.held.fetch_sub(plain.len(), Ordering::Relaxed);
            return None;
        }
        let job = Arc::new(SealAhead {
            idx,
            plain: plain.to_vec(),
            held: self.held.clone(),
            state: Mutex::new(State::Queued),
            done: Condvar::new(),
        });
        jobs.send(job.clone()).ok()?;
        Some(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::BlockId;

    fn job(plain: &[u8], state: State) -> SealAhead {
        SealAhead {
            idx: 0,
            plain: plain.to_vec(),
            held: Arc::new(AtomicUsize::new(plain.len())),
            state: Mutex::new(state),
            done: Condvar::new(),
        }
    }

    fn sealed() -> SealedBlock {
        SealedBlock {
            id: BlockId([7; 32]),
            nonce: Default::default(),
            ciphertext: vec![1, 2, 3],
            plain_len: 3,
        }
    }

    #[test]
    fn the_result_is_used_only_for_the_same_bytes_and_only_once() {
        let j = job(b"abc", State::Done(sealed()));
        assert!(j.take(b"abd").is_none(), "other bytes");
        assert!(j.take(b"abc").is_none(), "given up after a mismatch");

        let j = job(b"abc", State::Done(sealed()));
        assert!(j.take(b"ab").is_none(), "a shorter block");

        let j = job(b"abc", State::Done(sealed()));
        assert_eq!(j.take(b"abc").map(|s| s.id), Some(BlockId([7; 32])));
        assert!(j.take(b"abc").is_none(), "taken once");
    }

    #[test]
    fn a_queued_job_is_not_waited_for_and_a_running_one_is() {
        let j = job(b"abc", State::Queued);
        assert!(j.take(b"abc").is_none());
        assert!(matches!(*j.state.lock(), State::Taken));

        let j = Arc::new(job(b"abc", State::Running));
        let finisher = {
            let j = j.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                *j.state.lock() = State::Done(sealed());
                j.done.notify_all();
            })
        };
        assert!(j.take(b"abc").is_some(), "waited for the running task");
        finisher.join().unwrap();
    }
}
