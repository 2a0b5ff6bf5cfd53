//! Telling the kernel to forget what it cached of a file that changed in a
//! way its request's reply does not show.

use std::sync::OnceLock;

use fuser::{INodeNo, Notifier};

/// The session's notifier, known once the session exists (the filesystem
/// is built before it).
#[derive(Default)]
pub struct KernelCache {
    notifier: OnceLock<Notifier>,
}

impl KernelCache {
    pub fn attach(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    pub(super) fn notifier(&self) -> Option<&Notifier> {
        self.notifier.get()
    }

    /// The kernel's cached attributes of `ino` are stale: the mode, after
    /// a WRITE or FALLOCATE cleared set-id bits (their replies carry no
    /// attributes). Safe from a request handler: with a negative offset
    /// the kernel drops no pages, so it waits for nothing.
    pub fn attributes_changed(&self, ino: INodeNo) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        if let Err(e) = notifier.inval_inode(ino, -1, 0) {
            tracing::debug!("inode {ino}: the kernel keeps its cached attributes: {e}");
        }
    }
}
