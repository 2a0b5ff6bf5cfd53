//! The file handles OPEN and CREATE hand out: who opened each and how many
//! bytes were written through it, for the CLOSE record of its RELEASE.
//! The kernel's write-back of cached pages comes as WRITEs with the handle
//! of a writer, so those bytes count too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::audit::Who;

/// An open file handle.
pub struct Handle {
    pub ino: u64,
    /// Who opened it.
    pub opener: Who,
    written: AtomicU64,
}

impl Handle {
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// Open handles by number. Number 0 is never handed out: it stays the
/// handle of what is not tracked (the past, a mount without a trail).
pub struct Handles {
    next: AtomicU64,
    open: RwLock<HashMap<u64, Arc<Handle>>>,
}

impl Default for Handles {
    fn default() -> Self {
        Handles {
            next: AtomicU64::new(1),
            open: RwLock::default(),
        }
    }
}

impl Handles {
    /// A new handle of `ino`, opened by `opener`.
    pub fn open(&self, ino: u64, opener: Who) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(Handle {
            ino,
            opener,
            written: AtomicU64::new(0),
        });
        self.open.write().insert(fh, handle);
        fh
    }

    /// Counts `bytes` written through handle `fh`.
    pub fn wrote(&self, fh: u64, bytes: u64) {
        if let Some(h) = self.open.read().get(&fh) {
            h.written.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Forgets handle `fh`, returning what it was.
    pub fn close(&self, fh: u64) -> Option<Arc<Handle>> {
        self.open.write().remove(&fh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_per_handle() {
        let handles = Handles::default();
        let a = handles.open(7, Who::default());
        let b = handles.open(7, Who::default());
        assert!(a != 0 && b != 0 && a != b);
        handles.wrote(a, 10);
        handles.wrote(a, 5);
        handles.wrote(0, 99);
        let closed = handles.close(a).unwrap();
        assert_eq!((closed.ino, closed.written()), (7, 15));
        assert_eq!(handles.close(b).unwrap().written(), 0);
        assert!(handles.close(a).is_none());
    }
}
