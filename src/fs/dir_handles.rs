//! Open directory handles and where each one's listing ends.
//!
//! A listing returns no entry created or renamed into its directory after
//! it started (see `vault::ListingHorizon`); the horizon is taken at
//! the listing's first READDIR, at offset 0, and again at each rewind (a
//! READDIR at offset 0 again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use fuser::FileHandle;
use parking_lot::Mutex;

use crate::vault::ListingHorizon;

#[derive(Default)]
pub struct DirHandles {
    next: AtomicU64,
    /// None until the handle's first READDIR.
    open: Mutex<HashMap<u64, Option<ListingHorizon>>>,
}

impl DirHandles {
    pub fn open(&self) -> FileHandle {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(fh, None);
        FileHandle(fh)
    }

    /// The horizon of `fh`'s listing, once it has started.
    pub fn horizon(&self, fh: FileHandle) -> Option<ListingHorizon> {
        self.open.lock().get(&fh.0).copied().flatten()
    }

    /// A listing (re)starts: `fh` lists up to `horizon` from now on.
    pub fn start(&self, fh: FileHandle, horizon: ListingHorizon) {
        if let Some(h) = self.open.lock().get_mut(&fh.0) {
            *h = Some(horizon);
        }
    }

    pub fn release(&self, fh: FileHandle) {
        self.open.lock().remove(&fh.0);
    }
}
