//! Where the engine reads the time: the system's clocks, or in tests a
//! clock they move themselves, so that history and retention can be
//! tested over days and years of simulated time.

use std::sync::atomic::{AtomicI64, Ordering};

/// The two clocks the engine stamps changes with (see `Tick`).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The fine wall clock, ns since the epoch.
    fn now_ns(&self) -> i64;
    /// The kernel's coarse wall clock, never after `now_ns`.
    fn coarse_ns(&self) -> i64;
}

/// CLOCK_REALTIME and CLOCK_REALTIME_COARSE.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        super::now_ns()
    }

    fn coarse_ns(&self) -> i64 {
        // SAFETY: clock_gettime fills the timespec it is given.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a valid clock id and a live out-pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
            return self.now_ns();
        }
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
}

/// A clock that stands still until moved: for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn starting_at(ns: i64) -> Self {
        Self(AtomicI64::new(ns))
    }

    pub fn advance(&self, ns: i64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }

    pub fn set(&self, ns: i64) {
        self.0.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn coarse_ns(&self) -> i64 {
        self.now_ns()
    }
}
