//! Telling the kernel to forget what it cached of a file that changed in a
//! way its request's reply does not show, and the entries of a directory
//! that not everyone may search any more.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

use fuser::{INodeNo, Notifier};

/// The session's notifier, known once the session exists (the filesystem
/// is built before it).
#[derive(Default)]
pub struct KernelCache {
    notifier: OnceLock<Notifier>,
    /// Entries to drop, sent by a thread of their own (see `forget_entries`).
    forget: OnceLock<Mutex<Sender<Forget>>>,
}

/// A directory and the names of the entries the kernel is to drop in it.
type Forget = (INodeNo, Vec<Vec<u8>>);

impl KernelCache {
    pub fn attach(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    pub(super) fn notifier(&self) -> Option<&Notifier> {
        self.notifier.get()
    }

    /// The kernel's cached attributes of `ino` are stale: the mode, after
    /// a WRITE or FALLOCATE cleared set-id bits, or a SETXATTR changed an
    /// ACL (their replies carry no attributes). Safe from a request
    /// handler: with a negative offset the kernel drops no pages, so it
    /// waits for nothing.
    pub fn attributes_changed(&self, ino: INodeNo) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        if let Err(e) = notifier.inval_inode(ino, -1, 0) {
            tracing::debug!("inode {ino}: the kernel keeps its cached attributes: {e}");
        }
    }

    /// Directory `dir` may no longer be searched by everyone: the kernel
    /// must drop the entries `names` it cached in it (and, through
    /// d_invalidate, everything below them), so that the next path walk
    /// through it asks, and is checked. The kernel holds `dir`'s lock
    /// while the request that changed it runs, so the notices go from a
    /// thread of their own, which waits for that request's reply.
    pub fn forget_entries(&self, dir: INodeNo, names: Vec<Vec<u8>>) {
        if names.is_empty() || self.notifier.get().is_none() {
            return;
        }
        let queue = self
            .forget
            .get_or_init(|| Mutex::new(self.spawn_forgetter()));
        let _ = queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((dir, names));
    }

    fn spawn_forgetter(&self) -> Sender<Forget> {
        let (tx, rx) = mpsc::channel::<Forget>();
        let notifier = self.notifier.get().cloned();
        let spawned = std::thread::Builder::new()
            .name("phivault-forget".into())
            .spawn(move || {
                let Some(notifier) = notifier else { return };
                for (dir, names) in rx {
                    for name in names {
                        // ENOENT: the kernel had not cached it.
                        let _ = notifier.inval_entry(dir, OsStr::from_bytes(&name));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the thread that drops cached entries: {e}");
        }
        tx
    }
}
